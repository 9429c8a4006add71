"""End-to-end search on a tiny real-data folder: run folder contract, determinism, NaN children, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

import n2nas
from n2nas.data.readers import load_physionet2017
from n2nas.errors import ConfigError
from n2nas.runners.shared import SharedTrainingConfig
from n2nas.searching.finals import FinalsConfig
from n2nas.searching.loop import SearchConfig
from n2nas.searching.screen import ScreenConfig
from tests.conftest import copy_sample_records

# Cheap preprocessing so the tests do not spend their time in R-peak detection on 2 cores.
FIXED = {"window": "crop:5", "fs": 100}


def tiny_config(**kw) -> SearchConfig:
    base = dict(budget_epochs=3, shared_steps=3, controller_steps=1, children_per_step=3, reward_records=12,
                derive_children=3, top_k=2, device="cpu", fixed=dict(FIXED), shared=SharedTrainingConfig(),
                screen=ScreenConfig.off(), finals=FinalsConfig.off())  # both have their own tests
    return replace(SearchConfig(), **{**base, **kw})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny2017")
    copy_sample_records(folder, per_class=6)
    return load_physionet2017(folder)



def test_warm_up_children_are_scored_every_nth_warm_up_epoch(tiny_data, tmp_path):
    result = n2nas.search(tiny_data, tiny_config(budget_epochs=4, warmup=0.75, warmup_scoring_every=2,
                                                 derive_children=1), out=tmp_path / "run")
    assert [t["epoch"] for t in result.trials if t["phase"] == "warmup"] == [0, 2]
    assert {t["epoch"] for t in result.trials if t["phase"] == "controller"} == {3}
    with pytest.raises(ConfigError, match="warmup_scoring_every"):
        tiny_config(warmup_scoring_every=0)


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    """One search with ``tiny_config()``: the run-folder and determinism tests share it."""
    run = tmp_path_factory.mktemp("tiny_run") / "run"
    return run, n2nas.search(tiny_data, tiny_config(), out=run)


def test_search_leaves_a_complete_run_folder(tiny_run):
    run, result = tiny_run
    for name in ("best_pipeline.json", "trials.jsonl", "checkpoint", "tensorboard", "report.png", "split.json"):
        assert (run / name).exists(), name
    lines = [json.loads(x) for x in (run / "trials.jsonl").read_text().splitlines()]
    assert [t["step"] for t in lines] == list(range(len(lines))) == [t["step"] for t in result.trials]
    # one warm-up epoch (one uniform child scored), two epochs of one controller step with 3 children, 3 derived,
    # and (no finals) the space's default architecture, the reference, scored beside them
    assert len(lines) == 1 + 2 * 3 + 3 + 1
    from search_spaces import get_space

    reference = get_space("ecg-small").space.pinned(FIXED).default_sample()
    assert lines[-1]["phase"] == "derive" and lines[-1]["sample"] == json.loads(json.dumps(reference))
    assert (run / "predictions" / f"{lines[-1]['step']}.npy").is_file()  # kept for the noise-aware pick
    assert "pick" in json.loads((run / "comparisons.json").read_text())
    assert [t["phase"] for t in lines[:1]] == ["warmup"] and lines[0]["epoch"] == 0
    assert {t["epoch"] for t in lines if t["phase"] == "controller"} == {1, 2}
    for t in lines:
        assert set(t) >= {"step", "sample", "metrics", "reward", "flops", "params", "energy_j", "energy_source",
                          "latency_ms", "worker"}
        assert t["energy_j"] is None and t["energy_source"] == "unmeasured"  # no counter on this machine
        assert t["flops"] > 0 and t["params"] > 0
    best = result.best(1)[0]
    assert best.scores["phase"] == "derive"
    # the exported JSON rebuilds the same architecture: same parameter count as the scored child
    pipeline = n2nas.load_pipeline(run / "best_pipeline.json")
    model = n2nas.build_model(pipeline)
    assert sum(p.numel() for p in model.parameters()) == best.scores["params"]
    assert pipeline.sample == best.sample


def test_same_seed_same_pipelines(tiny_data, tiny_run, tmp_path):
    a = tiny_run[1]
    b = n2nas.search(tiny_data, tiny_config(), out=tmp_path / "b")
    c = n2nas.search(tiny_data, tiny_config(seed=1), out=tmp_path / "c")
    assert [t["sample"] for t in a.trials] == [t["sample"] for t in b.trials]
    assert [t["reward"] for t in a.trials] == [t["reward"] for t in b.trials]
    assert [t["sample"] for t in a.trials] != [t["sample"] for t in c.trials]


def test_nan_child_is_failed_and_search_goes_on(tiny_data, tmp_path, monkeypatch):
    import search_spaces.ecg as ecg

    original = ecg.ECGSupernet.forward

    def poisoned(self, x, sample):
        out = original(self, x, sample)
        return out * float("nan") if sample["layer0/op"].startswith("conv") else out

    monkeypatch.setattr(ecg.ECGSupernet, "forward", poisoned)
    result = n2nas.search(tiny_data, tiny_config(budget_epochs=3), out=tmp_path / "nan")
    statuses = {t["status"] for t in result.trials}
    assert statuses == {"ok", "failed"}
    failed = [t for t in result.trials if t["status"] == "failed"]
    assert all(t["reward"] is None and t["sample"]["layer0/op"].startswith("conv") for t in failed)
    assert not result.best(1)[0].sample["layer0/op"].startswith("conv")


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "n2nas.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.timeout(900)  # two CLI processes (kill, resume), no finals; ~60 s idle
def test_kill_9_then_resume_loses_and_duplicates_nothing(tiny_data, tmp_path):
    folder = tiny_data.records[0].meta["files"][0].rsplit("/", 1)[0]
    run = tmp_path / "killed"
    fix = sum((["--fix", f"{k}={v}"] for k, v in FIXED.items()), [])
    args = ["search", "--data", f"physionet2017:{folder}", "--preset", "default", "--budget-epochs", "2",
            "--device", "cpu", "--out", str(run), "--quiet", "--screen", "0", "--finals", "0", *fix]
    proc = _cli(*args, env={**os.environ})
    trials = run / "trials.jsonl"
    deadline = time.monotonic() + 600  # generous: a loaded machine, not a speed test
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "checkpoint" / "search_state.pt").exists() and trials.exists() and \
                len(trials.read_text().splitlines()) >= 6:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = trials.read_text().splitlines()
    resumed = _cli(*args, "--resume", "--json")  # the summary as one JSON object instead of text
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    after = trials.read_text().splitlines()
    assert after[:len(before)] == before  # every finished line kept verbatim
    steps = [json.loads(x)["step"] for x in after]
    assert steps == list(range(len(steps)))  # no duplicates, no gaps
    assert json.loads(out)["trials"] == len(after)
