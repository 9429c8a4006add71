"""Data-parallel retraining: 2 gloo workers give the single-process result on a model without batch norm."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from n2nas.data.readers import load_physionet2017
from n2nas.models.retrain import RetrainConfig, retrain
from n2nas.space import Pipeline
from n2nas.train.parallel import DistContext, scaled_lr
from search_spaces import get_space
from tests.conftest import copy_sample_records


def test_slices_cover_the_global_batch_and_lr_rule():
    for n in (7, 8, 64):
        parts = [DistContext(rank, 3).slice(n) for rank in range(3)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1
    assert scaled_lr(1e-3, 32, None) == (32, 1e-3)
    assert scaled_lr(1e-3, 32, 128) == (128, pytest.approx(4e-3))


def test_two_workers_match_one_without_batch_norm(tmp_path, monkeypatch):
    monkeypatch.setenv("N2NAS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    copy_sample_records(folder, per_class=5)
    data = load_physionet2017(folder)
    space = get_space("ecg-small").space
    # no dropout (its masks are drawn per worker); augmentation is fine: it is drawn on the global batch
    pipeline = Pipeline("ecg-small", {**space.default_sample(), "fs": 100, "window": "crop:5", "dropout": 0.0,
                                      "augment": "light", "class_weighting": True})
    # global batch 8 on 16 training records: 2 steps per epoch, 4 windows per worker; lr scaled by 8/64
    base = dataclasses.replace(RetrainConfig.quick(), epochs=2, patience=5, device="cpu", norm="none",
                               global_batch=8)
    one = retrain(pipeline, data, tmp_path / "w1", base, log=lambda _m: None)
    two = retrain(pipeline, data, tmp_path / "w2", dataclasses.replace(base, workers=2), log=lambda _m: None)
    assert two["workers"] == 2 and one["lr"] == two["lr"] == pytest.approx(1e-3 * 8 / 64)
    w1 = torch.load(tmp_path / "w1" / "model.pt", weights_only=True)
    w2 = torch.load(tmp_path / "w2" / "model.pt", weights_only=True)
    assert set(w1) == set(w2) and not any("running_mean" in k for k in w1)  # batch norm really removed
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
    h1 = json.loads((tmp_path / "w1" / "history.json").read_text())
    h2 = json.loads((tmp_path / "w2" / "history.json").read_text())
    assert np.allclose([h["loss"] for h in h1], [h["loss"] for h in h2], atol=1e-6)
    assert one["validation"]["cinc2017_f1"] == pytest.approx(two["validation"]["cinc2017_f1"])
