"""Pruning schedule and masks, compact storage of pruned weights, quantization-aware training to int8."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from n2nas.models.folder import build_model, load_model_dir
from n2nas.compress.prune import (PruneConfig, Pruner, layer_amounts, pack_state, prunable_layers, prune_option,
                                  sparsity_report, state_bytes, unpack_state)
from n2nas.compress.quantize import QATConfig, is_quantized, quantize_dynamic, quantize_static
from n2nas.data.readers import load_physionet2017
from n2nas.errors import ConfigError
from n2nas.models.retrain import RetrainConfig, retrain
from n2nas.models.evaluate import evaluate
from n2nas.space import Pipeline
from search_spaces import get_space
from tests.conftest import copy_sample_records



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    copy_sample_records(folder, per_class=4)
    return load_physionet2017(folder)


def _pipeline() -> Pipeline:
    space = get_space("ecg-small").space
    return Pipeline("ecg-small", {**space.default_sample(), "fs": 100, "window": "crop:5"},
                    data={"classes": ["N", "A", "O", "~"], "n_leads": 1, "multilabel": False})


def test_polynomial_schedule_values():
    cfg = PruneConfig(final=0.5, initial=0.1, power=3.0)
    assert cfg.sparsity_at(0, 100) == pytest.approx(0.1)
    assert cfg.sparsity_at(50, 100) == pytest.approx(0.5 - 0.4 * 0.5 ** 3)
    assert cfg.sparsity_at(100, 100) == cfg.sparsity_at(10_000, 100) == 0.5
    values = [cfg.sparsity_at(t, 100) for t in range(101)]
    assert all(b >= a for a, b in zip(values, values[1:]))  # never un-prunes
    assert prune_option("none") is None and prune_option("70").final == 0.7
    assert prune_option("adaptive") == PruneConfig.adaptive() and prune_option("fixed") == PruneConfig.fixed()
    with pytest.raises(ConfigError, match="--prune"):
        prune_option("most")


def test_adaptive_amounts_follow_output_channels_and_hit_the_target():
    model = build_model(_pipeline())
    layers = prunable_layers(model)
    amounts = layer_amounts(layers, 0.7, adaptive=True)
    sizes = {k: m.weight.numel() for k, m in layers.items()}
    overall = sum(amounts[k] * sizes[k] for k in layers) / sum(sizes.values())
    assert overall == pytest.approx(0.7, abs=1e-6)
    by_channels = sorted(layers, key=lambda k: getattr(layers[k], "out_channels", getattr(layers[k], "out_features", 0)))
    assert [amounts[k] for k in by_channels] == sorted(amounts[k] for k in by_channels)
    assert amounts["head.fc"] < 0.1 < 0.7 < amounts["layers.5.block.op"]  # 4 outputs vs 128 channels


def _small_net() -> nn.Module:
    """Conv and linear layers of different widths (fast enough to train a few steps in a test)."""
    return nn.Sequential(nn.Conv1d(1, 8, 5), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 16, 5), nn.ReLU(),
                         nn.Conv1d(16, 32, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 4))


@pytest.mark.parametrize("config", [PruneConfig.fixed(0.5), PruneConfig.fixed(0.7), PruneConfig.adaptive(0.7)])
def test_measured_sparsity_equals_the_claimed_one(config):
    torch.manual_seed(0)
    model = _small_net()
    pruner = Pruner(model, dataclasses.replace(config, every_steps=2), ramp_steps=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(10):  # masks follow the schedule while the weights train
        model(torch.randn(4, 1, 64)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        pruner.step()
    pruner.finalize()
    report = sparsity_report(model)
    for name, module in prunable_layers(model).items():
        claimed = pruner.final_amounts[name]
        assert report["per_layer"][f"{name}.weight"] == pytest.approx(claimed, abs=1 / module.weight.numel())
    assert report["sparsity"] == pytest.approx(config.final, abs=5e-3)  # rounding to whole weights per layer
    assert not any(hasattr(m, "weight_orig") for m in model.modules())  # masks made permanent


def test_compact_state_round_trip_is_exact_and_smaller(tmp_path):
    model = build_model(_pipeline())
    pruner = Pruner(model, PruneConfig.fixed(0.7), ramp_steps=1)
    pruner.finalize()
    state = model.state_dict()
    packed = pack_state(state)
    torch.save(packed, tmp_path / "model.pt")
    loaded = unpack_state(torch.load(tmp_path / "model.pt", weights_only=True))
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert (tmp_path / "model.pt").stat().st_size < 0.45 * state_bytes(state)  # 30% kept: ~1/3 of the bytes
    assert unpack_state(state) is state  # dense state dicts pass through


def test_pruned_retrain_saves_compact_weights_with_the_claimed_sparsity(tiny, tmp_path):
    config = dataclasses.replace(RetrainConfig.quick(), device="cpu", prune=PruneConfig.fixed(0.5))
    summary = retrain(_pipeline(), tiny, tmp_path / "m", config, log=lambda _m: None)
    size = summary["size"]
    assert size["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert size["model_pt_bytes"] == (tmp_path / "m" / "model.pt").stat().st_size < size["dense_bytes"]
    _, model = load_model_dir(tmp_path / "m")  # unpacked transparently
    assert sparsity_report(model)["sparsity"] == pytest.approx(size["sparsity"], abs=1e-9)
    raw = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert sparsity_report(raw)["sparsity"] == pytest.approx(size["sparsity"], abs=1e-9)
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["size"]["sparsity"] == size["sparsity"]


def test_qat_retrain_saves_an_int8_model_that_runs(tiny, tmp_path):
    config = dataclasses.replace(RetrainConfig.quick(), epochs=2, device="cpu", qat=QATConfig.default())
    retrain(_pipeline(), tiny, tmp_path / "q", config, log=lambda _m: None)
    assert json.loads((tmp_path / "q" / "quantization.json").read_text())["mode"] == "qat"
    _, model = load_model_dir(tmp_path / "q")
    assert is_quantized(model)
    assert any(v.dtype == torch.qint8 for v in model.state_dict().values() if isinstance(v, torch.Tensor))
    out = model(torch.randn(3, 1, 500))
    assert out.shape == (3, 4) and out.dtype == torch.float32 and torch.isfinite(out).all()
    scores = evaluate(tmp_path / "q", tiny, device="cpu")
    assert scores["n_records"] == len(tiny)


def test_post_training_quantization_runs_close_to_float():
    torch.manual_seed(0)
    model = build_model(_pipeline()).eval()
    x = torch.randn(8, 1, 500)
    with torch.no_grad():
        ref = model(x)
        static = quantize_static(model, [x])(x)
        dynamic = quantize_dynamic(model)(x)
    assert isinstance(quantize_dynamic(model).head.fc, nn.Module) and is_quantized(quantize_dynamic(model))
    scale = ref.abs().max()
    assert (static - ref).abs().max() < 0.2 * scale and (dynamic - ref).abs().max() < 0.05 * scale
