"""What every search-space definition provides (:class:`SpaceDefinition`), and the optional capabilities some add
(:class:`ElasticSpace`, :class:`ChecksRecords`, :class:`TabulatesParams`, :class:`DescribesSamples`).

Code that uses a capability asks ``isinstance(space_def, ElasticSpace)`` (the protocols are runtime-checkable), never
``hasattr`` for one member. ``tests/test_layering.py`` holds each registered space to :class:`SpaceDefinition` and
each space offering any member of a capability to all of it; ARCHITECTURE.md names them.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from n2nas.space import SearchSpace


@runtime_checkable
class SpaceDefinition(Protocol):
    """A search space: its decisions, the data context its children train on, its supernet and standalone children,
    and the pipeline pieces a sample names. ``sample`` is always a decoded ``{label: value}`` dict.

    Optional capabilities are the protocols below.
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


@runtime_checkable
class ElasticSpace(Protocol):
    """A weight-sharing space with elastic dimensions (Once-for-All / BigNAS): it names its largest, smallest and
    random architectures, which the sandwich and progressive-shrinking rules of ``n2nas.runners.shared`` train.
    Every method keeps ``sample``'s preprocessing and training tokens and changes only its architecture."""

    # the rule ``SharedTrainingConfig(rule="auto")`` trains this supernet with ("uniform", "sandwich", "progressive")
    shared_rule: str
    # progressive shrinking's order: groups of architecture fields, opened one group at a time
    shrink_phases: tuple[tuple[str, ...], ...]

    def largest(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``sample`` with the most expensive architecture (the sandwich's teacher)."""

    def smallest(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``sample`` with the cheapest architecture."""

    def random_architecture(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """``sample`` with a uniformly random architecture drawn from ``rng``."""

    def restrict(self, sample: dict[str, Any], opened: tuple[str, ...]) -> dict[str, Any]:
        """``sample`` with every architecture field not in ``opened`` (names from ``shrink_phases``) at its
        largest setting."""


@runtime_checkable
class ChecksRecords(Protocol):
    """A space that requires something of every record (e.g. the 12 standard leads); checked when a search opens
    the data and when a model folder is evaluated."""

    def check_records(self, dataset) -> None:
        """Raise ``DataError`` naming the first record this space cannot read."""


@runtime_checkable
class TabulatesParams(Protocol):
    """A space whose architectures form a units x layers grid (``n2nas space params`` prints it)."""

    def param_table(self, n_in: int, n_out: int) -> list[dict[str, int]]:
        """``{"layers", "units", "params"}`` of every cell for ``n_in`` inputs and ``n_out`` outputs."""


@runtime_checkable
class DescribesSamples(Protocol):
    """A space that writes its own one-line summary of a sample (benchmark tables)."""

    def describe_sample(self, sample: dict[str, Any]) -> str:
        """One line naming the sample's preprocessing and architecture."""
