"""Ray backend end to end on a tiny real-data folder: run folder, a worker killed mid-search, Ray Tune path.

Ray is started once per session (``ray_session`` in conftest) with 2 CPUs."""
from __future__ import annotations

import json

import pytest

import n2nas
from n2nas.runners import RunnerConfig
from tests.test_search import tiny_config

pytest.importorskip("ray")

RAY2 = RunnerConfig(backend="ray", workers=2)



@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from n2nas.data.readers import load_physionet2017
    from tests.conftest import copy_sample_records

    folder = tmp_path_factory.mktemp("tiny2017ray")
    copy_sample_records(folder, per_class=3)
    return load_physionet2017(folder)


def _config():
    return tiny_config(budget_epochs=3, shared_steps=4, children_per_step=2, derive_children=2, runner=RAY2)


@pytest.fixture(scope="module")
def undisturbed(ray_session, tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("ray") / "run"
    return run, n2nas.search(tiny_data, _config(), out=run)


def test_ray_search_leaves_the_same_kind_of_run_folder(undisturbed):
    run, result = undisturbed
    for name in ("best_pipeline.json", "trials.jsonl", "checkpoint", "tensorboard", "report.png", "split.json"):
        assert (run / name).exists(), name
    lines = [json.loads(x) for x in (run / "trials.jsonl").read_text().splitlines()]
    # warm-up child, 2 x 2, 2 derived, and (no finals) the space's default scored beside them
    assert [t["step"] for t in lines] == list(range(len(lines))) == list(range(1 + 2 * 2 + 2 + 1))
    assert {t["worker"] for t in lines if t["phase"] == "controller"} == {0, 1}  # children split across actors
    assert json.loads((run / "config.json").read_text())["runner"]["backend"] == "ray"
    assert result.best(1)[0].scores["phase"] == "derive"


def test_killing_a_ray_worker_mid_search_loses_nothing(undisturbed, tiny_data, tmp_path, monkeypatch):
    import ray

    from n2nas.runners.ray import RayRunner

    calls, revived = [], []
    original = RayRunner.train_shared

    def train_shared_with_a_casualty(self, samples, rule=None):
        calls.append(1)
        if len(calls) == 2:  # second epoch: worker 1 dies before the shared phase
            ray.kill(self.actors[1])
        stats = original(self, samples, rule)
        revived.append(stats["workers_revived"])
        return stats

    monkeypatch.setattr(RayRunner, "train_shared", train_shared_with_a_casualty)
    result = n2nas.search(tiny_data, _config(), out=tmp_path / "killed")
    assert revived[-1] == 1
    _, clean = undisturbed
    # resynced from the driver's weights, optimizer and the worker's RNG: the very same search
    assert [(t["sample"], t["reward"]) for t in result.trials] == [(t["sample"], t["reward"]) for t in clean.trials]


def test_ray_tune_multi_trial_search_gives_a_table_and_resumes(ray_session, tiny_data, tmp_path):
    from dataclasses import replace

    from n2nas.searching.tune import TuneConfig, tune_search

    config = replace(TuneConfig.smoke(), device="cpu", fixed={"window": "crop:5", "fs": 100})
    grid = tune_search(tiny_data, config, tmp_path / "tune")
    assert len(grid) == 2 and not grid.errors
    rows = (tmp_path / "tune" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and "metric" in rows[0].split(",") and "metric_name" in rows[0].split(",")
    best = n2nas.load_pipeline(tmp_path / "tune" / "best_pipeline.json")
    assert best.sample["window"] == "crop:5"
    again = tune_search(tiny_data, config, tmp_path / "tune", resume=True)  # restored from its storage path
    assert sorted(r.metrics["trial_id"] for r in again) == sorted(r.metrics["trial_id"] for r in grid)
