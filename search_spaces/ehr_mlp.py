"""The EHR MLP space of DiagnoseNET's Table 3 (García Henao et al.), and its weight-shared supernet.

Tokens, in controller order: ``layers`` (hidden layers 2/4/8/16), ``units`` per hidden layer (16 ... 4096,
powers of two), ``activation`` (relu/tanh/linear), ``dropout``; training: ``lr`` (0.0005 ... 0.1),
``batch_size`` (768 ... 24576, doubling), ``workers`` (4 ... 12 data-parallel workers; pinned to 4 in the
registered spaces because the local runner is one process: grids may still set it, and it is what a
data-parallel runner reads).

``units`` x ``layers`` is exactly DiagnoseNET's Table 4 grid (every hidden layer the same width); the
parameter count of each cell is :func:`~search_spaces.ehr_mlp_model.mlp_params`.

Registered as ``ehr-mlp`` (Table 3 in full; the supernet is 16 x 4096 wide, ~310 M parameters, a GPU job) and
``ehr-mlp-small`` (units 16 ... 512, 2/4/8 layers: a CPU-sized supernet for demos and tests).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from n2nas.data.record import ROWS
from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.space import Choice, SearchSpace
from search_spaces.ehr_mlp_model import ACTIVATIONS, MLP, MLPSupernet, copy_shared_weights, mlp_params

__all__ = ["EHRSpaceConfig", "EHRSpace", "UNITS", "LAYERS", "param_table"]

UNITS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LAYERS = (2, 4, 8, 16)
DROPOUTS = (0.0, 0.2, 0.5)
LRS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1)
BATCH_SIZES = (768, 1536, 3072, 6144, 12288, 24576)
WORKERS = (4, 6, 8, 10, 12)


@dataclass(frozen=True)
class EHRSpaceConfig:
    """The option lists of every decision (defaults: DiagnoseNET's Table 3)."""

    units: tuple[int, ...] = UNITS
    layers: tuple[int, ...] = LAYERS
    activations: tuple[str, ...] = ACTIVATIONS
    dropouts: tuple[float, ...] = DROPOUTS
    lrs: tuple[float, ...] = LRS
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    workers: tuple[int, ...] = WORKERS

    def __post_init__(self):
        if min(self.units) < 1 or min(self.layers) < 1 or min(self.batch_sizes) < 1:
            raise ConfigError("EHRSpaceConfig", "units, layers and batch sizes must be positive")
        if not set(self.activations) <= set(ACTIVATIONS):
            raise ConfigError("EHRSpaceConfig.activations", f"must be among {ACTIVATIONS}")

    @staticmethod
    @preset()
    def diagnosenet() -> "EHRSpaceConfig":
        """Table 3 of DiagnoseNET."""
        return EHRSpaceConfig()

    @staticmethod
    @preset()
    def small() -> "EHRSpaceConfig":
        """Table 3 with units <= 512 and at most 8 layers: the supernet fits a laptop."""
        return replace(EHRSpaceConfig(), units=UNITS[:6], layers=LAYERS[:3])


def ehr_search_space(cfg: EHRSpaceConfig = EHRSpaceConfig(), name: str = "ehr-mlp") -> SearchSpace:
    """The flat EHR MLP search space (``workers`` pinned to its first option)."""
    def default(options, value):
        return value if value in options else options[0]

    return SearchSpace(name, (
        Choice("layers", cfg.layers, default=default(cfg.layers, 4)),
        Choice("units", cfg.units, default=default(cfg.units, 512)),
        Choice("activation", cfg.activations, default=default(cfg.activations, "relu")),
        Choice("dropout", cfg.dropouts, "training", default=default(cfg.dropouts, 0.2)),
        Choice("lr", cfg.lrs, "training", default=default(cfg.lrs, 0.001)),
        Choice("batch_size", cfg.batch_sizes, "training", default=default(cfg.batch_sizes, 768)),
        Choice("workers", cfg.workers, "training", default=cfg.workers[0]),
    ), fixed={"workers": cfg.workers[0]})


def param_table(n_in: int, n_out: int, units=UNITS, layers=LAYERS) -> list[dict[str, int]]:
    """Parameters of every ``layers`` x ``units`` cell: ``[{"layers", "units", "params"}, ...]``."""
    return [{"layers": d, "units": u, "params": mlp_params(n_in, u, d, n_out)} for d in layers for u in units]


class EHRSpace:
    """Search-space definition for EHR rows: tokens, supernet, standalone children, data context, trainer."""

    # Training tokens weight sharing cannot score (the supernet trains with its own optimizer): a search pins them
    # to the space's defaults (lr 0.001, batch 768, dropout 0.2). Searched, they only decided the finals, which
    # then trained children with an extreme lr and batch to nothing (docs/ehr.md#the-ehr-cpu-preset).
    supernet_blind: tuple[str, ...] = ("lr", "batch_size", "dropout")

    def __init__(self, name: str, config: EHRSpaceConfig):
        self.name, self.config = name, config

    def __repr__(self) -> str:
        return f"EHRSpace({self.name!r}, {self.config!r})"

    @cached_property
    def space(self) -> SearchSpace:
        """The flat :class:`SearchSpace`."""
        return ehr_search_space(self.config, self.name)

    # --- what the search loop and runners ask of a space -------------------------------------------------
    def input_size(self, dataset) -> int:
        """Feature columns: the first layer's width."""
        return int(dataset.n_features)

    def make_context(self, dataset, train_idx, val_idx, cache_dir: Path | None = None, workers: int = 1):
        """An :class:`~n2nas.train.rows.EHRContext` (sparse rows; no preprocessing cache needed); a clinical
        table is first re-encoded with an encoder fitted on ``train_idx`` only."""
        from n2nas.data.table import fit_on_training
        from n2nas.train.rows import EHRContext

        if dataset.modality != ROWS:
            raise ConfigError("--space", f"{self.name} searches EHR feature matrices; use an ehr: or synthetic-ehr "
                                         "data spec")
        return EHRContext(fit_on_training(dataset, train_idx), train_idx, val_idx)

    def build_supernet(self, n_in: int, n_classes: int) -> MLPSupernet:
        """Widest, deepest MLP of the space; children are slices of it."""
        return MLPSupernet(n_in, max(self.config.units), max(self.config.layers), n_classes)

    def build_child(self, sample: dict[str, Any], n_in: int, n_classes: int) -> nn.Module:
        """A freshly initialised standalone MLP for ``sample``."""
        self.space.validate(sample)
        return MLP(n_in, int(sample["units"]), int(sample["layers"]), sample["activation"],
                   float(sample["dropout"]), n_classes)

    def copy_shared_weights(self, supernet: MLPSupernet, child: nn.Module, sample: dict[str, Any]) -> None:
        """Load ``supernet``'s slice for ``sample`` into ``child``."""
        copy_shared_weights(supernet, child, sample)

    def preprocess_config(self, sample: dict[str, Any]) -> None:
        """EHR rows have no preprocessing tokens."""
        return None

    def window_config(self, sample: dict[str, Any]) -> None:
        """One row per patient: no windows."""
        return None

    def augment_config(self, sample: dict[str, Any]):
        """No augmentation of binary clinical features."""
        from n2nas.data.augment import AugmentConfig

        return AugmentConfig.none()

    def training_settings(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``lr``, ``batch_size``, ``dropout``, ``workers`` (no weight decay or class weighting in this space)."""
        return {"lr": float(sample["lr"]), "batch_size": int(sample["batch_size"]),
                "dropout": float(sample["dropout"]), "weight_decay": 0.0, "class_weighting": False,
                "workers": int(sample["workers"])}

    # --- grids -----------------------------------------------------------------------------------------
    def param_table(self, n_in: int, n_out: int) -> list[dict[str, int]]:
        """Parameter count of every ``layers`` x ``units`` cell of this space."""
        return param_table(n_in, n_out, self.config.units, self.config.layers)
