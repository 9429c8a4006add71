"""The hand-designed reference networks as fixed pipelines of the ECG spaces: ``hannun`` (Hannun et al. 2019 /
DiagnoseNET's residual net), ``plain-cnn`` (single lead), and the 12-lead ``plain-cnn-12`` and ``resnet-12``. Each is
retrained with the same recipe as a searched pipeline, so that a search has something fair to beat."""
from __future__ import annotations

from typing import Any

from n2nas.space import Pipeline, SearchSpace
from search_spaces.ecg import ECGSpace, ECGSpaceConfig, residual_layers


def _n_layers(ss: SearchSpace) -> int:
    return sum(1 for d in ss.flat if d.label.startswith("layer") and d.label.endswith("/op"))


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
    block input, as in :func:`search_spaces.references.hannun_sample`), 64-64-128-128 channels, length halved before
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


def hannun_sample(space) -> dict[str, Any]:
    """Hannun et al. (2019) / DiagnoseNET's residual network as a sample of an ECG space (``ECGSpace`` or
    ``SearchSpace``; meant for ``ecg-hannun``, where it has the paper's depth and widths).

    Every layer is conv15 + ReLU at dilation 1; layers (2k, 2k+1) form residual block k, and layer 2k+1 sums
    the block input, i.e. layer 2k-1's output (skip i -> i-2 on odd layers, reduced by the pooling/1x1
    aligner when the block changes resolution or width). Where this differs from the paper:

    - kernel 15 instead of 16 (odd kernels keep the length without asymmetric padding);
    - block 0 has no shortcut (the stem is not a skip source in this space);
    - subsampling is a max pool before the block rather than a stride-2 first convolution, and widening is
      a 1x1 convolution before the block rather than in its first convolution (shortcuts: average pool and
      1x1 convolution instead of max pool and zero-padded channels);
    - dropout 0.2 only before the head (the paper has it inside every block);
    - one label per window from global average pooling instead of one per 256 samples (1.28 s at 200 Hz);
      input resampled to 300 Hz (PhysioNet 2017's rate), band-passed, z-scored per record, 10 s crops.
    """
    ss: SearchSpace = getattr(space, "space", space)
    n_layers = sum(1 for d in ss.flat if d.label.startswith("layer") and d.label.endswith("/op"))
    sample = {"fs": 300, "filter": "bandpass", "normalise": "record_z", "window": "crop:10", "augment": "none",
              "width": 1.0, "lr": 1e-3, "batch_size": 32, "dropout": 0.2, "weight_decay": 0.0,
              "class_weighting": False}
    for i in range(n_layers):
        flags = [0] * i
        if i % 2 == 1 and i >= 3:
            flags[i - 2] = 1
        sample.update({f"layer{i}/op": "conv15", f"layer{i}/dilation": 1, f"layer{i}/activation": "relu",
                       f"layer{i}/skip": tuple(flags)})
    ss.validate(sample)
    return sample


def plain_cnn_sample(space) -> dict[str, Any]:
    """A plain hand-designed CNN as a sample of an ECG space (meant for ``ecg-small``: 6 layers, 32-64-128
    channels, 313 k parameters): 100 Hz, no filter, per-record z-score, 30 s crops, no augmentation, conv7 +
    ReLU in every layer, no skips, width 1.0, lr 1e-3, batch 32, dropout 0.2, class weighting. It is the
    reference a search must beat (its scores: docs/search.md#plain-cnn)."""
    ss: SearchSpace = getattr(space, "space", space)
    n_layers = sum(1 for d in ss.flat if d.label.startswith("layer") and d.label.endswith("/op"))
    sample = {"fs": 100, "filter": "none", "normalise": "record_z", "window": "crop:30", "augment": "none",
              "width": 1.0, "lr": 1e-3, "batch_size": 32, "dropout": 0.2, "weight_decay": 1e-4,
              "class_weighting": True}
    for i in range(n_layers):
        sample.update({f"layer{i}/op": "conv7", f"layer{i}/dilation": 1, f"layer{i}/activation": "relu",
                       f"layer{i}/skip": (0,) * i})
    ss.validate(sample)
    return sample


def fixed_pipelines() -> dict[str, dict[str, Any]]:
    """Hand-designed pipelines as pipeline JSON (``{"space", "sample", ...}``, ready for ``Pipeline.from_json``):
    ``hannun`` (the residual net in ``ecg-hannun``), ``plain-cnn`` (in ``ecg-small``), and the 12-lead references
    ``plain-cnn-12`` (in ``ecg-12lead``) and ``resnet-12`` (in ``ecg-12lead-resnet``; both
    :mod:`search_spaces.references`)."""
    hannun = ECGSpace("ecg-hannun", ECGSpaceConfig.hannun())
    small = ECGSpace("ecg-small", ECGSpaceConfig.small())
    plain12 = ECGSpace("ecg-12lead", ECGSpaceConfig.twelve_lead())
    resnet12 = ECGSpace("ecg-12lead-resnet", ECGSpaceConfig.twelve_lead_resnet())
    return {"hannun": Pipeline(hannun.name, hannun_sample(hannun)).to_json(),
            "plain-cnn": Pipeline(small.name, plain_cnn_sample(small)).to_json(),
            "plain-cnn-12": Pipeline(plain12.name, plain_cnn_12_sample(plain12)).to_json(),
            "resnet-12": Pipeline(resnet12.name, resnet_12_sample(resnet12)).to_json()}
