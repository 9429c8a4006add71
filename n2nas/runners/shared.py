"""The shared-weight training step and its configuration, the same for every backend.

:meth:`n2nas.runners.local.LocalRunner.child_gradient` draws a batch and calls :func:`shared_backward`; the Ray
and MPI runners call ``child_gradient`` on their replicas between gradient averages, and the search loop, Ray Tune
and the benchmarks configure it with :class:`SharedTrainingConfig`. The sandwich's losses are
:mod:`n2nas.train.sandwich`; the children it trains come from the space's :class:`~search_spaces.protocol.ElasticSpace`
members.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.train.primitives import loss_fn
from n2nas.train.sandwich import sandwich_backward
from search_spaces.protocol import ElasticSpace

BN_MODES = ("recalibrate", "batch", "running")
RULES = ("auto", "uniform", "sandwich", "progressive")
ELASTIC_RULES = ("sandwich", "progressive")


@dataclass(frozen=True)
class SharedTrainingConfig:
    """How the shared weights are trained and children scored (the children's own lr / weight decay only apply
    when retraining).

    ``bn`` decides which BatchNorm statistics a child is scored with. The shared running statistics mix every
    child the supernet trained, so a child scored with them is judged partly on other children's statistics:

    - ``recalibrate`` (default; SPOS, Once-for-All): before scoring, the running statistics are reset and
      re-estimated on ``calibration_records`` fixed training records passed through that child alone;
    - ``batch``: BatchNorm uses each scoring batch's own statistics;
    - ``running``: the shared running statistics as they are (the behaviour before recalibration existed).

    Either way the supernet's own statistics are restored after scoring, so scoring never changes shared state
    (replicas of distributed runners stay identical).

    ``rule`` decides what one shared-weight step trains (:func:`shared_backward`, which every backend's step
    calls, so every backend trains with the same rule):

    - ``uniform``: the sampled child alone, one batch (SPOS / ENAS single path);
    - ``sandwich`` (BigNAS): the largest child, the smallest and ``sandwich_random`` random children (the sampled
      one and ``sandwich_random - 1`` drawn by the runner), all on the sampled preprocessing and one batch, the
      largest learning from the labels and the others from its soft outputs (weight ``distill``; ``1 - distill``
      from the labels); their gradients add up into one optimizer step. The space must be an
      :class:`~search_spaces.protocol.ElasticSpace` (``ecg-res`` is);
    - ``progressive`` (Once-for-All's progressive shrinking): the first ``shrink_steps`` steps train the largest
      child alone; then the space's ``shrink_phases`` open one group of elastic dimensions every ``shrink_steps``
      steps (``ecg-res``: kernel, then depth, then width and stride). Each step trains the largest child and
      ``sandwich_random`` children restricted to the dimensions opened so far (the others at their largest), the
      latter distilled from the former as in the sandwich. The step count lives in the supernet (a buffer), so
      it is checkpointed and kept identical across Ray / MPI replicas;
    - ``auto`` (default): an elastic space's ``shared_rule`` (``ecg-res``: sandwich), else uniform.
    """

    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0  # ENAS clips the shared weights' gradient norm at 5
    reward_metric: str = "auto"
    bn: str = "recalibrate"
    calibration_records: int = 256
    calibration_batch: int = 64
    rule: str = "auto"
    sandwich_random: int = 2
    distill: float = 1.0
    shrink_steps: int = 300

    @staticmethod
    @preset()
    def sandwich() -> "SharedTrainingConfig":
        """BigNAS's sandwich rule: largest + smallest + 2 random children per step, in-place distillation."""
        return SharedTrainingConfig(rule="sandwich")

    @staticmethod
    @preset()
    def uniform() -> "SharedTrainingConfig":
        """One uniformly sampled single path per step (SPOS), whatever the space prefers."""
        return SharedTrainingConfig(rule="uniform")

    def rule_for(self, space_def) -> str:
        """The rule this config trains ``space_def`` with (``auto`` resolved); ConfigError when the rule needs an
        :class:`~search_spaces.protocol.ElasticSpace` and ``space_def`` is none."""
        elastic = isinstance(space_def, ElasticSpace)
        rule = self.rule if self.rule != "auto" else space_def.shared_rule if elastic else "uniform"
        if rule in ELASTIC_RULES and not elastic:
            raise ConfigError("rule", f"the {rule} rule needs an elastic space (largest, smallest, "
                                      f"random_architecture, restrict, shrink_phases); "
                                      f"{getattr(space_def, 'name', space_def)} is not one")
        return rule

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError("rule", f"expected one of {', '.join(RULES)}, got {self.rule!r}")
        if self.sandwich_random < 1 or not 0.0 <= self.distill <= 1.0 or self.shrink_steps < 1:
            raise ConfigError("sandwich_random", "sandwich_random and shrink_steps must be >= 1, distill in [0, 1]")
        if self.bn not in BN_MODES:
            raise ConfigError("bn", f"expected one of {', '.join(BN_MODES)}, got {self.bn!r}")
        if self.calibration_records < 1 or self.calibration_batch < 1:
            raise ConfigError("calibration_records", "calibration records and batch must be at least 1")


def sandwich_children(space_def: ElasticSpace, sample: dict[str, Any], config: SharedTrainingConfig,
                      rng: np.random.Generator) -> list[dict[str, Any]]:
    """The children of one sandwich step around ``sample``: largest, smallest, ``sample`` and
    ``sandwich_random - 1`` random architectures (all with ``sample``'s preprocessing and training tokens)."""
    extra = [space_def.random_architecture(sample, rng) for _ in range(config.sandwich_random - 1)]
    return [space_def.largest(sample), space_def.smallest(sample), sample, *extra]


def shrinking_children(space_def: ElasticSpace, sample: dict[str, Any], config: SharedTrainingConfig,
                       rng: np.random.Generator, done: torch.Tensor) -> list[dict[str, Any]]:
    """The children of one progressive-shrinking step, counted in ``done`` (the supernet's step buffer): the
    largest alone in phase 0, then the largest, ``sample`` and random architectures restricted to the dimensions
    opened so far."""
    phase = min(int(done) // config.shrink_steps, len(space_def.shrink_phases))
    done.add_(1)
    if phase == 0:
        return [space_def.largest(sample)]
    opened = tuple(f for group in space_def.shrink_phases[:phase] for f in group)
    extra = [space_def.random_architecture(sample, rng) for _ in range(config.sandwich_random - 1)]
    return [space_def.largest(sample), *(space_def.restrict(s, opened) for s in (sample, *extra))]


def shared_backward(supernet: torch.nn.Module, space_def, sample: dict[str, Any], rule: str,
                    config: SharedTrainingConfig, x: torch.Tensor, y: torch.Tensor, multilabel: bool,
                    class_weight: torch.Tensor | None, rng: np.random.Generator) -> float | None:
    """Forward/backward of one shared-weight step around ``sample`` on the batch ``(x, y)``, gradients added to
    ``.grad``: the sampled child alone (``uniform``) or the children ``rule`` picks with ``rng``.

    Returns the loss (a sandwich's mean over its children), or None when one is not finite; a sandwich may then
    have left partial gradients, which the caller clears.
    """
    if rule in ELASTIC_RULES:
        children = (sandwich_children(space_def, sample, config, rng) if rule == "sandwich" else
                    shrinking_children(space_def, sample, config, rng, supernet.shrink_steps_done))
        parts = sandwich_backward(supernet, children, x, y, multilabel, class_weight, config.distill)
        return None if parts is None else parts["loss"]
    loss = loss_fn(supernet(x, sample), y, multilabel, class_weight)
    if not torch.isfinite(loss):
        return None
    loss.backward()
    return float(loss.detach())
