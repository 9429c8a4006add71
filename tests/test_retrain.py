"""Retrain a pipeline from scratch, evaluate it, and the model-folder contract."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from n2nas.models.folder import build_model, load_model_dir, load_pipeline
from n2nas.data.readers import load_physionet2017
from n2nas.errors import ConfigError, DataError
from n2nas.models.retrain import RetrainConfig, retrain
from n2nas.models.evaluate import evaluate
from n2nas.space import Pipeline
from search_spaces import get_space
from tests.conftest import copy_sample_records


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    copy_sample_records(folder, per_class=5)
    return folder, load_physionet2017(folder)



def _flat(value, prefix=""):
    """Nested dicts/lists of numbers as one flat {path: number} dict, which pytest.approx can compare."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}/").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}/").items()}
    return {prefix: value}


def _pipeline(**pins) -> Pipeline:
    space = get_space("ecg-small").space
    sample = {**space.default_sample(), "fs": 100, "window": "crop:5", **pins}
    return Pipeline("ecg-small", sample)


def test_retrain_writes_model_folder_and_evaluate_scores_it(tiny, tmp_path):
    folder, data = tiny
    config = dataclasses.replace(RetrainConfig.quick(), device="cpu")
    summary = retrain(_pipeline(), data, tmp_path / "model", config, log=lambda _m: None)
    for name in ("model.pt", "pipeline.json", "metrics.json", "history.json", "split.json", "normalisation.json"):
        assert (tmp_path / "model" / name).exists(), name
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= 3
    # weights are plain tensors: loadable with weights_only=True, and they rebuild the exported architecture
    state = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    model = build_model(load_pipeline(tmp_path / "model" / "pipeline.json"))
    model.load_state_dict(state)
    proc = subprocess.run([sys.executable, "-m", "n2nas.cli", "evaluate", str(tmp_path / "model"), "--data",
                           f"physionet2017:{folder}", "--device", "cpu"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"cinc2017_f1", "f1", "macro_auroc", "accuracy", "n_records"} <= set(out)
    assert out["n_records"] == len(data) and set(out["f1"]) == {"N", "A", "O", "~"}
    assert _flat(out) == pytest.approx(_flat(evaluate(tmp_path / "model", data, device="cpu")), nan_ok=True)


def test_retrain_is_seeded(tiny, tmp_path):
    _, data = tiny
    config = dataclasses.replace(RetrainConfig.quick(), epochs=1, device="cpu")
    a = retrain(_pipeline(), data, tmp_path / "a", config, log=lambda _m: None)
    b = retrain(_pipeline(), data, tmp_path / "b", config, log=lambda _m: None)
    assert _flat(a["validation"]) == pytest.approx(_flat(b["validation"]), nan_ok=True)
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_model_folder_errors_are_clear(tmp_path, tiny):
    with pytest.raises(DataError, match="model folder does not exist"):
        load_model_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="model.pt: model weights are missing"):
        load_model_dir(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a pipeline JSON"):
        load_pipeline(bad)


def test_retrain_keeps_the_weight_average_and_stops_mid_epoch_at_its_deadline(tmp_path):
    copy_sample_records(tmp_path / "data", per_class=20)  # 68 training records: two batches of 32 per epoch
    data = load_physionet2017(tmp_path / "data")
    base = dataclasses.replace(RetrainConfig.quick(), epochs=1, device="cpu")
    quiet = {"log": lambda _m: None}
    raw = retrain(_pipeline(batch_size=32), data, tmp_path / "raw", dataclasses.replace(base, ema_decay=None), **quiet)
    ema = retrain(_pipeline(batch_size=32), data, tmp_path / "ema", dataclasses.replace(base, ema_decay=0.9), **quiet)
    assert raw["ema_decay"] is None and ema["ema_decay"] == 0.9
    w_raw = torch.load(tmp_path / "raw" / "model.pt", weights_only=True)
    w_ema = torch.load(tmp_path / "ema" / "model.pt", weights_only=True)
    assert any(not torch.equal(w_raw[k], w_ema[k]) for k in w_raw if w_raw[k].is_floating_point())
    history = json.loads((tmp_path / "raw" / "history.json").read_text())
    assert history[0]["steps"] > 1  # so the deadline below is what cuts the epoch
    late = dataclasses.replace(base, epochs=3, max_minutes=1e-9)
    cut = retrain(_pipeline(batch_size=32), data, tmp_path / "cut", late, **quiet)
    assert cut["epochs_run"] == 1
    assert json.loads((tmp_path / "cut" / "history.json").read_text())[0]["steps"] == 1


def test_only_the_plateau_schedule_stops_early(tiny, tmp_path, monkeypatch):
    _, data = tiny
    # no optimizer steps and no batch norm: the weights (and their average) never change, nor does the score
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: None)
    base = dataclasses.replace(RetrainConfig.quick(), epochs=4, patience=1, device="cpu", norm="none")
    quiet = {"log": lambda _m: None}
    plateau = retrain(_pipeline(), data, tmp_path / "plateau", dataclasses.replace(base, schedule="plateau"), **quiet)
    budget = retrain(_pipeline(), data, tmp_path / "budget", dataclasses.replace(base, schedule="budget"), **quiet)
    assert plateau["best_epoch"] == budget["best_epoch"] == 1
    assert plateau["epochs_run"] == 2  # one epoch without a better score, then the stop
    assert budget["epochs_run"] == 4  # a budget run ends with its budget: its lr reaches zero only there


def test_retrain_refuses_a_weight_average_decay_outside_the_open_interval():
    with pytest.raises(ConfigError, match="decay"):
        RetrainConfig(ema_decay=1.0)


def test_budget_schedule_decays_the_lr_linearly_to_zero_over_the_steps_or_the_minutes(tmp_path):
    copy_sample_records(tmp_path / "data", per_class=20)  # 68 training records: two batches of 32 per epoch
    data = load_physionet2017(tmp_path / "data")
    config = dataclasses.replace(RetrainConfig.quick(), epochs=3, patience=10, device="cpu", schedule="budget")
    summary = retrain(_pipeline(batch_size=32, lr=1e-3), data, tmp_path / "m", config, log=lambda _m: None)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert summary["schedule"] == "budget" and [h["steps"] for h in history] == [2, 2, 2]
    # the lr of step k (0-based) of 6 is lr * (1 - k / 6); an epoch's line shows its last step's lr
    assert [h["lr"] for h in history] == pytest.approx([1e-3 * 5 / 6, 1e-3 * 3 / 6, 1e-3 * 1 / 6])
    # a time limit far from binding leaves the run exactly as without one (seeded runs are reproducible)
    limited = dataclasses.replace(config, max_minutes=600.0)
    retrain(_pipeline(batch_size=32, lr=1e-3), data, tmp_path / "t", limited, log=lambda _m: None)
    again = json.loads((tmp_path / "t" / "history.json").read_text())
    assert [(h["loss"], h["lr"]) for h in again] == [(h["loss"], h["lr"]) for h in history]
    with pytest.raises(ConfigError, match="schedule"):
        RetrainConfig(schedule="cosine")


def test_the_wall_time_share_counts_from_the_next_epoch_and_only_when_it_binds():
    from n2nas.train.lr_budget import BudgetProgress

    now = {"t": 0.0}
    progress = BudgetProgress(100, 1.0, clock=lambda: now["t"])
    now["t"] = 30.0  # half of a one-minute budget gone within the first step
    assert progress.spent(0) == 0.0 and progress.spent(1) == pytest.approx(0.01)  # not read mid-epoch
    progress.epoch_end()
    assert progress.spent(1) == pytest.approx(0.5) and progress.spent(80) == pytest.approx(0.8)
    now["t"] = 90.0
    progress.epoch_end()
    assert progress.spent(1) == 1.0
    workers = BudgetProgress(100, 1.0, mean=lambda share: share / 2, clock=lambda: now["t"])  # a mean over workers
    now["t"] += 30.0
    workers.epoch_end()
    assert workers.spent(0) == pytest.approx(0.25)
    assert BudgetProgress(100, None, clock=lambda: now["t"]).spent(1) == pytest.approx(0.01)


def test_class_weight_on_an_ecg_pipeline_is_a_one_line_error(tmp_path, capsys):
    import json

    from n2nas.cli import main
    from search_spaces.references import fixed_pipelines

    pipeline = tmp_path / "plain.json"
    pipeline.write_text(json.dumps(fixed_pipelines()["plain-cnn"], default=list))
    code = main(["retrain", str(pipeline), "--data", "sample", "--class-weight", "0.5", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--class-weight" in err and "EHR" in err, err
    assert not (tmp_path / "m").exists()
