"""benchmarks/physionet2017.py: several retrain seeds per row, and its options' errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from n2nas.metrics import cinc2017_f1
from tests.conftest import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "physionet2017.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("physionet2017")


def _result(pred, y):
    return {"test_pred": np.asarray(pred), "test_y": np.asarray(y), "test": {"cinc2017_f1": cinc2017_f1(pred, y)}}


def test_rows_collect_one_prediction_column_per_seed_and_score_their_mean(bench):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    noisy = [np.where(rng.random(300) < p, rng.integers(0, 4, 300), y) for p in (0.2, 0.5, 0.3)]
    done = {("a", 0): _result(noisy[0], y), ("b", 0): _result(noisy[2], y), ("a", 1): _result(noisy[1], y),
            ("b", 1): _result(y, y)}
    rows = bench.by_row(done)
    assert rows["a"]["test_pred"].shape == (300, 2)
    assert (rows["a"]["test_pred"][:, 1] == noisy[1]).all()  # columns in seed order
    assert rows["a"]["f1"] == [cinc2017_f1(noisy[0], y), cinc2017_f1(noisy[1], y)]
    assert bench.seed_mean_f1(rows["a"]["test_pred"], y) == pytest.approx(np.mean(rows["a"]["f1"]))
    assert bench.seed_mean_f1(noisy[0], y) == pytest.approx(cinc2017_f1(noisy[0], y))  # one seed: one column


def test_the_paired_gap_compares_seed_means(bench, capsys):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    poor = [np.where(rng.random(400) < 0.5, rng.integers(0, 4, 400), y) for _ in range(2)]
    good = [np.where(rng.random(400) < 0.1, rng.integers(0, 4, 400), y) for _ in range(2)]
    done = {(name, s): _result(preds[s], y) for s in range(2) for name, preds in (("plain-cnn", poor), ("x", good))}
    bench.print_paired_gaps(bench.by_row(done))
    line = capsys.readouterr().out.strip().splitlines()[-1].split()
    gap = np.mean([cinc2017_f1(good[s], y) - cinc2017_f1(poor[s], y) for s in range(2)])
    assert line[0] == "x" and float(line[1]) == pytest.approx(gap, abs=5e-4)
    assert float(line[2].strip("[,")) > 0  # a gap this large has its interval above zero


def test_a_missing_pipeline_file_ends_in_one_line_and_exit_code_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--rows", "plain-cnn",
                           "--pipeline", f"x={tmp_path / 'absent.json'}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr == f"physionet2017.py: error: {tmp_path / 'absent.json'}: pipeline file is missing\n"
