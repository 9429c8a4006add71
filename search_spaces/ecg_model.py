"""The ECG macro supernet and the standalone children it hands out.

Layout (for every sample): a strided stem convolution, ``n_layers`` choice layers with ENAS skip connections,
reductions before the layers in ``stride_at`` (max pool by 2) / ``widen_at`` (1x1 convolution to twice the
channels), then BN-ReLU, global average pooling, dropout and a linear head, so any input length works.
See :mod:`n2nas.supernet.blocks` for the layer and skip conventions.

The supernet's ``forward(x, sample)`` only chooses which of its modules run; :meth:`ECGSupernet.child` builds
the same path as plain ``nn.Module`` s and :meth:`ECGSupernet.child_state` cuts their weights from the
shared ones, both from the same supernet modules, so names and shapes cannot drift apart.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.nn.functional as F
from torch import nn

from n2nas.errors import ConfigError
from n2nas.supernet.blocks import Align, ChildLayer, ChoiceBlock, skip_key, sum_skips
from n2nas.supernet.ops import SlicedConv1d, SlicedLinear, SwitchableBatchNorm1d
from search_spaces.leads import STANDARD_LEADS, lead_index


def width_channels(channels: int, multiplier: float) -> int:
    """Channels of a layer at a width multiplier (at least one)."""
    return max(1, int(round(channels * multiplier)))


@dataclass(frozen=True)
class Layout:
    """Per-layer resolution level (number of stride-2 reductions before it) and channels per width option."""

    resolution: tuple[int, ...]
    channels: tuple[tuple[int, ...], ...]

    @staticmethod
    def of(cfg) -> "Layout":
        """Layout of an ``ECGSpaceConfig``."""
        res, chans = [], []
        for i in range(cfg.n_layers):
            res.append(sum(1 for s in cfg.stride_at if s <= i))
            base = cfg.base_width * 2 ** sum(1 for s in cfg.widen_at if s <= i)
            chans.append(tuple(width_channels(base, w) for w in cfg.widths))
        return Layout(tuple(res), tuple(chans))


@dataclass(frozen=True)
class LayerChoice:
    """What one layer of a sample does."""

    op: str
    dilation: int
    activation: str
    sources: tuple[int, ...]


def parse_architecture(cfg, sample: dict[str, Any]) -> tuple[int, list[LayerChoice]]:
    """(width option index, per-layer choices) of a sample; ConfigError naming the label at fault."""
    try:
        width_index = list(cfg.widths).index(sample["width"])
    except (KeyError, ValueError):
        raise ConfigError("width", f"expected one of {cfg.widths}, got {sample.get('width')!r}") from None
    layers = []
    for i in range(cfg.n_layers):
        label = f"layer{i}/"
        try:
            flags = tuple(sample[label + "skip"])
            layers.append(LayerChoice(sample[label + "op"], int(sample[label + "dilation"]),
                                      sample[label + "activation"], tuple(j for j, on in enumerate(flags) if on)))
        except KeyError as err:
            raise ConfigError(str(err.args[0]), "missing from the sample") from None
    return width_index, layers


def sample_leads(cfg, sample: dict[str, Any], n_leads: int) -> tuple[int, ...] | None:
    """Input channels a sample's stem reads (None: all of them). Only spaces with ``lead_sets`` have a ``leads``
    token; their inputs are the 12 standard leads in order."""
    if not getattr(cfg, "lead_sets", ()):
        return None
    if n_leads != len(STANDARD_LEADS):
        raise ConfigError("leads", f"this space selects among the 12 standard leads; the data has {n_leads} lead(s)")
    try:
        index = lead_index(sample["leads"])
    except KeyError:
        raise ConfigError("leads", "missing from the sample") from None
    return None if len(index) == n_leads else index


class LeadSelect(nn.Module):
    """The stem of a child that reads a subset of the 12 leads: picks those channels, then convolves them.

    The index is a non-persistent buffer rebuilt from the pipeline's ``leads`` token, so model files hold only
    the convolution's weights (``conv.weight``)."""

    def __init__(self, index: tuple[int, ...], conv: nn.Module):
        super().__init__()
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve the selected leads of ``x`` (B, 12, L)."""
        return self.conv(x.index_select(1, self.index))


class ECGChild(nn.Module):
    """A standalone ECG network: ``forward(x: (B, leads, L)) -> logits (B, n_classes)``."""

    def __init__(self, stem: nn.Module, layers: list[ChildLayer], head: nn.Module):
        super().__init__()
        self.stem, self.layers, self.head = stem, nn.ModuleList(layers), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of windows."""
        h = self.stem(x)
        outputs: List[torch.Tensor] = []
        for layer in self.layers:
            h = layer(h, outputs)
            outputs.append(h)
        return self.head(h)


class ECGSupernet(nn.Module):
    """Weight-shared ECG supernet: every layer holds all candidate ops; ``forward(x, sample)`` runs one child."""

    def __init__(self, cfg, n_leads: int, n_classes: int):
        super().__init__()
        self.cfg, self.n_leads, self.n_classes = cfg, n_leads, n_classes
        self.layout = lay = Layout.of(cfg)
        n = cfg.n_layers
        self.stem = SlicedConv1d(n_leads, max(lay.channels[0]), cfg.stem_kernel, cfg.stem_stride,
                                 padding=cfg.stem_kernel // 2)
        self.layers = nn.ModuleList(ChoiceBlock(lay.channels[i], cfg.ops) for i in range(n))
        self.transitions = nn.ModuleDict({
            str(i): Align(2 if i in cfg.stride_at else 1, lay.channels[i - 1], lay.channels[i], pool="max")
            for i in range(1, n) if i in cfg.stride_at or i in cfg.widen_at})
        self.skips = nn.ModuleDict({
            skip_key(j, i): Align(2 ** (lay.resolution[i] - lay.resolution[j]), lay.channels[j], lay.channels[i])
            for i in range(n) for j in range(i)})
        self.head_bn = SwitchableBatchNorm1d(lay.channels[-1])
        self.classifier = SlicedLinear(max(lay.channels[-1]), n_classes)

    def forward(self, x: torch.Tensor, sample: dict[str, Any]) -> torch.Tensor:
        """Logits of the child ``sample`` on ``x`` (B, leads, L)."""
        w, layers = parse_architecture(self.cfg, sample)
        h = self._stem(x, self.layout.channels[0][w], sample_leads(self.cfg, sample, self.n_leads))
        outputs: List[torch.Tensor] = []
        for i, (block, choice) in enumerate(zip(self.layers, layers)):
            if str(i) in self.transitions:
                h = self.transitions[str(i)](h, w)
            out = block(h, w, choice.op, choice.dilation, choice.activation)
            h = sum_skips(out, outputs, sample[f"layer{i}/skip"], self.skips, i, w)
            outputs.append(h)
        h = F.relu(self.head_bn(h, w)).mean(-1)
        h = F.dropout(h, float(sample["dropout"]), self.training)
        return self.classifier(h)

    def _stem(self, x: torch.Tensor, c_out: int, index: tuple[int, ...] | None) -> torch.Tensor:
        """The shared stem on all leads, or on the ``index`` leads with those input channels of its weight."""
        if index is None:
            return self.stem(x, c_out)
        sel = torch.tensor(index, device=x.device)
        weight = self.stem.sliced(c_out, self.n_leads).index_select(1, sel)
        return F.conv1d(x.index_select(1, sel), weight, None, self.stem.stride, self.stem.padding_for(1))

    def child(self, sample: dict[str, Any]) -> ECGChild:
        """A freshly initialised standalone child with exactly the sampled path (no unused candidates)."""
        w, layers = parse_architecture(self.cfg, sample)
        lay = self.layout
        index = sample_leads(self.cfg, sample, self.n_leads)
        stem = self.stem.child(self.n_leads, lay.channels[0][w]) if index is None else \
            LeadSelect(index, self.stem.child(len(index), lay.channels[0][w]))
        children = []
        for i, choice in enumerate(layers):
            transition = self.transitions[str(i)].child(w) if str(i) in self.transitions else nn.Identity()
            block = self.layers[i].child(w, choice.op, choice.dilation, choice.activation)
            skips = [self.skips[skip_key(j, i)].child(w) for j in choice.sources]
            children.append(ChildLayer(transition, block, skips, list(choice.sources)))
        c = lay.channels[-1][w]
        head = nn.Sequential(OrderedDict(
            bn=self.head_bn.child(w), act=nn.ReLU(), pool=nn.AdaptiveAvgPool1d(1), flatten=nn.Flatten(),
            dropout=nn.Dropout(float(sample["dropout"])), fc=self.classifier.child(c)))
        return ECGChild(stem, children, head)

    def child_state(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        """State dict for :meth:`child` ``(sample)`` cut from the shared weights."""
        w, layers = parse_architecture(self.cfg, sample)
        lay = self.layout
        state = {f"stem.{k}": v for k, v in self.stem.child_state(self.n_leads, lay.channels[0][w]).items()}
        index = sample_leads(self.cfg, sample, self.n_leads)
        if index is not None:
            state = {"stem.conv.weight": state["stem.weight"][:, list(index)].clone()}

        def put(prefix: str, part: dict[str, torch.Tensor]) -> None:
            state.update({prefix + k: v for k, v in part.items()})

        for i, choice in enumerate(layers):
            if str(i) in self.transitions:
                put(f"layers.{i}.transition.", self.transitions[str(i)].child_state(w))
            put(f"layers.{i}.block.", self.layers[i].child_state(w, choice.op))
            for k, j in enumerate(choice.sources):
                put(f"layers.{i}.skips.{k}.", self.skips[skip_key(j, i)].child_state(w))
        put("head.bn.", self.head_bn.child_state(w))
        put("head.fc.", self.classifier.child_state(lay.channels[-1][w]))
        return state


def build_child(cfg, sample: dict[str, Any], n_leads: int, n_classes: int) -> ECGChild:
    """A freshly initialised standalone child, without allocating the supernet's weights."""
    with torch.device("meta"):  # the supernet is only consulted for shapes and names here
        supernet = ECGSupernet(cfg, n_leads, n_classes)
    return supernet.child(sample)


def copy_shared_weights(supernet: ECGSupernet, child: nn.Module, sample: dict[str, Any]) -> None:
    """Load the supernet's weights for ``sample`` into ``child`` (strict: every tensor must match)."""
    child.load_state_dict(supernet.child_state(sample), strict=True)  # copy_ also moves across devices
