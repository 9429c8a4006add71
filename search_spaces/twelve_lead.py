"""Hand-designed 12-lead references as fixed pipelines (``plain-cnn-12``, ``resnet-12``), retrained with the same
recipe as a searched pipeline so that a search has something fair to beat on 12-lead, multi-label records."""
from __future__ import annotations

from typing import Any

from n2nas.space import SearchSpace


def _n_layers(ss: SearchSpace) -> int:
    return sum(1 for d in ss.flat if d.label.startswith("layer") and d.label.endswith("/op"))


def residual_layers(n_layers: int) -> dict[str, Any]:
    """Layer tokens of two-conv residual blocks: kernel 5 then 3, ReLU, and from the second block on the block's
    second layer adds the block input (skip i -> i-2 on odd layers, as in :func:`search_spaces.ecg.hannun_sample`)."""
    layers: dict[str, Any] = {}
    for i in range(n_layers):
        flags = [0] * i
        if i % 2 == 1 and i >= 3:
            flags[i - 2] = 1
        layers.update({f"layer{i}/op": "conv5" if i % 2 == 0 else "conv3", f"layer{i}/dilation": 1,
                       f"layer{i}/activation": "relu", f"layer{i}/skip": tuple(flags)})
    return layers


def plain_cnn_12_sample(space) -> dict[str, Any]:
    """A plain 1-D CNN on all 12 leads (meant for ``ecg-12lead``: 6 conv7 + ReLU layers, 32-64-128 channels, no
    skips): 100 Hz, no filter, per-record z-score, 10 s crops, lr 1e-3, batch 32, dropout 0.2, weight decay 1e-3,
    class weighting (BCE ``pos_weight``) on: the recipe of ``resnet-12`` and of a ``12-lead`` search's pinned
    training tokens, one recipe for every row."""
    ss: SearchSpace = getattr(space, "space", space)
    sample = {"leads": 12, "fs": 100, "filter": "none", "normalise": "record_z", "window": "crop:10",
              "augment": "none", "width": 1.0, "lr": 1e-3, "batch_size": 32, "dropout": 0.2, "weight_decay": 1e-3,
              "class_weighting": True}
    for i in range(_n_layers(ss)):
        sample.update({f"layer{i}/op": "conv7", f"layer{i}/dilation": 1, f"layer{i}/activation": "relu",
                       f"layer{i}/skip": (0,) * i})
    ss.validate(sample)
    return sample


def resnet_12_sample(space) -> dict[str, Any]:
    """A small 1-D residual net on all 12 leads in the spirit of the PTB-XL benchmark's resnet1d_wang (meant for
    ``ecg-12lead-resnet``): 4 blocks of two convolutions (kernel 5 then 3, the block's second layer adds the
    block input, as in :func:`search_spaces.ecg.hannun_sample`), 64-64-128-128 channels, length halved before
    blocks 2-4, 2.5-3 s crops averaged over the record at test time (here 3 s: windows are whole seconds).
    100 Hz, per-record z-score, lr 1e-3, batch 32, dropout 0.2, weight decay 1e-3, class weighting on (on PTB-XL
    fold 9 it scored a little lower with it than without, a difference whose interval holds zero; docs/12-lead.md
    run 8). Differences from resnet1d_wang: one strided kernel-15 stem convolution instead of its kernel-7 one,
    max pooling between blocks, and the space's BN-ReLU-mean pooling head instead of concatenated max and mean
    pooling."""
    ss: SearchSpace = getattr(space, "space", space)
    sample = {"leads": 12, "fs": 100, "filter": "none", "normalise": "record_z", "window": "crop:3",
              "augment": "none", "width": 1.0, "lr": 1e-3, "batch_size": 32, "dropout": 0.2, "weight_decay": 1e-3,
              "class_weighting": True}
    sample.update(residual_layers(_n_layers(ss)))
    ss.validate(sample)
    return sample
