"""Batch-time augmentations on ``(B, leads, L)`` tensors, on whatever device the batch lives, seeded by a
``torch.Generator``: noise, amplitude scale, baseline wander, time stretch, polarity flip, lead dropout, mixup."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from n2nas.presets import preset


@dataclass(frozen=True)
class AugmentConfig:
    """Probability (per record) and strength of each augmentation; mixup is off when ``mixup_alpha`` is 0.

    Strengths are in units of the (usually normalised) input; wander frequency is in cycles per window so the
    same config fits every sampling rate and window length.
    """

    noise_p: float = 0.0
    noise_sigma: float = 0.05
    scale_p: float = 0.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    wander_p: float = 0.0
    wander_amplitude: float = 0.3
    wander_cycles: tuple[float, float] = (0.5, 3.0)
    stretch_p: float = 0.0
    stretch_range: tuple[float, float] = (0.9, 1.1)
    flip_p: float = 0.0
    lead_dropout_p: float = 0.0
    mixup_alpha: float = 0.0

    @staticmethod
    @preset()
    def none() -> "AugmentConfig":
        """No augmentation."""
        return AugmentConfig()

    @staticmethod
    @preset()
    def light() -> "AugmentConfig":
        """Mild noise, scaling and wander."""
        return AugmentConfig(noise_p=0.5, noise_sigma=0.03, scale_p=0.5, wander_p=0.3, wander_amplitude=0.2)

    @staticmethod
    @preset()
    def strong() -> "AugmentConfig":
        """Everything, including stretch, polarity flip, lead dropout and mixup."""
        return AugmentConfig(noise_p=0.8, noise_sigma=0.08, scale_p=0.8, scale_range=(0.6, 1.5), wander_p=0.5,
                             wander_amplitude=0.5, stretch_p=0.5, flip_p=0.2, lead_dropout_p=0.2, mixup_alpha=0.2)


def _chance(p: float, b: int, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(b, generator=g, device=device) < p


def _uniform(lo: float, hi: float, b: int, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=g, device=device)


def time_stretch(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Resample each record by its factor (>1 slower) with linear interpolation, keeping the length L."""
    b, leads, length = x.shape
    pos = torch.arange(length, device=x.device, dtype=x.dtype)[None, :] / factors[:, None]
    i0 = pos.floor().long()
    w = (pos - i0).unsqueeze(1)
    valid = (i0 < length - 1).unsqueeze(1)
    i0 = i0.clamp(max=length - 2).unsqueeze(1).expand(b, leads, length)
    left, right = torch.gather(x, 2, i0), torch.gather(x, 2, i0 + 1)
    return torch.where(valid, left * (1 - w) + right * w, torch.zeros_like(left))


def augment_batch(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented copies of ``x`` and (for mixup) ``y``; the inputs are never modified in place."""
    if cfg == AugmentConfig():
        return x, y
    b, leads, length = x.shape
    dev = x.device
    g = generator
    x = x.clone()
    if cfg.stretch_p > 0:
        pick = _chance(cfg.stretch_p, b, g, dev)
        factors = torch.where(pick, _uniform(*cfg.stretch_range, b, g, dev), torch.ones(b, device=dev))
        x = time_stretch(x, factors.to(x.dtype))
    if cfg.scale_p > 0:
        pick = _chance(cfg.scale_p, b, g, dev)
        scale = torch.where(pick, _uniform(*cfg.scale_range, b, g, dev), torch.ones(b, device=dev))
        x = x * scale[:, None, None]
    if cfg.wander_p > 0:
        pick = _chance(cfg.wander_p, b, g, dev).float()
        cycles = _uniform(*cfg.wander_cycles, b, g, dev)
        phase = _uniform(0, 2 * math.pi, b, g, dev)
        t = torch.linspace(0, 1, length, device=dev)
        wave = torch.sin(2 * math.pi * cycles[:, None] * t[None, :] + phase[:, None])
        x = x + (cfg.wander_amplitude * pick[:, None] * wave)[:, None, :]
    if cfg.noise_p > 0:
        pick = _chance(cfg.noise_p, b, g, dev).float()
        x = x + cfg.noise_sigma * pick[:, None, None] * torch.randn(x.shape, generator=g, device=dev)
    if cfg.flip_p > 0:
        x = x * torch.where(_chance(cfg.flip_p, b, g, dev), -1.0, 1.0)[:, None, None]
    if cfg.lead_dropout_p > 0 and leads > 1:
        drop = torch.rand(b, leads, generator=g, device=dev) < cfg.lead_dropout_p
        keep_one = torch.randint(leads, (b,), generator=g, device=dev)
        drop[torch.arange(b, device=dev), keep_one] = False  # never silence every lead
        x = x * (~drop).float()[:, :, None]
    if cfg.mixup_alpha > 0 and b > 1:
        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=g, device=dev))
        lam = float(np.random.default_rng(seed).beta(cfg.mixup_alpha, cfg.mixup_alpha))
        lam = max(lam, 1 - lam)  # keep the original record dominant so its label stays the majority
        perm = torch.randperm(b, generator=g, device=dev)
        x = lam * x + (1 - lam) * x[perm]
        y = lam * y + (1 - lam) * y[perm]
    return x, y
