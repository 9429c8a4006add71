"""``n2nas export``: ONNX and TorchScript files that give the PyTorch model's outputs."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from n2nas.models.folder import load_model_dir
from n2nas.data.cache import prepare
from n2nas.data.readers import load_physionet2017
from n2nas.errors import ConfigError
from n2nas.models.export import export_model, run_exported
from n2nas.models.retrain import RetrainConfig, retrain
from n2nas.space import Pipeline
from n2nas.train.primitives import PipelineData, targets_of
from search_spaces import get_space
from tests.conftest import copy_sample_records


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import os

    cache = tmp_path_factory.getbasetemp() / "cache"
    old = os.environ.get("N2NAS_CACHE")
    os.environ["N2NAS_CACHE"] = str(cache)
    folder = tmp_path_factory.mktemp("tiny")
    copy_sample_records(folder, per_class=3)
    data = load_physionet2017(folder)
    space = get_space("ecg-small").space
    sample = {**space.default_sample(), "fs": 100, "window": "crop:5", "normalise": "global_z",
              "layer3/skip": (1, 0, 1)}
    out = tmp_path_factory.mktemp("model") / "m"
    retrain(Pipeline("ecg-small", sample), data, out,
            dataclasses.replace(RetrainConfig.quick(), epochs=1, device="cpu"), log=lambda _m: None)
    yield out, data
    if old is None:
        os.environ.pop("N2NAS_CACHE", None)
    else:
        os.environ["N2NAS_CACHE"] = old


def _real_windows(model_dir, data) -> np.ndarray:
    """Windows of real records, preprocessed as ``n2nas evaluate`` does (the documented separate step)."""
    from n2nas.models.folder import NORM_FILE, stats_from_json

    pipeline, _ = load_model_dir(model_dir)
    space_def = get_space(pipeline.space)
    prepared = prepare(data, space_def.preprocess_config(pipeline.sample))
    stats = stats_from_json(json.loads((model_dir / NORM_FILE).read_text()))
    pdata = PipelineData(prepared, targets_of(data), space_def.window_config(pipeline.sample), stats)
    return np.concatenate([pdata.record_windows(i) for i in range(3)])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_outputs(model_dir, tmp_path, fmt):
    folder, data = model_dir
    target = tmp_path / f"model.{fmt}"
    if fmt == "onnx":  # the command once; the other format through the same function in-process (faster)
        proc = subprocess.run([sys.executable, "-m", "n2nas.cli", "export", str(folder), "--format", fmt,
                               "--out", str(target)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
    else:
        report = export_model(folder, fmt, target)
    assert report["max_abs_diff"] <= 1e-4 and set(report["max_abs_diff_by_batch"]) == {"1", "5"}
    spec = json.loads((tmp_path / f"model.{fmt}.preprocessing.json").read_text())
    assert spec["window_samples"] == 500 and spec["preprocess"]["fs"] == 100 and spec["global_stats"] is not None
    # independently: real, preprocessed windows through the exported file vs the PyTorch model
    x = _real_windows(folder, data)
    _, model = load_model_dir(folder)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(run_exported(target, fmt, x) - expected).max() < 1e-4


def test_export_rejects_unknown_format(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="--format"):
        export_model(model_dir[0], "tflite", tmp_path / "x")
