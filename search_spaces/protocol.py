"""What every search-space definition provides: :class:`SpaceDefinition`. ``tests/test_layering.py`` holds each
registered space to it, and ARCHITECTURE.md names its methods."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from n2nas.space import SearchSpace


@runtime_checkable
class SpaceDefinition(Protocol):
    """A search space: its decisions, the data context its children train on, its supernet and standalone children,
    and the pipeline pieces a sample names. ``sample`` is always a decoded ``{label: value}`` dict.

    Optional capabilities, looked up where they are used: ``param_table(n_in, n_out)`` (``n2nas space params``) and
    ``train_from_scratch(sample, dataset, out, config)`` (a grid cell trained by the space's own trainer).
    """

    name: str
    # training tokens a shared-weight score cannot see; a search pins them to the defaults unless told otherwise
    supernet_blind: tuple[str, ...]

    @property
    def space(self) -> SearchSpace:
        """The flat token list, named like this definition."""

    def input_size(self, dataset) -> int:
        """Input channels (ECG leads) or feature columns (EHR) of ``dataset``."""

    def make_context(self, dataset, train_idx, val_idx, cache_dir=None, workers: int = 1):
        """The data context children train and are scored on (``n2nas.train.primitives.DataContext`` or alike)."""

    def build_supernet(self, n_inputs: int, n_classes: int):
        """The weight-shared supernet; ``supernet(x, sample)`` runs one child."""

    def build_child(self, sample: dict[str, Any], n_inputs: int, n_classes: int):
        """A freshly initialised plain ``nn.Module`` with exactly the sampled architecture."""

    def copy_shared_weights(self, supernet, child, sample: dict[str, Any]) -> None:
        """Load ``supernet``'s weights for ``sample`` into ``child``, so that ``child(x) == supernet(x, sample)``."""

    def preprocess_config(self, sample: dict[str, Any]):
        """The sample's ``PreprocessConfig``, or None for data that needs none (tabular rows)."""

    def window_config(self, sample: dict[str, Any]):
        """The sample's ``WindowConfig``, or None when a record is one model input (tabular rows)."""

    def augment_config(self, sample: dict[str, Any]):
        """The sample's ``AugmentConfig``."""

    def training_settings(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``lr``, ``batch_size``, ``dropout``, ``weight_decay`` (and any other training setting) as plain values."""
