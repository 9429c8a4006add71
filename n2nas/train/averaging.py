"""An exponential moving average of a model's weights, scored and saved in place of the last step's weights.

Why: on a few thousand ECG records the validation F1 of consecutive retrain epochs swings by 0.1-0.2 (see any
``history.json``), so early stopping on the raw weights picks a lucky or unlucky epoch. Averaging the weights over
the last few epochs smooths that walk (Polyak averaging; the same device as SWA and the "EMA" of image-model recipes).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def _warmed_ema(decay: float):
    """EMA update whose decay ramps up as ``(1 + n) / (10 + n)`` so that the first steps' weights fade quickly
    (a short run is not dragged back to its initial weights)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # integer buffers (batch-norm step counts) simply follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


def weight_average(model: nn.Module, decay: float) -> AveragedModel:
    """A copy of ``model`` that tracks the EMA of its parameters and batch-norm statistics; call
    ``update_parameters(model)`` after each optimiser step and score ``.module``."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=_warmed_ema(decay), use_buffers=True)
