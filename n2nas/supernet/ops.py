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
    """Bias-free Conv1d stored at full width and full kernel; ``forward`` uses the first ``c_out`` x
    ``x.shape[1]`` channels and, when ``taps`` is given, the centre ``taps`` taps of the kernel.

    ``depthwise=True`` stores one filter per channel (groups = channels), sliced to the input's channels.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, depthwise: bool = False,
                 padding: int | None = None):
        super().__init__()
        if depthwise and c_in != c_out:
            raise ValueError("a depthwise convolution keeps the channel count")
        self.kernel, self.stride, self.depthwise = kernel, stride, depthwise
        self.padding = padding  # None: "same" padding for the taps and dilation in use
        self.weight = nn.Parameter(torch.empty(c_out, 1 if depthwise else c_in, kernel))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv1d's own initialisation

    def sliced(self, c_out: int, c_in: int, taps: int | None = None) -> torch.Tensor:
        """The shared weight cut to ``c_out`` x ``c_in`` channels and the centre ``taps`` taps (a view:
        gradients reach the full tensor)."""
        w = self.weight[:c_out] if self.depthwise else self.weight[:c_out, :c_in]
        if taps is not None and taps != self.kernel:
            if taps > self.kernel or (self.kernel - taps) % 2:
                raise ValueError(f"cannot cut {taps} centre taps from a {self.kernel}-tap kernel")
            start = (self.kernel - taps) // 2
            w = w[..., start:start + taps]
        return w

    def padding_for(self, dilation: int, taps: int | None = None) -> int:
        """The padding of a convolution with ``taps`` taps at ``dilation``: "same" unless fixed at construction."""
        return same_padding(taps or self.kernel, dilation) if self.padding is None else self.padding

    def forward(self, x: torch.Tensor, c_out: int | None = None, dilation: int = 1,
                taps: int | None = None) -> torch.Tensor:
        """Convolve ``x`` to ``c_out`` channels (depthwise: as many as ``x`` has) with ``taps`` taps."""
        c_in = x.shape[1]
        c_out = c_in if (self.depthwise or c_out is None) else c_out
        return F.conv1d(x, self.sliced(c_out, c_in, taps), None, self.stride, self.padding_for(dilation, taps),
                        dilation, c_in if self.depthwise else 1)

    def child(self, c_in: int, c_out: int, dilation: int = 1, taps: int | None = None) -> nn.Conv1d:
        """The plain ``nn.Conv1d`` a standalone child uses for this slice."""
        return nn.Conv1d(c_in, c_out, taps or self.kernel, self.stride, self.padding_for(dilation, taps), dilation,
                         groups=c_in if self.depthwise else 1, bias=False)

    def child_state(self, c_in: int, c_out: int, taps: int | None = None) -> dict[str, torch.Tensor]:
        """State dict of :meth:`child` holding the shared weights."""
        return {"weight": self.sliced(c_out, c_in, taps).detach()}


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
    """Full convolutions of every kernel size of one layer, channels in = channels out, sharing one weight.

    Kernel sizes are entangled (Once-for-All's elastic kernel): ``conv3`` uses the centre 3 taps of the largest
    kernel, ``conv15`` all of them, so every kernel choice trains the same filters and a layer's output channels
    mean the same thing whichever kernel a child picks. With independent weights per kernel, a layer's input
    features changed meaning whenever the layer before switched kernels, and a supernet trained on uniformly
    sampled kernels stayed at the class prior (see benchmarks/ranking.py). One kernel also serves every
    dilation (the same taps, spread further apart).
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = SlicedConv1d(channels, channels, kernel)

    def forward(self, x: torch.Tensor, dilation: int = 1, taps: int | None = None) -> torch.Tensor:
        """Convolve at ``x``'s width with the centre ``taps`` taps."""
        return self.conv(x, x.shape[1], dilation, taps)

    def child(self, c: int, dilation: int, taps: int | None = None) -> nn.Module:
        """Plain ``nn.Conv1d``."""
        return self.conv.child(c, c, dilation, taps)

    def child_state(self, c: int, taps: int | None = None) -> dict[str, torch.Tensor]:
        """Weights for :meth:`child`."""
        return self.conv.child_state(c, c, taps)


class SepConvOp(nn.Module):
    """Depthwise-separable convolutions of every kernel size: a dilated depthwise filter (centre ``taps`` taps of
    one shared kernel, as in :class:`ConvOp`) then one shared pointwise 1x1."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.depthwise = SlicedConv1d(channels, channels, kernel, depthwise=True)
        self.pointwise = SlicedConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, dilation: int = 1, taps: int | None = None) -> torch.Tensor:
        """Depthwise then pointwise at ``x``'s width."""
        return self.pointwise(self.depthwise(x, dilation=dilation, taps=taps), x.shape[1])

    def child(self, c: int, dilation: int, taps: int | None = None) -> nn.Module:
        """``Sequential(depthwise, pointwise)`` of plain convolutions."""
        return nn.Sequential(OrderedDict(depthwise=self.depthwise.child(c, c, dilation, taps),
                                         pointwise=self.pointwise.child(c, c)))

    def child_state(self, c: int, taps: int | None = None) -> dict[str, torch.Tensor]:
        """Weights for :meth:`child`."""
        return {**{f"depthwise.{k}": v for k, v in self.depthwise.child_state(c, c, taps).items()},
                **{f"pointwise.{k}": v for k, v in self.pointwise.child_state(c, c).items()}}


class PoolOp(nn.Module):
    """3-tap max or average pooling at stride 1 (length kept); no parameters, dilation and taps ignored."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in ("max", "avg"):
            raise ValueError(f"unknown pooling {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor, dilation: int = 1, taps: int | None = None) -> torch.Tensor:
        """Pool with a 3-sample window."""
        if self.kind == "max":
            return F.max_pool1d(x, 3, 1, 1)
        return F.avg_pool1d(x, 3, 1, 1, count_include_pad=False)  # edges average real samples only

    def child(self, c: int, dilation: int, taps: int | None = None) -> nn.Module:
        """The matching ``nn.MaxPool1d`` / ``nn.AvgPool1d``."""
        return nn.MaxPool1d(3, 1, 1) if self.kind == "max" else nn.AvgPool1d(3, 1, 1, count_include_pad=False)

    def child_state(self, c: int, taps: int | None = None) -> dict[str, torch.Tensor]:
        """No parameters."""
        return {}


def parse_op(name: str) -> tuple[str, int]:
    """An op token as (family, taps): ``conv7`` -> ("conv", 7), ``sep5`` -> ("sep", 5), ``maxpool3`` ->
    ("maxpool", 3)."""
    if name in ("maxpool3", "avgpool3"):
        return name[:-1], 3
    for prefix in ("conv", "sep"):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            kernel = int(name[len(prefix):])
            if kernel % 2 == 0:
                raise ValueError(f"{name}: kernels must be odd so that stride-1 layers keep the length")
            return prefix, kernel
    raise ValueError(f"unknown candidate op {name!r}")


def make_family(family: str, channels: int, kernel: int) -> nn.Module:
    """The shared module of an op family: every ``conv*`` (or ``sep*``) op of a layer is a slice of one."""
    if family in ("maxpool", "avgpool"):
        return PoolOp(family[:3])
    return {"conv": ConvOp, "sep": SepConvOp}[family](channels, kernel)
