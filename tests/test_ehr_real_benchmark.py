"""benchmarks/ehr_real.py: one patient split for the search, the retrains and the grid; the paired AUROC gaps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from n2nas.data.spec import load_dataset
from n2nas.data.splits import Split, stratified_split
from n2nas.searching.loop import SearchConfig
from tests.conftest import load_benchmark
from tests.test_diabetes130 import write_table


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ehr_real")


def test_the_search_splits_the_non_test_rows_as_the_benchmark_does(bench, tmp_path):
    """The search sees the training + validation rows and splits them itself (``val_fraction``, seed): that split
    is the benchmark's, so finals, retrain and grid choose on the same validation patients; a different split is
    caught."""
    ds = load_dataset(f"diabetes130:{write_table(tmp_path / 'd', n_patients=150)},readmitted")
    config = SearchConfig.ehr_cpu()
    train_idx, val_idx, test_idx = bench.benchmark_split(ds, config, 0)
    assert not set(ds.groups[test_idx]) & set(ds.groups[np.concatenate([train_idx, val_idx])])
    assert abs(len(test_idx) / len(ds) - bench.TEST_FRACTION) < 0.05
    seen_idx = np.sort(np.concatenate([train_idx, val_idx]))
    stratified_split(bench.rows_of(ds, seen_idx, "search"), val=config.val_fraction, seed=0).save(
        tmp_path / "split.json")
    bench.check_search_split(tmp_path, seen_idx, train_idx, val_idx)
    other = stratified_split(bench.rows_of(ds, seen_idx, "search"), val=config.val_fraction, seed=1)
    Split(other.train, other.val).save(tmp_path / "split.json")
    with pytest.raises(AssertionError, match="differ"):
        bench.check_search_split(tmp_path, seen_idx, train_idx, val_idx)


def _row(probs, y, kind="reference"):
    return {"kind": kind, "preds": [np.asarray(probs)[:, None]], "ys": [np.asarray(y)], "folds": [None]}


def test_paired_gaps_are_the_first_rows_macro_auroc_minus_each_others(bench):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.eye(3)[y] * 0.6 + rng.random((300, 3)) * 0.4
    noise = rng.random((300, 3))
    gaps = bench.paired_gaps({"a": _row(good, y, "search"), "b": _row(noise, y)}, "a", lambda m: None, 500)
    assert len(gaps) == 1 and gaps[0]["minus"] == "b"
    assert gaps[0]["difference"] > 0.3 and 0 < gaps[0]["low"] < gaps[0]["difference"] < gaps[0]["high"]


def test_the_pareto_table_places_the_linear_baseline_and_leaves_the_trees_unplaced(bench, tmp_path):
    """A tiny run without the search (grid, a --pipeline MLP over two retrain seeds, both baselines) on a synthetic
    table: every row in the Pareto table with an interval around its score, logistic regression costed as a
    linear layer, the boosted trees timed but without FLOPs (not placed), and report.png written."""
    import json
    import os
    import subprocess
    import sys

    from n2nas.space import Pipeline
    from search_spaces import get_space

    folder = write_table(tmp_path / "d", n_patients=150)
    sample = {**get_space("ehr-mlp-small").space.default_sample(), "layers": 2, "units": 16}
    (tmp_path / "p.json").write_text(json.dumps(Pipeline("ehr-mlp-small", sample).to_json()))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ehr_real.py"
    done = subprocess.run([sys.executable, str(script), "--data", str(folder), "--targets", "readmitted",
                           "--skip", "search", "--layers", "2", "--units", "16", "--epochs", "1",
                           "--retrain-epochs", "1", "--retrain-seeds", "0,1",
                           "--pipeline", f"mlp={tmp_path / 'p.json'}",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    table = {t["name"]: t for t in report["targets"]["readmitted"]["pareto"]}
    assert set(table) == {"mlp", "grid best by val (2 x 16)", "LogisticRegression", "HistGradientBoosting"}
    for t in table.values():
        assert t["low"] <= t["score"] <= t["high"] and t["latency_ms"] > 0
    assert table["mlp"]["seeds"] == 2 and table["mlp"]["kind"] == "pipeline"
    assert table["HistGradientBoosting"]["flops_per_record"] is None and table["HistGradientBoosting"]["pareto"] is None
    n_features, n_classes = report["targets"]["readmitted"]["n_features"], 3
    assert table["LogisticRegression"]["flops_per_record"] == 2 * n_features * n_classes
    assert table["LogisticRegression"]["pareto"]  # the cheapest placed row is always on the front
    assert "n/a (no FLOPs)" in done.stdout and "yes *" in done.stdout
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_resamples_scored_as_draw_counts_give_the_intervals_of_the_resamples_themselves(bench):
    """The Pareto table's interval from draw counts is the one from the drawn records (same draws); the paired gap's
    counted percentile interval agrees with scipy's percentile bootstrap within resampling noise."""
    scoring = load_benchmark("scoring")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    a = _row(np.eye(3)[y] * 0.3 + rng.random((400, 3)), y)
    b = _row(np.eye(3)[y] * 0.2 + rng.random((400, 3)), y)
    assert scoring.interval(bench.auroc_of, a["preds"], a["ys"], 300, counted=bench.auroc_counts) == pytest.approx(
        scoring.interval(bench.auroc_of, a["preds"], a["ys"], 300), abs=1e-12)
    fast = scoring.paired_gap(bench.auroc_of, a, b, 1000, method="percentile", counted=bench.auroc_counts)
    slow = scoring.paired_gap(bench.auroc_of, a, b, 1000, method="percentile")
    assert fast["difference"] == pytest.approx(slow["difference"], abs=1e-12)
    assert fast["low"] == pytest.approx(slow["low"], abs=0.01) and fast["high"] == pytest.approx(slow["high"], abs=0.01)
    with pytest.raises(ValueError, match="percentile"):
        scoring.paired_gap(bench.auroc_of, a, b, 10, counted=bench.auroc_counts)
