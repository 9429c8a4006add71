"""Choice blocks and skip aggregation for macro (ENAS-style) 1-D supernets, plus their standalone twins.

Layer layout (pre-activation, as in Hannun et al. 2019 / He et al. 2016):
``out_i = op_i(act_i(BN_i(in_i))) + sum_{j in skips_i} align_{j->i}(out_j)``.
The BN sits *before* the op, so its input does not depend on which op the layer samples: one switchable BN
per layer serves all candidates and all dilations (ENAS needs one BN per branch because its BN follows the op).

Skip aggregation is a plain **sum** (ENAS macro search with whole channels also sums, then normalises; here
the next layer's pre-activation BN does the normalising). A sum keeps every layer's channel count fixed, so a
residual network is exactly a sample of the space. Sources at a coarser resolution or a different width
are aligned by average pooling with kernel = stride = length ratio, then a 1x1 convolution per (source,
target) pair, sliced by width. The ENAS-style alternative (concat + 1x1) would need a 1x1 whose input size
varies with the sample; it is not used.
"""

from collections import OrderedDict
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from n2nas.supernet.ops import ACTIVATIONS, SlicedConv1d, SwitchableBatchNorm1d, make_family, parse_op


class ChoiceBlock(nn.Module):
    """Switchable pre-activation BN, then one of ``ops``. Ops of one family (every ``conv*``, every ``sep*``)
    share one weight cut to the sampled kernel (see :class:`n2nas.supernet.ops.ConvOp`); only the sampled op
    runs."""

    def __init__(self, channels: tuple[int, ...], ops: tuple[str, ...]):
        super().__init__()
        self.channels = tuple(channels)
        self.bn = SwitchableBatchNorm1d(self.channels)
        largest: dict[str, int] = {}
        for name in ops:
            family, taps = parse_op(name)
            largest[family] = max(taps, largest.get(family, 0))
        self.families = nn.ModuleDict({f: make_family(f, max(self.channels), k) for f, k in largest.items()})
        self.ops = tuple(ops)

    def forward(self, x: torch.Tensor, width_index: int, op: str, dilation: int, activation: str) -> torch.Tensor:
        """Run the sampled candidate on ``x`` (already at width option ``width_index``)."""
        x = ACTIVATIONS[activation][0](self.bn(x, width_index))
        family, taps = parse_op(op)
        return self.families[family](x, dilation, taps)

    def child(self, width_index: int, op: str, dilation: int, activation: str) -> nn.Sequential:
        """Plain ``Sequential(bn, act, op)`` with exactly the sampled operation."""
        c = self.channels[width_index]
        family, taps = parse_op(op)
        return nn.Sequential(OrderedDict(bn=self.bn.child(width_index), act=ACTIVATIONS[activation][1](),
                                         op=self.families[family].child(c, dilation, taps)))

    def child_state(self, width_index: int, op: str) -> dict[str, torch.Tensor]:
        """Shared weights for :meth:`child`."""
        c = self.channels[width_index]
        family, taps = parse_op(op)
        return {**{f"bn.{k}": v for k, v in self.bn.child_state(width_index).items()},
                **{f"op.{k}": v for k, v in self.families[family].child_state(c, taps).items()}}


class Align(nn.Module):
    """Bring a tensor to another layer's resolution and width: pool by ``ratio``, then a 1x1 if widths differ.

    Pooling uses ``ceil_mode`` so that pooling once by 4 gives the same length as pooling twice by 2, for any
    input length; ``pool`` is "avg" for skip connections and "max" for the main path's reductions.
    """

    def __init__(self, ratio: int, c_in: tuple[int, ...], c_out: tuple[int, ...], pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"unknown pooling {pool!r}")
        self.ratio, self.pool, self.c_in, self.c_out = ratio, pool, tuple(c_in), tuple(c_out)
        self.proj = SlicedConv1d(max(c_in), max(c_out), 1) if self.c_in != self.c_out else None

    def forward(self, x: torch.Tensor, width_index: int) -> torch.Tensor:
        """Aligned ``x``."""
        if self.ratio > 1:
            pool = F.avg_pool1d if self.pool == "avg" else F.max_pool1d
            x = pool(x, self.ratio, self.ratio, 0, ceil_mode=True)
        return x if self.proj is None else self.proj(x, self.c_out[width_index])

    def child(self, width_index: int) -> nn.Module:
        """Plain ``Sequential(pool?, proj?)``, or ``Identity`` when nothing needs aligning."""
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        if self.ratio > 1:
            cls = nn.AvgPool1d if self.pool == "avg" else nn.MaxPool1d
            parts["pool"] = cls(self.ratio, self.ratio, 0, ceil_mode=True)
        if self.proj is not None:
            parts["proj"] = self.proj.child(self.c_in[width_index], self.c_out[width_index])
        return nn.Sequential(parts) if parts else nn.Identity()

    def child_state(self, width_index: int) -> dict[str, torch.Tensor]:
        """Shared 1x1 weights for :meth:`child` (empty when it has none)."""
        if self.proj is None:
            return {}
        state = self.proj.child_state(self.c_in[width_index], self.c_out[width_index])
        return {f"proj.{k}": v for k, v in state.items()}


def sum_skips(out: torch.Tensor, outputs: List[torch.Tensor], flags, aligns: nn.ModuleDict, target: int,
              width_index: int) -> torch.Tensor:
    """``out`` plus every earlier layer output whose flag is on, aligned to layer ``target``."""
    for j, on in enumerate(flags):
        if on:
            out = out + aligns[skip_key(j, target)](outputs[j], width_index)
    return out


def skip_key(source: int, target: int) -> str:
    """ModuleDict key of the aligner from layer ``source`` to layer ``target``."""
    return f"{source}_{target}"


class ChildLayer(nn.Module):
    """One layer of a standalone child: reduction (or identity), the sampled block, and its fixed skips."""

    sources: List[int]

    def __init__(self, transition: nn.Module, block: nn.Module, skips: list[nn.Module], sources: list[int]):
        super().__init__()
        self.transition, self.block = transition, block
        self.skips = nn.ModuleList(skips)
        self.sources = list(sources)

    def forward(self, x: torch.Tensor, outputs: List[torch.Tensor]) -> torch.Tensor:
        """This layer's output given its input and every earlier layer's output."""
        out = self.block(self.transition(x))
        for k, align in enumerate(self.skips):
            out = out + align(outputs[self.sources[k]])
        return out
