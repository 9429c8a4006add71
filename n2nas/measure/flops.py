"""FLOPs and parameters with torch's FlopCounterMode (FLOPs = 2 x multiply-adds)."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of ``model`` for one input of ``input_shape`` (batch dimension included).

    Counted on a CPU copy in eval mode with oneDNN disabled: under oneDNN, FlopCounterMode misses LSTM/RNN
    kernels, and counting on the training device must not disturb it.
    """
    probe = copy.deepcopy(model).to("cpu").eval()
    x = torch.zeros(input_shape)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            probe(x)
    return int(counter.get_total_flops())
