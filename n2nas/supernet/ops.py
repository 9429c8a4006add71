"""Width-sliceable 1-D candidate operations for weight-shared supernets.

Slimmable convention (Yu et al. 2019): a layer's weights are stored at the widest width and a narrower child
uses the first ``c`` output/input channels. Batch statistics differ per width, so normalisation is
*switchable*: one ``BatchNorm1d`` per width option. Every supernet module here can also hand out the plain
module a standalone child uses (``child(...)``) and that module's state dict cut from the shared weights
(``child_state(...)``), so the two always agree on parameter names.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# name -> (functional form used by the supernet, module class used by standalone children)
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], type[nn.Module]]] = {
    "relu": (F.relu, nn.ReLU),
    "elu": (F.elu, nn.ELU),
    "gelu": (F.gelu, nn.GELU),
    "silu": (F.silu, nn.SiLU),
}


def same_padding(kernel: int, dilation: int) -> int:
    """Padding that keeps the length for an odd ``kernel`` at stride 1."""
    return dilation * (kernel - 1) // 2


class SlicedConv1d(nn.Module):
    """Bias-free Conv1d stored at full width; ``forward`` uses the first ``c_out`` x ``x.shape[1]`` channels.

    ``depthwise=True`` stores one filter per channel (groups = channels), sliced to the input's channels.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, depthwise: bool = False,
                 padding: int | None = None):
        super().__init__()
        if depthwise and c_in != c_out:
            raise ValueError("a depthwise convolution keeps the channel count")
        self.kernel, self.stride, self.depthwise = kernel, stride, depthwise
        self.padding = padding  # None: "same" padding for the dilation in use
        self.weight = nn.Parameter(torch.empty(c_out, 1 if depthwise else c_in, kernel))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv1d's own initialisation

    def sliced(self, c_out: int, c_in: int) -> torch.Tensor:
        """The shared weight cut to ``c_out`` x ``c_in`` channels (a view: gradients reach the full tensor)."""
        return self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in]

    def _padding(self, dilation: int) -> int:
        return same_padding(self.kernel, dilation) if self.padding is None else self.padding

    def forward(self, x: torch.Tensor, c_out: int | None = None, dilation: int = 1) -> torch.Tensor:
        """Convolve ``x`` to ``c_out`` channels (depthwise: as many as ``x`` has)."""
        c_in = x.shape[1]
        c_out = c_in if (self.depthwise or c_out is None) else c_out
        return F.conv1d(x, self.sliced(c_out, c_in), None, self.stride, self._padding(dilation), dilation,
                        c_in if self.depthwise else 1)

    def child(self, c_in: int, c_out: int, dilation: int = 1) -> nn.Conv1d:
        """The plain ``nn.Conv1d`` a standalone child uses for this slice."""
        return nn.Conv1d(c_in, c_out, self.kernel, self.stride, self._padding(dilation), dilation,
                         groups=c_in if self.depthwise else 1, bias=False)

    def child_state(self, c_in: int, c_out: int) -> dict[str, torch.Tensor]:
        """State dict of :meth:`child` holding the shared weights."""
        return {"weight": self.sliced(c_out, c_in).detach()}


class SwitchableBatchNorm1d(nn.Module):
    """One ``BatchNorm1d`` per width option ("switchable BN"): widths never mix their statistics."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm1d(c) for c in channels)

    def forward(self, x: torch.Tensor, width_index: int) -> torch.Tensor:
        """Normalise with the BN of width option ``width_index``."""
        return self.bns[width_index](x)

    def child(self, width_index: int) -> nn.BatchNorm1d:
        """A fresh plain BN of the right size."""
        return nn.BatchNorm1d(self.bns[width_index].num_features)

    def child_state(self, width_index: int) -> dict[str, torch.Tensor]:
        """Affine parameters and running statistics of that width's BN."""
        return {k: v.detach() for k, v in self.bns[width_index].state_dict().items()}


class SlicedLinear(nn.Module):
    """Linear layer over the first ``x.shape[-1]`` input features of a full-width weight."""

    def __init__(self, f_in: int, f_out: int):
        super().__init__()
        self.full = nn.Linear(f_in, f_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the input-sliced layer."""
        return F.linear(x, self.full.weight[:, : x.shape[-1]], self.full.bias)

    def child(self, f_in: int) -> nn.Linear:
        """A plain ``nn.Linear`` of the sliced size."""
        return nn.Linear(f_in, self.full.out_features)

    def child_state(self, f_in: int) -> dict[str, torch.Tensor]:
        """Sliced weight and the full bias."""
        return {"weight": self.full.weight[:, :f_in].detach(), "bias": self.full.bias.detach()}


class ConvOp(nn.Module):
    """A full ``kernel``-tap convolution, channels in = channels out; the dilation is chosen per call.

    One kernel serves every dilation (the same taps, spread further apart): the dilation token changes how
    the shared weights are applied, not which weights, which keeps the supernet a third of the size.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = SlicedConv1d(channels, channels, kernel)

    def forward(self, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        """Convolve at ``x``'s width."""
        return self.conv(x, x.shape[1], dilation)

    def child(self, c: int, dilation: int) -> nn.Module:
        """Plain ``nn.Conv1d``."""
        return self.conv.child(c, c, dilation)

    def child_state(self, c: int) -> dict[str, torch.Tensor]:
        """Weights for :meth:`child`."""
        return self.conv.child_state(c, c)


class SepConvOp(nn.Module):
    """Depthwise-separable convolution: a dilated depthwise ``kernel``-tap filter then a pointwise 1x1."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.depthwise = SlicedConv1d(channels, channels, kernel, depthwise=True)
        self.pointwise = SlicedConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        """Depthwise then pointwise at ``x``'s width."""
        return self.pointwise(self.depthwise(x, dilation=dilation), x.shape[1])

    def child(self, c: int, dilation: int) -> nn.Module:
        """``Sequential(depthwise, pointwise)`` of plain convolutions."""
        return nn.Sequential(OrderedDict(depthwise=self.depthwise.child(c, c, dilation),
                                         pointwise=self.pointwise.child(c, c)))

    def child_state(self, c: int) -> dict[str, torch.Tensor]:
        """Weights for :meth:`child`."""
        return {**{f"depthwise.{k}": v for k, v in self.depthwise.child_state(c, c).items()},
                **{f"pointwise.{k}": v for k, v in self.pointwise.child_state(c, c).items()}}


class PoolOp(nn.Module):
    """3-tap max or average pooling at stride 1 (length kept); no parameters, dilation ignored."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"unknown pooling {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor, dilation: int = 1) -> torch.Tensor:
        """Pool with a 3-sample window."""
        if self.kind == "max":
            return F.max_pool1d(x, 3, 1, 1)
        return F.avg_pool1d(x, 3, 1, 1, count_include_pad=False)  # edges average real samples only

    def child(self, c: int, dilation: int) -> nn.Module:
        """The matching ``nn.MaxPool1d`` / ``nn.AvgPool1d``."""
        return nn.MaxPool1d(3, 1, 1) if self.kind == "max" else nn.AvgPool1d(3, 1, 1, count_include_pad=False)

    def child_state(self, c: int) -> dict[str, torch.Tensor]:
        """No parameters."""
        return {}


def make_op(name: str, channels: int) -> nn.Module:
    """Candidate op from its token: ``conv{k}``, ``sep{k}``, ``maxpool3`` or ``avgpool3``."""
    if name in ("maxpool3", "avgpool3"):
        return PoolOp(name[:3])
    for prefix, cls in (("conv", ConvOp), ("sep", SepConvOp)):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            kernel = int(name[len(prefix):])
            if kernel % 2 == 0:
                raise ValueError(f"{name}: kernels must be odd so that stride-1 layers keep the length")
            return cls(channels, kernel)
    raise ValueError(f"unknown candidate op {name!r}")
