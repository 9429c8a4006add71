"""FLOPs and parameters with torch's FlopCounterMode (FLOPs = 2 x multiply-adds).

FlopCounterMode counts matrix products and convolutions (``mm``, ``addmm``, ``bmm``, ``convolution``, SDPA);
bias additions, normalisation, activations and pooling are not counted, as in the usual hand counts
(Conv1d: 2 * C_in/groups * C_out * k * L_out; Linear: 2 * in * out; LSTM layer: 2 * 4H * (I + H) per time step).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from n2nas.models.folder import strip_batch_norm


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...], device: str = "meta") -> int:
    """Forward FLOPs of ``model`` for one input of ``input_shape`` (batch dimension included).

    Counted on a copy in eval mode with oneDNN disabled: under oneDNN, FlopCounterMode misses LSTM/RNN
    kernels (they run as one opaque oneDNN call), and counting on the training device must not disturb it.
    The default ``device="meta"`` counts shapes without computing anything (cheap on a busy CPU, fine for
    models too big to run there); a model with an op lacking a meta kernel is counted on a CPU copy instead.
    """
    if device not in ("cpu", "meta"):
        raise ValueError(f"FLOPs are counted on 'cpu' or 'meta', not {device!r}")
    try:
        return _count(model, input_shape, device)
    except (NotImplementedError, RuntimeError):
        if device == "cpu":
            raise
        return _count(model, input_shape, "cpu")


def _count(model: nn.Module, input_shape: tuple[int, ...], device: str) -> int:
    # BatchNorm is not counted anyway, and under FlopCounterMode on meta it runs as a slow Python decomposition
    probe = strip_batch_norm(copy.deepcopy(model).to(device).eval())
    x = torch.zeros(input_shape, device=device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            probe(x)
    return int(counter.get_total_flops())

