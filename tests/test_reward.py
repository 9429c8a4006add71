"""Reward math, hard limits, refusal of unmeasurable terms, the search integration and the Pareto report."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

import n2nas
from n2nas.errors import ConfigError
from n2nas.measure import MeasureConfig
from n2nas.measure.reward import RewardConfig, check_measurable, compute_reward, trial_reward_fields
from search_spaces import get_space
from tests.conftest import default_child_flops
from tests.test_search import tiny_config, tiny_data  # noqa: F401 - shared fixtures


def cost(flops_per_record, params, latency_ms=None):
    """An ArchitectureCosts entry, timed when ``latency_ms`` is given."""
    entry = {"flops_per_record": flops_per_record, "params": params}
    return entry if latency_ms is None else {**entry, "latency_ms": latency_ms}


def test_soft_terms_multiply_the_metric():
    cfg = RewardConfig(flops_weight=-0.07, flops_target=1e6, energy_weight=-0.1, energy_target_j=2.0,
                       latency_weight=-0.05, latency_target_ms=4.0)
    t = compute_reward(cfg, 0.8, cost(1e7, 10, 8.0), energy_per_record_j=1.0)
    assert t.flops == pytest.approx(10 ** -0.07) and t.energy == pytest.approx(0.5 ** -0.1)
    assert t.latency == pytest.approx(2 ** -0.05)
    assert t.reward == pytest.approx(0.8 * t.flops * t.energy * t.latency) and t.metric == 0.8
    cheaper = compute_reward(cfg, 0.8, cost(1e5, 10, 8.0), energy_per_record_j=1.0)
    assert cheaper.reward > t.reward  # same metric, 100x fewer FLOPs
    plain = compute_reward(RewardConfig.accuracy_only(), 0.8, cost(1e9, 10))
    assert plain.reward == 0.8 and plain.as_json() == {"metric": 0.8, "flops": 1.0, "energy": 1.0, "latency": 1.0}


def test_default_is_mnas_with_efficientnet_weight_and_negative_metrics_stay_ordered():
    assert RewardConfig() == RewardConfig.mnas() and RewardConfig().flops_weight == -0.07
    cfg = RewardConfig.mnas(flops_target=1e6)
    cheap = compute_reward(cfg, -0.2, cost(1e5, 1)).reward
    dear = compute_reward(cfg, -0.2, cost(1e7, 1)).reward
    assert cheap > dear and cheap > -0.2 > dear


def test_hard_limits_make_a_child_infeasible():
    cfg = RewardConfig(max_flops=1e6, max_params=100, max_latency_ms=5.0, flops_target=1e6)
    t = compute_reward(cfg, 0.9, cost(2e6, 500, 9.0))
    assert t.reward == cfg.infeasible_reward == 0.0 and len(t.infeasible) == 3
    assert compute_reward(cfg, 0.9, cost(1e6, 100, 5.0)).infeasible == ()
    result = {"status": "ok", "metric": 0.9, "metric_name": "cinc2017_f1", "flops": 1e6, "flops_per_record": 2e6,
              "params": 1, "latency_ms": 1.0, "energy_j": None, "records": 4}
    fields = trial_reward_fields(result, cfg)
    assert fields["status"] == "infeasible" and fields["reward"] == 0.0 and "flops" in fields["infeasible"][0]
    assert fields["metric"] == 0.9 and fields["metric_name"] == "cinc2017_f1"
    # FLOPs per window (1e6) never stands in for FLOPs per record: without a per-record count the term is refused
    with pytest.raises(ConfigError, match="flops was not measured"):
        trial_reward_fields({**result, "flops_per_record": None}, cfg)
    waived = trial_reward_fields(result, cfg, waive_limits=True)
    assert waived["status"] == "ok" and waived["reward"] == pytest.approx(0.9 * 2 ** -0.07)
    assert "flops" in waived["limits_waived"][0]


def test_unmeasurable_terms_are_refused_not_scored_as_one():
    with pytest.raises(ConfigError, match="--joules-per-flop"):
        check_measurable(RewardConfig(energy_weight=-0.1), "unmeasured", latency_enabled=True)
    check_measurable(RewardConfig(energy_weight=-0.1), "estimate:flops", latency_enabled=True)
    with pytest.raises(ConfigError, match="latency"):
        check_measurable(RewardConfig(max_latency_ms=3.0), "unmeasured", latency_enabled=False)
    with pytest.raises(ConfigError, match="energy"):  # a missing reading mid-run is an error, never 1.0
        compute_reward(RewardConfig(energy_weight=-0.1, flops_target=1.0), 0.5, cost(1.0, 1), energy_per_record_j=None)
    with pytest.raises(ConfigError, match="--flops-weight"):
        RewardConfig(flops_weight=0.1)


def test_energy_weight_without_counter_stops_the_search_at_startup(tiny_data, tmp_path):
    cfg = tiny_config(reward=RewardConfig(energy_weight=-0.1))
    with pytest.raises(ConfigError, match="needs a measured energy source"):
        n2nas.search(tiny_data, cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_search_logs_every_term_with_estimate_and_limits(tiny_data, tmp_path):
    from n2nas.cli import main

    jpf = 1e-9
    cfg = tiny_config(budget_epochs=1, derive_children=2, children_per_step=6,
                      reward=RewardConfig(energy_weight=-0.1, max_params=100_000),
                      measure=MeasureConfig(joules_per_flop=jpf, power_interval_s=0.2))
    target = default_child_flops(cfg.space, get_space(cfg.space).space.pinned(cfg.fixed), tiny_data)
    result = n2nas.search(tiny_data, cfg, out=tmp_path / "run")
    statuses = {t["status"] for t in result.trials}
    assert statuses == {"ok", "infeasible"}
    for t in result.trials:
        assert t["latency_ms"] > 0 and t["sampled_energy_j"] is None  # no power source on this machine
        if t["status"] == "infeasible":
            assert t["params"] > 100_000 and t["reward"] == 0.0 and t["metrics"] == {} and t["energy_j"] is None
            continue
        assert t["params"] <= 100_000 and t["energy_source"] == "estimate:flops"
        windows = t["energy_j"] / (t["flops"] * jpf)  # the estimate is FLOPs executed x J/FLOP
        assert windows == pytest.approx(round(windows)) and round(windows) >= t["records"]
        assert t["energy_per_record_j"] == pytest.approx(t["energy_j"] / t["records"])
        terms = t["reward_terms"]
        assert t["reward"] == pytest.approx(terms["metric"] * terms["flops"] * terms["energy"] * terms["latency"])
        assert terms["latency"] == 1.0 and terms["flops"] != 1.0 and terms["energy"] != 1.0
        # the unset FLOPs target is the (pinned) space's default child, per 30 s record as `n2nas flops` counts it
        assert terms["flops"] == pytest.approx((t["flops_per_record"] / target) ** cfg.reward.flops_weight)
    assert result.best(1)[0].scores["params"] <= 100_000
    assert (tmp_path / "run" / "power.csv").read_text().startswith("time,cpu_util_pct")
    assert main(["report", str(tmp_path / "run")]) == 0


def test_derive_replaces_children_a_hard_limit_leaves_unscored(tiny_data, tmp_path):
    from n2nas.measure.cost import pipeline_cost
    from n2nas.space import Pipeline

    cfg = tiny_config(budget_epochs=2, derive_children=3, derive_top=0)  # fresh controller samples only
    space = get_space(cfg.space).space.pinned(cfg.fixed)
    rng = np.random.default_rng(0)
    shape = {"n_leads": 1, "classes": list(tiny_data.classes)}
    flops = [pipeline_cost(Pipeline(cfg.space, space.random_sample(rng), shape))["flops_per_record"]
             for _ in range(40)]
    limit = float(np.percentile(flops, 30))  # most children break it
    result = n2nas.search(tiny_data, replace(cfg, reward=RewardConfig(max_flops=limit)), out=tmp_path / "run")
    derive = [t for t in result.trials if t["phase"] == "derive"]
    assert any(t["status"] == "infeasible" for t in derive)  # the case this test is about did occur
    # each infeasible child was made up by a fresh sample, so the finals get derive_children to choose from
    assert sum(t["status"] == "ok" for t in derive) == 3
    assert result.pipelines and all(p.scores["flops_per_record"] <= limit for p in result.pipelines)


def _fake_run(tmp_path, sources=("rapl", "rapl", "rapl", "rapl")):
    rows = [  # metric, flops, energy per record: step 1 is dominated by step 0 on everything
        (0.80, 2e6, 1.0), (0.70, 3e6, 2.0), (0.60, 1e6, 1.5), (0.90, 5e6, 0.5)]
    with open(tmp_path / "trials.jsonl", "w") as fh:
        for step, ((m, f, e), src) in enumerate(zip(rows, sources)):
            fh.write(json.dumps({"step": step, "phase": "derive", "status": "ok", "reward": m, "flops": f,
                                 "params": 10, "energy_j": e * 4, "energy_per_record_j": e, "energy_source": src,
                                 "latency_ms": 1.0 + step, "reward_terms": {"metric": m}, "sample": {}}) + "\n")
        fh.write(json.dumps({"step": 4, "phase": "derive", "status": "failed", "reward": None, "flops": 1,
                             "params": 1, "energy_source": "rapl", "sample": {}}) + "\n")
    (tmp_path / "best_pipeline.json").write_text(json.dumps({"scores": {"step": 3}}))
    return tmp_path


def test_pareto_front_and_report_table(tmp_path, capsys):
    from n2nas.cli import main
    from n2nas.searching.report import format_table, pareto_front

    front = pareto_front(_fake_run(tmp_path))
    assert front.third_label.startswith("energy per record (J, rapl")
    assert front.on_front.tolist() == [True, False, True, True] and front.chosen_step == 3
    table = format_table(front)
    assert "* " in table.splitlines()[-2] or table.splitlines()[-2].lstrip().startswith("*")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 failed" in out and "report.png" in out

    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "report.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 1000 and np.ptp(image) > 0


def test_report_never_mixes_energy_sources(tmp_path):
    from n2nas.searching.report import pareto_front

    front = pareto_front(_fake_run(tmp_path, ("rapl", "estimate:flops", "rapl", "rapl")))
    assert front.third_label == "latency per record (ms)" and "never compared" in front.note
    assert not math.isnan(front.third.sum())


def test_search_options_reach_the_config():
    import argparse

    from n2nas.cli.search_command import add_reward_options, reward_and_measure

    p = argparse.ArgumentParser()
    add_reward_options(p)
    reward, measure = reward_and_measure(p.parse_args(
        ["--reward", "accuracy", "--flops-weight", "-0.2", "--max-params", "5000", "--joules-per-flop", "1e-10",
         "--no-power-sampler"]))
    assert reward == replace(RewardConfig.accuracy_only(), flops_weight=-0.2, max_params=5000)
    assert measure.joules_per_flop == 1e-10 and measure.power_interval_s is None and measure.latency.enabled
