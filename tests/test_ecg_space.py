"""ECG search space: tokens, presets, registry, token -> config mapping, the Hannun fixed pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from n2nas.errors import ConfigError
from n2nas.space import Choice, Pipeline
from search_spaces import get_space, known_spaces
from search_spaces.ecg import ECGSpaceConfig
from search_spaces.references import fixed_pipelines, hannun_sample, plain_cnn_sample

PREPROCESSING = ["fs", "filter", "normalise", "window", "augment"]
TRAINING = ["lr", "batch_size", "dropout", "weight_decay", "class_weighting"]


def test_registry_and_unknown_space():
    assert set(known_spaces()) >= {"ecg", "ecg-small", "ecg-hannun"}
    assert get_space("ecg").config == ECGSpaceConfig.n2nas()
    assert get_space("ecg-small").space.name == "ecg-small"
    with pytest.raises(ConfigError) as err:
        get_space("ecg-huge")
    assert err.value.where == "--space" and "ecg-small" in err.value.problem and "ecg-hannun" in err.value.problem


@pytest.mark.parametrize("name", ["ecg", "ecg-small", "ecg-cpu"])
def test_tokens_kinds_defaults_and_describe(name):
    space_def = get_space(name)
    space = space_def.space
    n = space_def.config.n_layers
    labels = [t.label for t in space.tokens]
    layer_labels = [f"layer{i}/{x}" for i in range(n) for x in ("op", "dilation", "activation", "skip")]
    assert labels == PREPROCESSING + ["width"] + layer_labels + TRAINING
    kinds = {t.label: t.kind for t in space.tokens}
    assert all(kinds[k] == "preprocessing" for k in PREPROCESSING)
    assert all(kinds[k] == "training" for k in TRAINING)
    assert all(kinds[k] == "architecture" for k in ["width"] + layer_labels)
    assert [t.n_inputs for t in space.tokens if t.is_skip] == list(range(n))
    assert all(d.default is not None for d in space.flat if isinstance(d, Choice))
    text = space.describe()
    assert all(f"] {label}:" in text for label in labels)
    default = space.default_sample()
    space.validate(default)
    assert default["width"] == 1.0 and default["fs"] == 300 and default["window"] == "crop:10"


def test_space_sizes():
    assert get_space("ecg").space.size() > 1e10
    assert get_space("ecg-small").space.size() > 1e10
    op_tokens = [t for t in get_space("ecg").space.tokens if t.label == "layer0/op"]
    assert op_tokens[0].n_choices == 12


def test_cpu_space_keeps_only_what_weight_sharing_can_score():
    cpu, small = get_space("ecg-cpu"), get_space("ecg-small")
    options = {d.label: d.options for d in cpu.space.flat if isinstance(d, Choice)}
    assert options["layer0/op"] == ("conv3", "conv5", "conv7", "conv9", "conv15")
    assert options["layer3/dilation"] == (1,) and options["layer3/activation"] == ("relu",)
    assert options["width"] == (0.5, 0.75, 1.0, 1.5)
    assert cpu.layout.channels[-1] == (64, 96, 128, 192) and cpu.layout.resolution == small.layout.resolution
    assert all(options[k] == v for k, v in {d.label: d.options for d in small.space.flat
                                            if d.kind == "preprocessing"}.items())
    cpu.space.validate(plain_cnn_sample(cpu))  # the hand-designed CNN is a sample of this space too
    with pytest.raises(ConfigError):
        ECGSpaceConfig(dilations=(2, 4))
    with pytest.raises(ConfigError):
        ECGSpaceConfig(activations=("tanh",))


def test_preset_shapes():
    small, big = get_space("ecg-small").layout, get_space("ecg").layout
    assert [c[-1] for c in small.channels] == [32, 32, 64, 64, 128, 128]
    assert small.channels[0] == (16, 24, 32)
    assert [c[-1] for c in big.channels] == [64] * 4 + [128] * 4 + [256] * 4
    assert big.resolution == (0,) * 4 + (1,) * 4 + (2,) * 4
    hannun = get_space("ecg-hannun").layout
    assert len(hannun.channels) == 32 and hannun.resolution[-1] == 8
    assert [hannun.channels[2 * k][-1] for k in range(16)] == [32 * 2 ** (k // 4) for k in range(16)]
    with pytest.raises(ConfigError):
        ECGSpaceConfig(n_layers=4, stride_at=(4,))


def test_default_child_size_of_small_preset():
    from n2nas.measure.flops import count_flops, count_params

    space_def = get_space("ecg-small")
    child = space_def.build_child(space_def.space.default_sample(), 1, 4)
    assert 100_000 < count_params(child) < 400_000
    assert count_flops(child, (1, 1, 3000)) < 70e6  # 10 s at 300 Hz, width 1.0


def test_hannun_pipeline_has_residual_skips():
    space_def = get_space("ecg-hannun")
    sample = hannun_sample(space_def)
    space_def.space.validate(sample)
    for i in range(32):
        assert sample[f"layer{i}/op"] == "conv15" and sample[f"layer{i}/activation"] == "relu"
        expected = [0] * i
        if i % 2 == 1 and i >= 3:
            expected[i - 2] = 1
        assert list(sample[f"layer{i}/skip"]) == expected
    assert sample["width"] == 1.0 and sample["window"].startswith("crop:")
    child = space_def.build_child(sample, 1, 4)
    assert sum(len(layer.skips) for layer in child.layers) == 15
    convs = [layer.block.op for layer in child.layers]
    assert all(isinstance(c, nn.Conv1d) and c.kernel_size == (15,) for c in convs)
    assert [c.out_channels for c in convs[::8]] == [32, 64, 128, 256]
    assert child(torch.randn(1, 1, 3000)).shape == (1, 4)
    assert 9e6 < sum(p.numel() for p in child.parameters()) < 12e6  # the paper's network has ~10.5 M


def test_fixed_pipelines_round_trip():
    from search_spaces.references import plain_cnn_12_sample, resnet_12_sample

    pipes = fixed_pipelines()
    assert set(pipes) == {"hannun", "plain-cnn", "plain-cnn-12", "resnet-12"}
    for name, make in (("hannun", hannun_sample), ("plain-cnn", plain_cnn_sample),
                       ("plain-cnn-12", plain_cnn_12_sample), ("resnet-12", resnet_12_sample)):
        obj = pipes[name]
        space_def = get_space(obj["space"])
        pipeline = Pipeline.from_json(obj, space_def.space)
        assert pipeline.sample == make(space_def)


def test_plain_cnn_is_the_hand_designed_six_layer_cnn():
    space_def = get_space("ecg-small")
    sample = plain_cnn_sample(space_def)
    assert (sample["fs"], sample["filter"], sample["normalise"], sample["window"]) == (100, "none", "record_z",
                                                                                      "crop:30")
    assert (sample["lr"], sample["batch_size"], sample["class_weighting"]) == (1e-3, 32, True)
    child = space_def.build_child(sample, 1, 4)
    convs = [layer.block.op for layer in child.layers]
    assert all(isinstance(c, nn.Conv1d) and c.kernel_size == (7,) and c.groups == 1 for c in convs)
    assert sum(len(layer.skips) for layer in child.layers) == 0
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert sum(p.numel() for p in child.parameters()) == 313_444
    assert child(torch.randn(2, 1, 3000)).shape == (2, 4)


def test_token_to_config_mapping():
    space_def = get_space("ecg-small")
    base = space_def.space.default_sample()
    pre = space_def.preprocess_config({**base, "fs": 150, "filter": "none", "normalise": "robust"})
    assert (pre.fs, pre.band, pre.baseline, pre.normalise, pre.rpeaks) == (150, None, "none", "robust", False)
    pre = space_def.preprocess_config({**base, "filter": "bandpass"})
    assert pre.band == (0.5, 40.0) and pre.baseline == "none"
    pre = space_def.preprocess_config({**base, "filter": "baseline+bandpass", "window": "beats:5"})
    assert pre.band == (0.5, 40.0) and pre.baseline == "median" and pre.rpeaks is True

    win = space_def.window_config({**base, "window": "crop:20"})
    assert (win.mode, win.seconds) == ("crop", 20.0)
    win = space_def.window_config({**base, "window": "beats:5", "fs": 300})
    assert (win.mode, win.n_beats, win.beat_samples) == ("beats", 5, 260)
    win = space_def.window_config({**base, "window": "beats:5", "fs": 150})
    assert win.beat_samples == 130 and win.seconds == pytest.approx(5 * 260 / 300)

    from n2nas.data.augment import AugmentConfig
    assert space_def.augment_config({**base, "augment": "strong"}) == AugmentConfig.strong()
    assert space_def.augment_config({**base, "augment": "none"}) == AugmentConfig.none()

    settings = space_def.training_settings({**base, "lr": 3e-3, "batch_size": 128, "dropout": 0.5,
                                            "weight_decay": 1e-3, "class_weighting": True})
    assert settings == {"lr": 3e-3, "batch_size": 128, "dropout": 0.5, "weight_decay": 1e-3,
                        "class_weighting": True}
    assert type(settings["batch_size"]) is int and type(settings["class_weighting"]) is bool


def test_dropout_token_reaches_the_child():
    space_def = get_space("ecg-small")
    sample = {**space_def.space.default_sample(), "dropout": 0.5}
    child = space_def.build_child(sample, 1, 4)
    assert [m.p for m in child.modules() if isinstance(m, nn.Dropout)] == [0.5]


def test_invalid_sample_is_a_config_error():
    space_def = get_space("ecg-small")
    sample = {**space_def.space.default_sample(), "layer2/op": "conv4"}
    with pytest.raises(ConfigError) as err:
        space_def.build_child(sample, 1, 4)
    assert err.value.where == "layer2/op"
    rng = np.random.default_rng(0)
    space_def.space.validate(space_def.space.random_sample(rng))


@pytest.mark.parametrize("name", ["ecg", "ecg-small", "ecg-cpu"])
def test_a_search_pins_every_training_token_to_the_space_recipe(name):
    from n2nas.searching.loop import SearchConfig
    from n2nas.searching.preparation import pins

    space_def = get_space(name)
    pinned = pins(space_def, SearchConfig(space=name, fixed={"dropout": 0.5}))
    assert set(pinned) == set(TRAINING) | {"augment"}  # none of them can change a shared-weight score
    assert pinned["augment"] == "none"
    assert pinned["dropout"] == 0.5 and pinned["class_weighting"] is True  # --fix wins; the macro F1 wants weights
    assert pinned["batch_size"] == (32 if name == "ecg-cpu" else 64)
    assert pins(space_def, SearchConfig(space=name, pin_unscored=False)) == {}
    with pytest.raises(ConfigError):
        ECGSpaceConfig(default_batch_size=48)
