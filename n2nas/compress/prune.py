"""Magnitude pruning during training, with a polynomial sparsity schedule (Zhu & Gupta, 2017), and compact
storage of the pruned weights.

Only convolution and linear *weights* are pruned (biases, batch-norm parameters and buffers stay dense).
Masks are ``torch.nn.utils.prune`` re-parametrisations (``weight = weight_orig * weight_mask``); the
:class:`Pruner` rewrites the mask buffers in place as the schedule advances. A new mask is the top-k of
``|weight_orig * old_mask|`` per layer, so a weight once pruned stays pruned (the masks only grow).

Per-layer amounts are either the schedule's sparsity everywhere (``fixed``) or ``adaptive``: proportional to
the layer's output channels and scaled so that the parameter-weighted sparsity over all prunable weights
equals the target (wide layers are the most redundant; the stem and the classifier keep more weights).

Saved model folders store each pruned tensor as its non-zero values plus a packed bitmask
(:func:`pack_state`): 4 bytes per kept weight + 1 bit per weight, loaded back with ``weights_only=True``.
"""
from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from n2nas.errors import ConfigError
from n2nas.presets import named, preset, presets_of

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
VALUES, MASK, SHAPE = "#values", "#bitmask", "#shape"  # key suffixes of packed tensors (never module names)
MAX_LAYER_SPARSITY = 0.95


@dataclass(frozen=True)
class PruneConfig:
    """Gradual magnitude pruning from ``initial`` to ``final`` sparsity over the first ``ramp`` fraction of the
    planned epochs (cubic schedule), masks updated every ``every_steps`` optimizer steps."""

    final: float = 0.5
    initial: float = 0.1
    ramp: float = 0.5
    power: float = 3.0
    every_steps: int = 10
    per_layer: str = "fixed"  # "fixed" | "adaptive"

    def __post_init__(self):
        if not 0.0 <= self.initial <= self.final < 1.0:
            raise ConfigError("PruneConfig", f"need 0 <= initial <= final < 1, got {self.initial}, {self.final}")
        if self.per_layer not in ("fixed", "adaptive"):
            raise ConfigError("PruneConfig", f"per_layer must be fixed or adaptive, got {self.per_layer!r}")
        if not 0.0 < self.ramp <= 1.0 or self.every_steps < 1 or self.power <= 0:
            raise ConfigError("PruneConfig", "ramp must be in (0, 1], every_steps >= 1 and power > 0")

    @staticmethod
    @preset()
    def fixed(final: float = 0.5) -> "PruneConfig":
        """The same sparsity in every layer, 10% -> ``final``."""
        return PruneConfig(final=final)

    @staticmethod
    @preset()
    def adaptive(final: float = 0.7) -> "PruneConfig":
        """Per-layer sparsity growing with output channels, ``final`` overall (parameter-weighted)."""
        return PruneConfig(final=final, per_layer="adaptive")

    def sparsity_at(self, step: int, ramp_steps: int) -> float:
        """Target sparsity after ``step`` optimizer steps: s_f + (s_i - s_f) (1 - t / T)^power, then s_f."""
        if ramp_steps <= 0 or step >= ramp_steps:
            return self.final
        frac = 1.0 - max(step, 0) / ramp_steps
        return self.final + (self.initial - self.final) * frac ** self.power


def prune_option(text: str) -> PruneConfig | None:
    """``--prune``: ``none``, a percentage (fixed sparsity, e.g. ``50`` or ``70``) or a preset name (``adaptive``,
    ``fixed``)."""
    known = presets_of(PruneConfig)
    if text == "none":
        return None
    if text in known:
        return named(PruneConfig, text, "--prune")
    try:
        return PruneConfig.fixed(int(text) / 100)
    except ValueError:
        raise ConfigError("--prune", f"expected none, a percentage or {' / '.join(known)}, got {text!r}") from None


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Convolution and linear modules of ``model`` by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def _out_channels(module: nn.Module) -> int:
    return int(module.out_channels if isinstance(module, (nn.Conv1d, nn.Conv2d)) else module.out_features)


def layer_amounts(layers: dict[str, nn.Module], target: float, adaptive: bool) -> dict[str, float]:
    """Final sparsity per layer. Adaptive: ``a * out_channels`` (capped at 0.95) with ``a`` chosen by bisection
    so that pruned weights / prunable weights == ``target``."""
    if not adaptive or not layers:
        return {name: target for name in layers}
    sizes = np.array([m.weight.numel() for m in layers.values()], dtype=float)
    chans = np.array([_out_channels(m) for m in layers.values()], dtype=float)

    def overall(scale: float) -> np.ndarray:
        return np.minimum(scale * chans, MAX_LAYER_SPARSITY)

    lo, hi = 0.0, MAX_LAYER_SPARSITY / chans.min()
    if (overall(hi) * sizes).sum() / sizes.sum() < target:
        raise ConfigError("PruneConfig", f"adaptive pruning cannot reach {target:.0%} with a per-layer cap of "
                                         f"{MAX_LAYER_SPARSITY:.0%}")
    for _ in range(60):  # bisection on a monotone function: 60 halvings is far below float resolution
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (overall(mid) * sizes).sum() / sizes.sum() < target else (lo, mid)
    return {name: float(a) for name, a in zip(layers, overall(hi))}


def _magnitude_mask(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """Keep the ``numel - round(amount * numel)`` largest |weight| entries (ties broken by position)."""
    n_prune = int(round(amount * weight.numel()))
    mask = torch.ones_like(weight)
    if n_prune > 0:
        order = torch.argsort(weight.abs().flatten(), stable=True)
        mask.view(-1)[order[:n_prune]] = 0.0
    return mask


class Pruner:
    """Attaches masks to ``model``'s conv/linear weights and moves them along ``config``'s schedule."""

    def __init__(self, model: nn.Module, config: PruneConfig, ramp_steps: int):
        self.config, self.ramp_steps, self.step_count = config, int(ramp_steps), 0
        self.layers = prunable_layers(model)
        if not self.layers:
            raise ConfigError("--prune", "the model has no convolution or linear layers to prune")
        self.final_amounts = layer_amounts(self.layers, config.final, config.per_layer == "adaptive")
        for module in self.layers.values():
            prune.custom_from_mask(module, "weight", torch.ones_like(module.weight))
        self.update()

    @torch.no_grad()
    def update(self, sparsity: float | None = None) -> float:
        """Recompute every mask for the schedule's current sparsity (or ``sparsity``); returns it."""
        s = self.config.sparsity_at(self.step_count, self.ramp_steps) if sparsity is None else sparsity
        scale = s / self.config.final if self.config.final > 0 else 0.0
        for name, module in self.layers.items():
            masked = module.weight_orig * module.weight_mask
            module.weight_mask.copy_(_magnitude_mask(masked, self.final_amounts[name] * scale))
        return s

    def step(self) -> None:
        """Call after each optimizer step: masks are refreshed every ``every_steps`` steps while ramping."""
        self.step_count += 1
        if self.step_count == self.ramp_steps or (
                self.step_count < self.ramp_steps and self.step_count % self.config.every_steps == 0):
            self.update()

    @property
    def done(self) -> bool:
        """Whether the schedule has reached its final sparsity."""
        return self.step_count >= self.ramp_steps

    def finalize(self) -> None:
        """Force the final masks and make them permanent (plain ``weight`` tensors with zeros; hooks removed)."""
        self.update(self.config.final)
        for module in self.layers.values():
            prune.remove(module, "weight")


def sparsity_report(model_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, Any]:
    """Measured zeros: over conv/linear weights (``sparsity``), per layer, and over every parameter tensor."""
    if isinstance(model_or_state, nn.Module):
        layers = {f"{n}.weight": m.weight.detach() for n, m in prunable_layers(model_or_state).items()}
        params = [p.detach() for p in model_or_state.parameters()]
    else:  # a plain state dict: conv/linear weights are the >= 2-D float tensors named *.weight
        state = unpack_state(model_or_state)
        layers = {k: v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2 and v.is_floating_point()}
        params = [v for v in state.values() if v.is_floating_point()]
    zeros = {k: int((v == 0).sum()) for k, v in layers.items()}
    total = sum(v.numel() for v in layers.values())
    n_params = sum(p.numel() for p in params)
    return {"sparsity": sum(zeros.values()) / max(total, 1), "prunable_weights": total,
            "nonzero_weights": total - sum(zeros.values()),
            "sparsity_all_params": sum(int((p == 0).sum()) for p in params) / max(n_params, 1),
            "params": n_params, "per_layer": {k: zeros[k] / layers[k].numel() for k in layers}}


def pack_state(state: dict[str, torch.Tensor], min_sparsity: float = 0.1) -> dict[str, torch.Tensor]:
    """A state dict where each floating tensor with at least ``min_sparsity`` zeros is stored as its non-zero
    values (``KEY#values``), a packed bitmask (``KEY#bitmask``, uint8) and its shape (``KEY#shape``)."""
    out: dict[str, torch.Tensor] = OrderedDict()
    out._metadata = getattr(state, "_metadata", OrderedDict())  # module versions, used by load_state_dict
    for key, value in state.items():
        value = value.detach().cpu()
        if value.is_floating_point() and value.dim() >= 2 and (value == 0).float().mean() >= min_sparsity:
            mask = (value != 0).flatten()
            out[key + VALUES] = value.flatten()[mask].clone()
            out[key + MASK] = torch.from_numpy(np.packbits(mask.numpy()))
            out[key + SHAPE] = torch.tensor(value.shape, dtype=torch.int64)
        else:
            out[key] = value
    return out


def unpack_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The dense state dict of :func:`pack_state` output (plain state dicts pass through unchanged)."""
    if not any(k.endswith(SHAPE) for k in state):
        return state
    out: dict[str, torch.Tensor] = OrderedDict()
    out._metadata = getattr(state, "_metadata", OrderedDict())
    for key, value in state.items():
        if key.endswith(SHAPE):
            base = key[: -len(SHAPE)]
            shape = tuple(int(s) for s in value.tolist())
            n = int(np.prod(shape))
            mask = torch.from_numpy(np.unpackbits(state[base + MASK].numpy(), count=n).astype(bool))
            values = state[base + VALUES]
            dense = torch.zeros(n, dtype=values.dtype)
            dense[mask] = values
            out[base] = dense.view(shape)
        elif not key.endswith((VALUES, MASK)):
            out[key] = value
    return out


def state_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size in bytes of ``torch.save(state)`` (what a ``model.pt`` holding it weighs)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getbuffer().nbytes
