"""benchmarks/ranking.py: smoke tests on three children of the bundled sample (one epoch each), and the noise
ceiling its --seeds option reports."""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ranking.py"


def test_ranking_benchmark_prints_tau_and_rho(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("ranking_benchmark", SCRIPT)
    ranking = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ranking)
    # one cheap preprocessing choice, a few seconds of supernet training: this checks the plumbing, not tau
    out = ranking.main(["--data", "sample", "--records", "60", "--children", "3", "--epochs", "1",
                        "--minutes", "0.02", "--device", "cpu", "--threads", "1", "--out", str(tmp_path),
                        "--fix", "fs=100", "--fix", "filter=none", "--fix", "normalise=record_z",
                        "--fix", "window=crop:5"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.fullmatch(r"kendall_tau=(\S+) spearman_rho=(\S+) children=3 records=60 supernet_minutes=0.02", last)
    assert m, last
    tau, rho = float(m.group(1)), float(m.group(2))
    assert math.isfinite(tau) and -1 <= tau <= 1 and math.isfinite(rho) and -1 <= rho <= 1
    assert abs(tau - out["kendall_tau"]) < 1e-3 and len(out["standalone"]) == 3


def _ranking_module():
    spec = importlib.util.spec_from_file_location("ranking_benchmark_seeds", SCRIPT)
    ranking = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ranking)
    return ranking


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


def test_ranking_benchmark_trains_each_child_once_per_seed_on_one_split(capsys, tmp_path):
    ranking = _ranking_module()
    out = ranking.main(["--data", "sample", "--records", "60", "--children", "3", "--epochs", "1", "--seeds", "2",
                        "--minutes", "0.02", "--device", "cpu", "--threads", "1", "--out", str(tmp_path),
                        "--fix", "fs=100", "--fix", "filter=none", "--fix", "normalise=record_z",
                        "--fix", "window=crop:5"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"kendall_tau=\S+ spearman_rho=\S+ children=3 records=60 supernet_minutes=0.02 seeds=2 "
                        r"standalone_tau=\S+ ceiling_tau=\S+", last), last
    assert len(out["per_seed"]) == 2 and all(len(scores) == 3 for scores in out["per_seed"])
    assert np.allclose(out["standalone"], np.mean(out["per_seed"], axis=0))
    splits = {(tmp_path / f"child00-seed{k}" / "split.json").read_text() for k in (0, 1)}
    assert len(splits) == 1  # both seeds trained on the same split
    weights = [torch.load(tmp_path / f"child00-seed{k}" / "model.pt", map_location="cpu") for k in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0])  # seeds differ
