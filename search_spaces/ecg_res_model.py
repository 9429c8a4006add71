"""The residual 1-D supernet of ``ecg-res`` and the standalone children it hands out.

Layout: a strided stem convolution, then ``len(stage_channels)`` stages of pre-activation residual blocks
(``BN-ReLU-conv(k, stride)-BN-ReLU-conv(k) + shortcut``), then BN-ReLU, global average pooling, dropout and a
linear head. The first block of a stage downsamples by the stage's stride and changes the width; its shortcut is
an average pool by the stride and a 1x1 convolution. Later blocks keep length and width (identity shortcut).

Weight sharing follows Once-for-All / BigNAS: every tensor is stored at the largest size,

- elastic width: a child with ``c`` channels uses the first ``c`` output (and input) channels;
- elastic kernel: a ``k``-tap convolution uses the centre ``k`` taps of the largest kernel;
- elastic depth: a stage of depth ``d`` runs its first ``d`` blocks;
- elastic stride: the same weights at another stride (a downsampling schedule changes no tensor's shape).

BatchNorm is sliced too (:class:`ElasticBatchNorm1d`: the first ``c`` statistics), so a child's running
statistics are only right after per-child recalibration (``SharedTrainingConfig.bn="recalibrate"``, the runner's
default), as in Once-for-All. :meth:`ResSupernet.child` and :meth:`ResSupernet.child_state` build the plain
modules and cut their weights from the same supernet modules, so names and shapes cannot drift apart.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from n2nas.errors import ConfigError
from n2nas.supernet.ops import SlicedConv1d, SlicedLinear


@dataclass(frozen=True)
class StageChoice:
    """What one stage of a sample does."""

    depth: int
    channels: int
    kernel: int
    stride: int


def stage_width(channels: int, multiplier: float) -> int:
    """Channels of a stage at a width multiplier (at least 4)."""
    return max(4, int(round(channels * multiplier)))


def parse_stages(cfg, sample: dict[str, Any]) -> list[StageChoice]:
    """Per-stage choices of a sample; ConfigError naming the label at fault."""
    out = []
    for i, full in enumerate(cfg.stage_channels):
        label = f"stage{i}/"
        try:
            depth, width = int(sample[label + "depth"]), float(sample[label + "width"])
            kernel, stride = int(sample[label + "kernel"]), int(sample[label + "stride"])
        except KeyError as err:
            raise ConfigError(str(err.args[0]), "missing from the sample") from None
        for name, value, options in (("depth", depth, cfg.depths), ("width", width, cfg.widths),
                                     ("kernel", kernel, cfg.kernels), ("stride", stride, cfg.strides)):
            if value not in options:
                raise ConfigError(label + name, f"expected one of {options}, got {value!r}")
        out.append(StageChoice(depth, stage_width(full, width), kernel, stride))
    return out


class ElasticBatchNorm1d(nn.BatchNorm1d):
    """A ``BatchNorm1d`` stored at full width that normalises an input of ``c`` channels with its first ``c``
    affine parameters and running statistics (Once-for-All's DynamicBatchNorm). It stays a ``_BatchNorm``, so
    the runner's recalibration (reset, cumulative average) and ``eval()`` treat it like any BN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the first ``x.shape[1]`` channels' worth of statistics."""
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # slices are views: batch_norm's in-place update of the running statistics lands in the full buffers
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)

    def child_state(self, c: int) -> dict[str, torch.Tensor]:
        """State dict of a plain ``BatchNorm1d(c)`` holding these statistics."""
        return {"weight": self.weight[:c].detach(), "bias": self.bias[:c].detach(),
                "running_mean": self.running_mean[:c], "running_var": self.running_var[:c],
                "num_batches_tracked": self.num_batches_tracked}


def _conv(weight: SlicedConv1d, x: torch.Tensor, c_out: int, taps: int, stride: int = 1) -> torch.Tensor:
    return F.conv1d(x, weight.sliced(c_out, x.shape[1], taps), None, stride, taps // 2)


class ResBlock(nn.Module):
    """A weight-shared pre-activation residual block; ``project`` adds the pooled 1x1 shortcut of a stage's
    first block."""

    def __init__(self, c_in: int, c_out: int, kernel: int, project: bool):
        super().__init__()
        self.bn1 = ElasticBatchNorm1d(c_in)
        self.conv1 = SlicedConv1d(c_in, c_out, kernel)
        self.bn2 = ElasticBatchNorm1d(c_out)
        self.conv2 = SlicedConv1d(c_out, c_out, kernel)
        self.proj = SlicedConv1d(c_in, c_out, 1) if project else None

    def forward(self, x: torch.Tensor, c: int, kernel: int, stride: int) -> torch.Tensor:
        """The block at ``c`` output channels, ``kernel`` taps and ``stride`` (first block only)."""
        h = _conv(self.conv1, F.relu(self.bn1(x)), c, kernel, stride)
        h = _conv(self.conv2, F.relu(self.bn2(h)), c, kernel)
        return h + self._shortcut(x, c, stride)

    def _shortcut(self, x: torch.Tensor, c: int, stride: int) -> torch.Tensor:
        if self.proj is None:
            return x
        if stride > 1:
            x = F.avg_pool1d(x, stride, stride, 0, ceil_mode=True)
        return _conv(self.proj, x, c, 1)

    def child(self, c_in: int, c: int, kernel: int, stride: int) -> "ResChildBlock":
        """The plain block a standalone child uses."""
        shortcut: nn.Module = nn.Identity()
        if self.proj is not None:
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            if stride > 1:
                parts["pool"] = nn.AvgPool1d(stride, stride, 0, ceil_mode=True)
            parts["proj"] = nn.Conv1d(c_in, c, 1, bias=False)
            shortcut = nn.Sequential(parts)
        return ResChildBlock(nn.BatchNorm1d(c_in), nn.Conv1d(c_in, c, kernel, stride, kernel // 2, bias=False),
                             nn.BatchNorm1d(c), nn.Conv1d(c, c, kernel, 1, kernel // 2, bias=False), shortcut)

    def child_state(self, c_in: int, c: int, kernel: int) -> dict[str, torch.Tensor]:
        """Shared weights for :meth:`child`."""
        state = {f"bn1.{k}": v for k, v in self.bn1.child_state(c_in).items()}
        state.update({f"bn2.{k}": v for k, v in self.bn2.child_state(c).items()})
        state["conv1.weight"] = self.conv1.sliced(c, c_in, kernel).detach()
        state["conv2.weight"] = self.conv2.sliced(c, c, kernel).detach()
        if self.proj is not None:
            state["shortcut.proj.weight"] = self.proj.sliced(c, c_in, 1).detach()
        return state


class ResChildBlock(nn.Module):
    """A standalone pre-activation residual block."""

    def __init__(self, bn1: nn.Module, conv1: nn.Module, bn2: nn.Module, conv2: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.bn1, self.conv1, self.bn2, self.conv2, self.shortcut = bn1, conv1, bn2, conv2, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``."""
        h = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(h))) + self.shortcut(x)


class ResChild(nn.Module):
    """A standalone ``ecg-res`` network: ``forward(x: (B, leads, L)) -> logits (B, n_classes)``."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module):
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.Sequential(*blocks), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of windows."""
        return self.head(self.blocks(self.stem(x)))


class ResSupernet(nn.Module):
    """Weight-shared residual supernet: ``forward(x, sample)`` runs the child ``sample`` (a path through it)."""

    def __init__(self, cfg, n_leads: int, n_classes: int):
        super().__init__()
        self.cfg, self.n_leads, self.n_classes = cfg, n_leads, n_classes
        chans, kmax, dmax = cfg.stage_channels, max(cfg.kernels), max(cfg.depths)
        self.stem = SlicedConv1d(n_leads, chans[0], cfg.stem_kernel, cfg.stem_stride, padding=cfg.stem_kernel // 2)
        self.stages = nn.ModuleList(
            nn.ModuleList(ResBlock(chans[max(i - 1, 0)] if b == 0 else c, c, kmax, project=b == 0)
                          for b in range(dmax))
            for i, c in enumerate(chans))
        self.head_bn = ElasticBatchNorm1d(chans[-1])
        self.classifier = SlicedLinear(chans[-1], n_classes)

    def forward(self, x: torch.Tensor, sample: dict[str, Any]) -> torch.Tensor:
        """Logits of the child ``sample`` on ``x`` (B, leads, L)."""
        stages = parse_stages(self.cfg, sample)
        h = self.stem(x, stages[0].channels)
        for blocks, s in zip(self.stages, stages):
            for b in range(s.depth):
                h = blocks[b](h, s.channels, s.kernel, s.stride if b == 0 else 1)
        h = F.relu(self.head_bn(h)).mean(-1)
        h = F.dropout(h, float(sample["dropout"]), self.training)
        return self.classifier(h)

    def child(self, sample: dict[str, Any]) -> ResChild:
        """A freshly initialised standalone child with exactly the sampled path."""
        stages = parse_stages(self.cfg, sample)
        stem = self.stem.child(self.n_leads, stages[0].channels)
        blocks, c_in = [], stages[0].channels
        for shared, s in zip(self.stages, stages):
            for b in range(s.depth):
                blocks.append(shared[b].child(c_in, s.channels, s.kernel, s.stride if b == 0 else 1))
                c_in = s.channels
        head = nn.Sequential(OrderedDict(
            bn=nn.BatchNorm1d(c_in), act=nn.ReLU(), pool=nn.AdaptiveAvgPool1d(1), flatten=nn.Flatten(),
            dropout=nn.Dropout(float(sample["dropout"])), fc=self.classifier.child(c_in)))
        return ResChild(stem, blocks, head)

    def child_state(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        """State dict for :meth:`child` ``(sample)`` cut from the shared weights."""
        stages = parse_stages(self.cfg, sample)
        state = {f"stem.{k}": v for k, v in self.stem.child_state(self.n_leads, stages[0].channels).items()}
        n, c_in = 0, stages[0].channels
        for shared, s in zip(self.stages, stages):
            for b in range(s.depth):
                state.update({f"blocks.{n}.{k}": v
                              for k, v in shared[b].child_state(c_in, s.channels, s.kernel).items()})
                n, c_in = n + 1, s.channels
        state.update({f"head.bn.{k}": v for k, v in self.head_bn.child_state(c_in).items()})
        state.update({f"head.fc.{k}": v for k, v in self.classifier.child_state(c_in).items()})
        return state


def build_child(cfg, sample: dict[str, Any], n_leads: int, n_classes: int) -> ResChild:
    """A freshly initialised standalone child, without allocating the supernet's weights."""
    with torch.device("meta"):  # the supernet is only consulted for shapes and names here
        supernet = ResSupernet(cfg, n_leads, n_classes)
    return supernet.child(sample)
