"""An exponential moving average of a model's weights, scored and saved in place of the last step's weights.

Why: on a few thousand ECG records the validation score of consecutive retrain epochs swings widely (see any
``history.json``), so early stopping on the raw weights picks a lucky or unlucky epoch. Averaging the weights over
the last few epochs smooths that walk (Polyak averaging; the same device as SWA and the "EMA" of image-model recipes).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from n2nas.errors import ConfigError


def check_ema_decay(name: str, decay: float | None) -> None:
    """A ConfigError naming the option or field ``name`` unless ``decay`` is None (off) or lies in (0, 1)."""
    if decay is not None and not 0.0 < decay < 1.0:
        raise ConfigError(name, f"the weight-average decay must lie in (0, 1), got {decay}")


def _require_decay(decay: float) -> None:
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")


def warmed_decay(decay: float, n: float) -> float:
    """The EMA decay at update ``n``: ``decay``, ramped up as ``(1 + n) / (10 + n)`` so that the first steps'
    weights fade quickly (a short run is not dragged back to its initial weights)."""
    return min(decay, (1.0 + n) / (10.0 + n))


def _warmed_ema(decay: float):
    """EMA update with :func:`warmed_decay`."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        d = warmed_decay(decay, float(n_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # integer buffers (batch-norm step counts) simply follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """A copy of ``model`` that tracks the EMA of its parameters and batch-norm statistics; call
    ``update_parameters(model)`` after each optimiser step and score ``.module``."""
    _require_decay(decay)
    return AveragedModel(model, multi_avg_fn=_warmed_ema(decay), use_buffers=True)


class StateAverage:
    """The same warmed-up EMA over a state dict's floating-point tensors, updated every few steps rather than
    every step (for weights that live in a runner, possibly on other processes, where a copy per step would cost
    more than the step). ``update(state, steps)`` folds in the weights reached after ``steps`` more optimiser steps,
    as if each of those steps had ended there; integer entries (batch-norm step counts) follow the latest state."""

    def __init__(self, decay: float, state: dict[str, torch.Tensor], steps: int = 0):
        _require_decay(decay)
        self.decay, self.steps = decay, steps
        self.state = {k: v.detach().clone() for k, v in state.items()}

    @torch.no_grad()
    def update(self, state: dict[str, torch.Tensor], steps: int) -> None:
        """Fold in ``state``, reached ``steps`` optimiser steps after the last update."""
        keep = 1.0
        for n in range(self.steps, self.steps + steps):
            keep *= warmed_decay(self.decay, n)
        self.steps += steps
        for k, v in state.items():
            if torch.is_floating_point(v):
                self.state[k].lerp_(v.to(self.state[k].device), 1.0 - keep)
            else:
                self.state[k].copy_(v)
