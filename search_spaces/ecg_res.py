"""``ecg-res``: a residual 1-D macro space with elastic depth, width, kernel and downsampling, and its supernet.

Tokens, in controller order:

- preprocessing: ``fs``, ``filter``, ``normalise``, ``window``, ``augment``: the same tokens (and the same
  screen) as the ``ecg`` spaces (:mod:`search_spaces.ecg`);
- architecture, per stage ``i``: ``stage{i}/depth`` (residual blocks), ``stage{i}/width`` (a multiplier of the
  stage's full channels), ``stage{i}/kernel`` (taps of every convolution in the stage) and ``stage{i}/stride``
  (the stage's downsampling, in its first block);
- training: ``lr``, ``batch_size``, ``dropout``, ``weight_decay``, ``class_weighting`` (pinned by a search, as
  in ``ecg``: shared weights cannot score them).

The supernet shares weights Once-for-All / BigNAS style (see :mod:`search_spaces.ecg_res_model`) and is meant to
be trained with the sandwich rule (``n2nas.runners.shared.SharedTrainingConfig.rule``; ``shared_rule`` below is
this space's choice for ``rule="auto"``). :meth:`ECGResSpace.largest` and :meth:`ECGResSpace.smallest` give the
sandwich's outer children.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.space import Choice, Repeat, SearchSpace
from search_spaces.ecg import (AUGMENT, DROPOUTS, FILTERS, FS_OPTIONS, LRS, NORMALISE, WEIGHT_DECAYS, WINDOWS,
                               ECGRecordSpace)
from search_spaces.ecg_res_model import ResSupernet, build_child, parse_stages

__all__ = ["ECGResConfig", "ECGResSpace", "ecg_res_search_space"]

ARCH_FIELDS = ("depth", "width", "kernel", "stride")


@dataclass(frozen=True)
class ECGResConfig:
    """Shape of the residual macro space: full channels per stage and the options of each elastic dimension
    (the same for every stage). Defaults are the middle of the space: the architecture the screen and the
    finals' reference use."""

    stage_channels: tuple[int, ...] = (16, 32, 64, 96)
    stem_kernel: int = 15
    stem_stride: int = 2
    depths: tuple[int, ...] = (1, 2, 3)
    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    kernels: tuple[int, ...] = (3, 5, 9, 15)
    strides: tuple[int, ...] = (2, 4)
    default_depth: int = 2
    default_width: float = 0.5
    default_kernel: int = 9
    default_stride: int = 2
    lrs: tuple[float, ...] = LRS
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    default_batch_size: int = 32
    default_class_weighting: bool = True

    def __post_init__(self):
        if not self.stage_channels or min(self.stage_channels) < 4:
            raise ConfigError("ECGResConfig.stage_channels", "at least one stage of at least 4 channels")
        if any(k % 2 == 0 or k < 1 for k in (*self.kernels, self.stem_kernel)):
            raise ConfigError("ECGResConfig.kernels", "kernels must be odd (centre slices keep the length)")
        if min(self.depths) < 1 or min(self.strides) < 1 or self.stem_stride < 1:
            raise ConfigError("ECGResConfig.depths", "depths, strides and the stem stride must be >= 1")
        if not self.widths or max(self.widths) != 1.0 or min(self.widths) <= 0:
            raise ConfigError("ECGResConfig.widths", "width multipliers must be positive with 1.0 the largest")
        for name in ARCH_FIELDS:
            if getattr(self, f"default_{name}") not in getattr(self, f"{name}s"):
                raise ConfigError(f"ECGResConfig.default_{name}", f"must be one of {getattr(self, name + 's')}")
        if self.default_batch_size not in self.batch_sizes:
            raise ConfigError("ECGResConfig.default_batch_size", f"must be one of {self.batch_sizes}")

    @staticmethod
    @preset()
    def cpu() -> "ECGResConfig":
        """Four stages of up to 16-32-64-96 channels, 1-3 blocks each: from about 0.001 GFLOPs per 30 s
        record (smallest child, 100 Hz) to 1.1-2.7 GFLOPs (largest child, 300 Hz, by window), the residual net's
        regime at the top; its largest child is cheap enough to be the sandwich's teacher on a CPU."""
        return ECGResConfig()

    @staticmethod
    @preset()
    def large() -> "ECGResConfig":
        """Up to 32-64-128-256 channels and 4 blocks per stage: for GPU searches (not registered as a space)."""
        return ECGResConfig(stage_channels=(32, 64, 128, 256), depths=(1, 2, 3, 4))


def ecg_res_search_space(cfg: ECGResConfig = ECGResConfig(), name: str = "ecg-res") -> SearchSpace:
    """The flat ``ecg-res`` search space for ``cfg``."""
    pre = "preprocessing"
    stage = (Choice("depth", cfg.depths, default=cfg.default_depth),
             Choice("width", cfg.widths, default=cfg.default_width),
             Choice("kernel", cfg.kernels, default=cfg.default_kernel),
             Choice("stride", cfg.strides, default=cfg.default_stride))
    return SearchSpace(name, (
        Choice("fs", FS_OPTIONS, pre, default=300),
        Choice("filter", FILTERS, pre, default="bandpass"),
        Choice("normalise", NORMALISE, pre, default="record_z"),
        Choice("window", WINDOWS, pre, default="crop:10"),
        Choice("augment", AUGMENT, pre, default="none"),
        Repeat("stage", len(cfg.stage_channels), stage),
        Choice("lr", cfg.lrs, "training", default=1e-3),
        Choice("batch_size", cfg.batch_sizes, "training", default=cfg.default_batch_size),
        Choice("dropout", DROPOUTS, "training", default=0.2),
        Choice("weight_decay", WEIGHT_DECAYS, "training", default=1e-4),
        Choice("class_weighting", (False, True), "training", default=cfg.default_class_weighting),
    ))


class ECGResSpace(ECGRecordSpace):
    """The ``ecg-res`` definition: ECG preprocessing and training tokens (:class:`ECGRecordSpace`), residual
    stages, the OFA/BigNAS-style supernet, and the sandwich's largest / smallest / random children (it provides
    :class:`search_spaces.protocol.ElasticSpace`)."""

    config: ECGResConfig
    shared_rule = "sandwich"  # what SharedTrainingConfig(rule="auto") trains this supernet with
    # progressive shrinking's order (Once-for-All: kernel, depth, width; the downsampling opens with the width)
    shrink_phases = (("kernel",), ("depth",), ("width", "stride"))

    @cached_property
    def space(self) -> SearchSpace:
        """The flat :class:`SearchSpace` (named like this definition, so pipelines find it again)."""
        return ecg_res_search_space(self.config, self.name)

    def build_supernet(self, n_leads: int, n_classes: int) -> ResSupernet:
        """The weight-shared supernet; ``supernet(x, sample)`` runs one child."""
        return ResSupernet(self.config, n_leads, n_classes)

    def build_child(self, sample: dict[str, Any], n_leads: int, n_classes: int) -> nn.Module:
        """A freshly initialised plain ``nn.Module`` with exactly the sampled architecture."""
        self.space.validate(sample)
        return build_child(self.config, sample, n_leads, n_classes)

    def copy_shared_weights(self, supernet: ResSupernet, child: nn.Module, sample: dict[str, Any]) -> None:
        """Load ``supernet``'s weights for ``sample`` into ``child`` (then ``child(x) == supernet(x, sample)``)."""
        child.load_state_dict(supernet.child_state(sample), strict=True)

    def _architecture(self, pick) -> dict[str, Any]:
        cfg = self.config
        return {f"stage{i}/{name}": pick(name, getattr(cfg, name + "s"))
                for i in range(len(cfg.stage_channels)) for name in ARCH_FIELDS}

    def largest(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``sample`` with the most expensive architecture: deepest, widest, largest kernel, smallest strides."""
        return {**sample, **self._architecture(lambda name, opts: min(opts) if name == "stride" else max(opts))}

    def smallest(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``sample`` with the cheapest architecture: shallowest, narrowest, smallest kernel, largest strides."""
        return {**sample, **self._architecture(lambda name, opts: max(opts) if name == "stride" else min(opts))}

    def random_architecture(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """``sample`` with a uniformly random architecture (its preprocessing and training tokens kept)."""
        return {**sample, **self._architecture(lambda name, opts: opts[int(rng.integers(len(opts)))])}

    def restrict(self, sample: dict[str, Any], opened: tuple[str, ...]) -> dict[str, Any]:
        """``sample`` with every architecture field not in ``opened`` (depth, width, kernel, stride) at its
        largest setting."""
        largest = self.largest(sample)
        return {**sample, **{k: v for k, v in largest.items() if k.startswith("stage")
                             and k.rpartition("/")[2] not in opened}}

    def describe_sample(self, sample: dict[str, Any]) -> str:
        """One line: preprocessing, then per stage ``depth x width k kernel s stride``."""
        stages = parse_stages(self.config, sample)
        return (f"{sample['fs']}Hz {sample['window']} {sample['filter']} {sample['normalise']} "
                + " ".join(f"{s.depth}x{s.channels}k{s.kernel}s{s.stride}" for s in stages))
