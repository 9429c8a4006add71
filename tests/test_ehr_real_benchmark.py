"""benchmarks/ehr_real.py: one patient split for the search, the retrains and the grid; the paired AUROC gaps."""
from __future__ import annotations

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


def test_paired_gaps_are_the_first_rows_macro_auroc_minus_each_others(bench):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.eye(3)[y] * 0.6 + rng.random((300, 3)) * 0.4
    noise = rng.random((300, 3))
    gaps = bench.paired_gaps([{"method": "a", "probs": good}, {"method": "b", "probs": noise}], y, 3, lambda m: None)
    assert len(gaps) == 1 and gaps[0]["minus"] == "b"
    assert gaps[0]["difference"] > 0.3 and 0 < gaps[0]["low"] < gaps[0]["difference"] < gaps[0]["high"]
