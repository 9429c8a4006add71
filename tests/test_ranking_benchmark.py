"""benchmarks/ranking.py: smoke tests on three children of the bundled sample (one epoch each), its FLOPs
stratification, the noise ceiling its --seeds option reports, and its file of standalone trainings (reused only
for the same recipe, grown only when asked for more children)."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from tests.conftest import load_benchmark


def test_ranking_benchmark_prints_tau_rho_ceiling_and_regret_per_rule(capsys, tmp_path):
    ranking = _ranking_module()
    # one cheap preprocessing choice, a few seconds of supernet training: this checks the plumbing, not tau
    out = ranking.main(["--data", "sample", "--space", "ecg-res", "--rule", "uniform,sandwich", "--records", "60",
                        "--children", "3", "--epochs", "1", "--seeds", "2", "--minutes", "0.02", "--device", "cpu",
                        "--threads", "1", "--results", str(tmp_path / "r.jsonl"), "--fix", "fs=100",
                        "--fix", "filter=none",
                        "--fix", "normalise=record_z", "--fix", "window=crop:5"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("rule=")]
    assert [line.split()[0] for line in lines] == ["rule=uniform", "rule=sandwich"]
    pattern = (r"rule=(\w+) kendall_tau=(\S+) spearman_rho=(\S+) ceiling_tau=(\S+) ceiling_tau_mean=\S+ "
               r"top1_regret=(\S+) children=3 records=60 supernet_minutes=0.02 seeds=2")
    alone = out["standalone"]
    for line in lines:
        m = re.fullmatch(pattern, line)
        assert m, line
        rule, tau, rho, ceiling, regret = m.group(1), *map(float, m.groups()[1:])
        res = out["rules"][rule]
        assert all(math.isfinite(v) and -1 <= v <= 1 for v in (tau, rho, ceiling))
        assert abs(tau - res["kendall_tau"]) < 1e-3 and abs(ceiling - res["ceiling_tau"]) < 1e-3
        # regret: best standalone F1 minus the standalone F1 of the supernet's first choice
        top = max(range(3), key=lambda i: res["supernet"][i])
        assert regret == pytest.approx(max(alone) - alone[top], abs=1e-3) and regret >= 0
    assert len(alone) == 3 and out["rules"]["sandwich"]["steps"] > 0
    flops = out["flops_baseline"]  # more FLOPs ranks higher: the ranker a supernet has to beat
    assert flops["top1_regret"] == pytest.approx(max(alone) - alone[int(np.argmax(out["gflops"]))])


def test_children_are_stratified_over_the_spaces_flops_range():
    ranking = _ranking_module()
    from n2nas.data.spec import load_dataset
    from search_spaces import get_space

    args = ranking.parse_args(["--space", "ecg-res", "--children", "4", "--data", "sample"])
    space_def = get_space("ecg-res")
    space = space_def.space.pinned({"fs": 100, "window": "crop:10", "filter": "none", "normalise": "record_z"})
    dataset = load_dataset("sample")
    children, gflops = ranking.pick_children(args, space_def, space, dataset, np.random.default_rng(0))
    lo, hi = (ranking.child_cost("ecg-res", f(space.default_sample()), dataset)[0]
              for f in (space_def.smallest, space_def.largest))
    assert len(children) == 4 and all(lo <= g <= hi for g in gflops)
    assert gflops == sorted(gflops) and gflops[-1] / gflops[0] > (hi / lo) ** 0.5  # spread, cheap to costly
    uniform = ranking.parse_args(["--space", "ecg-res", "--children", "4", "--stratify", "uniform"])
    assert len(ranking.pick_children(uniform, space_def, space, dataset, np.random.default_rng(0))[0]) == 4


def _ranking_module():
    return load_benchmark("ranking")


def test_ceiling_tau_matches_simulated_rankings_against_noisy_standalone_scores():
    from benchmarks import rank_stats as ranking
    rng = np.random.default_rng(0)
    truth = rng.normal(size=4000)
    runs = [truth + rng.normal(size=truth.size) for _ in range(3)]  # one run = quality + equal noise: r = 0.5
    tau_pair, r_pair = ranking.seed_agreement([list(run) for run in runs])
    assert abs(r_pair - 0.5) < 0.05 and abs(tau_pair - 2 / math.pi * math.asin(0.5)) < 0.05
    for seeds in (1, 3):
        measured = kendalltau(truth, np.mean(runs[:seeds], axis=0))[0]
        assert abs(ranking.ceiling_tau(r_pair, seeds) - measured) < 0.03, (seeds, measured)
    assert ranking.ceiling_tau(1.0, 1) == 1.0 and ranking.ceiling_tau(0.0, 3) == 0.0
    assert ranking.ceiling_tau(0.5, 1) < ranking.ceiling_tau(0.5, 3) < 1.0


ARGV = ["--data", "sample", "--space", "ecg-cpu", "--rule", "uniform", "--records", "60", "--children", "3",
        "--epochs", "1", "--seeds", "2", "--minutes", "0.02", "--device", "cpu", "--threads", "1",
        "--fix", "fs=100", "--fix", "filter=none", "--fix", "normalise=record_z", "--fix", "window=crop:5"]


def test_ranking_benchmark_trains_each_child_once_per_seed_on_one_split(capsys, tmp_path):
    ranking = _ranking_module()
    results = tmp_path / "r.jsonl"
    out = ranking.main(ARGV + ["--results", str(results), "--out", str(tmp_path / "models")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"rule=uniform kendall_tau=\S+ spearman_rho=\S+ ceiling_tau=\S+ ceiling_tau_mean=\S+ "
                        r"top1_regret=\S+ children=3 records=60 supernet_minutes=0.02 seeds=2", last), last
    assert len(out["per_seed"]) == 2 and all(len(scores) == 3 for scores in out["per_seed"])
    assert np.allclose(out["standalone"], np.mean(out["per_seed"], axis=0)) and out["trained"] == 6
    folders = sorted((tmp_path / "models").iterdir())
    assert len(folders) == 6
    pair = [f for f in folders if f.name.startswith(folders[0].name.split("-seed")[0])]
    assert [f.name[-5:] for f in pair] == ["seed0", "seed1"]
    assert len({(f / "split.json").read_text() for f in pair}) == 1  # both seeds trained on the same split
    weights = [torch.load(f / "model.pt", map_location="cpu") for f in pair]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])  # seeds differ


def test_results_file_round_trips_and_records_the_commit(tmp_path):
    ranking = _ranking_module()
    results = tmp_path / "r.jsonl"
    out = ranking.main(ARGV + ["--rule", "none", "--results", str(results)])
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 6 and {line["seed"] for line in lines} == {0, 1}
    assert ranking.load_trainings(results) == lines  # the benchmark's own reader
    for line in lines:
        assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", line["commit"])
        assert line["recipe"]["epochs"] == 1 and line["split"]["seed"] == 0 and line["data"]["records"] == 60
        assert line["space"] == "ecg-cpu" and line["pins"]["fs"] == 100 and line["child"]["fs"] == 100
        assert line["gflops"] > 0 and line["params"] > 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT\S+Z", line["date"])
        assert not any(isinstance(v, list) for v in line.values())  # small: no arrays
    by_child = {(json.dumps(line["child"], sort_keys=True), line["seed"]): line["f1"] for line in lines}
    for k, seed in enumerate((0, 1)):
        for sample, f1 in zip(out["children"], out["per_seed"][k]):
            assert by_child[(json.dumps(sample, sort_keys=True), seed)] == pytest.approx(f1)
    assert out["gflops"] == sorted(out["gflops"])
    # a torn last line (a kill during its write) is skipped, and the next line is not glued to it
    with open(results, "a") as fh:
        fh.write('{"space": "ecg')
    ranking.append_training(results, {"space": "x", "f1": math.nan})
    again = ranking.load_trainings(results)
    assert again[:6] == lines and again[6] == {"space": "x", "f1": None} and len(again) == 7


def test_second_run_trains_only_what_is_missing(tmp_path, monkeypatch):
    ranking = _ranking_module()
    results = tmp_path / "r.jsonl"
    first = ranking.main(ARGV + ["--results", str(results)])
    calls = []
    real_retrain = ranking.retrain
    monkeypatch.setattr(ranking, "retrain", lambda *a, **k: calls.append(a) or real_retrain(*a, **k))
    again = ranking.main(ARGV + ["--results", str(results)])  # the same recipe: everything comes from the file
    assert calls == [] and again["trained"] == 0
    assert again["per_seed"] == first["per_seed"] and again["children"] == first["children"]
    more = ranking.main(ARGV + ["--results", str(results), "--children", "5"])  # two new children, both seeds
    assert len(calls) == 4 and more["trained"] == 4 and len(more["children"]) == 5
    assert all(c in more["children"] for c in first["children"])
    fewer = ranking.main(ARGV + ["--results", str(results), "--children", "2", "--seeds", "1"])
    assert len(calls) == 4 and len(fewer["children"]) == 5  # every matching child in the file is ranked
    assert len(results.read_text().splitlines()) == 10


def test_another_recipe_or_split_does_not_reuse_lines(tmp_path, monkeypatch):
    ranking = _ranking_module()
    results = tmp_path / "r.jsonl"
    ranking.main(ARGV + ["--rule", "none", "--results", str(results)])
    epochs = ARGV[:ARGV.index("--epochs")] + ["--epochs", "2"] + ARGV[ARGV.index("--epochs") + 2:]
    two = ranking.main(epochs + ["--rule", "none", "--results", str(results)])
    assert two["trained"] == 6  # another epoch count is another training
    other_split = ranking.main(ARGV + ["--rule", "none", "--results", str(results), "--seed", "1"])
    assert other_split["trained"] == 6
    lines = ranking.load_trainings(results)
    assert len(lines) == 18 and {line["recipe"]["epochs"] for line in lines} == {1, 2}
    pinned = ranking.main(ARGV + ["--rule", "none", "--results", str(results), "--fix", "filter=bandpass"])
    assert pinned["trained"] == 6  # other pins: other children
