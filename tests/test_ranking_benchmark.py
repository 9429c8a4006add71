"""Smoke test of benchmarks/ranking.py: three children of the bundled sample, one epoch each."""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

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
