"""benchmarks/ranking.py: smoke tests on three children of the bundled sample (one epoch each), its FLOPs
stratification, and the noise ceiling its --seeds option reports."""
from __future__ import annotations

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
                        "--threads", "1", "--out", str(tmp_path), "--fix", "fs=100", "--fix", "filter=none",
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


def test_children_are_stratified_over_the_spaces_flops_range():
    ranking = _ranking_module()
    from n2nas.data.spec import load_dataset
    from search_spaces import get_space

    args = ranking.parse_args(["--space", "ecg-res", "--children", "4", "--data", "sample"])
    space_def = get_space("ecg-res")
    space = space_def.space.pinned({"fs": 100, "window": "crop:10", "filter": "none", "normalise": "record_z"})
    dataset = load_dataset("sample")
    children, gflops = ranking.pick_children(args, space_def, space, dataset, np.random.default_rng(0))
    lo, hi = (ranking.record_gflops("ecg-res", f(space.default_sample()), dataset)
              for f in (space_def.smallest, space_def.largest))
    assert len(children) == 4 and all(lo <= g <= hi for g in gflops)
    assert gflops == sorted(gflops) and gflops[-1] / gflops[0] > (hi / lo) ** 0.5  # spread, cheap to costly
    uniform = ranking.parse_args(["--space", "ecg-res", "--children", "4", "--stratify", "uniform"])
    assert len(ranking.pick_children(uniform, space_def, space, dataset, np.random.default_rng(0))[0]) == 4


def _ranking_module():
    return load_benchmark("ranking")


def test_ceiling_tau_matches_simulated_rankings_against_noisy_standalone_scores():
    ranking = _ranking_module()
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


def test_ranking_benchmark_trains_each_child_once_per_seed_on_one_split(capsys, tmp_path, monkeypatch):
    ranking = _ranking_module()
    argv = ["--data", "sample", "--space", "ecg-cpu", "--rule", "uniform", "--records", "60",
            "--children", "3", "--epochs", "1", "--seeds", "2",
            "--minutes", "0.02", "--device", "cpu", "--threads", "1", "--out", str(tmp_path),
            "--fix", "fs=100", "--fix", "filter=none", "--fix", "normalise=record_z", "--fix", "window=crop:5"]
    out = ranking.main(argv)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"rule=uniform kendall_tau=\S+ spearman_rho=\S+ ceiling_tau=\S+ ceiling_tau_mean=\S+ "
                        r"top1_regret=\S+ children=3 records=60 supernet_minutes=0.02 seeds=2", last), last
    assert len(out["per_seed"]) == 2 and all(len(scores) == 3 for scores in out["per_seed"])
    assert np.allclose(out["standalone"], np.mean(out["per_seed"], axis=0))
    splits = {(tmp_path / f"child00-seed{k}" / "split.json").read_text() for k in (0, 1)}
    assert len(splits) == 1  # both seeds trained on the same split
    weights = [torch.load(tmp_path / f"child00-seed{k}" / "model.pt", map_location="cpu") for k in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])  # seeds differ
    # --reuse: the same children found in --out are not trained again, and score the same
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("--reuse trained a child again")

    monkeypatch.setattr(ranking, "retrain", no_training)
    again = ranking.main(argv + ["--reuse"])
    assert again["per_seed"] == out["per_seed"]
    with pytest.raises(AssertionError, match="trained a child again"):  # another epoch count is another training
        ranking.main([a if a != "1" else "2" for a in argv] + ["--reuse"])
