"""benchmarks/ptbxl.py: which records each test fold and the searches see (fold 10 never), folds from headers or
a folds file, and gaps and Pareto scores as means over test folds."""
from __future__ import annotations

import numpy as np
import pytest

from n2nas.data.synthetic import synth_rhythm, write_wfdb_record
from n2nas.errors import DataError
from n2nas.metrics import macro_auroc_ranks
from search_spaces.leads import STANDARD_LEADS
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ptbxl")


def write_folds(folder, folds: list, ecg_ids: bool = True):
    """One synthetic 12-lead record per entry of ``folds`` with that ``# fold:`` header (and ``# ecg_id:``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["record,label"]
    for i, fold in enumerate(folds):
        kind = "NA"[i % 2]
        comments = [f"fold: {fold}"] + ([f"ecg_id: {100 + i}"] if ecg_ids else [])
        write_wfdb_record(folder, f"r{i:03d}", synth_rhythm(kind, 10.0, 100.0, rng, leads=12), 100.0,
                      STANDARD_LEADS, comments=comments)
        rows.append(f"r{i:03d},{'NORM' if kind == 'N' else 'MI'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return str(folder)


def ids(ds):
    return [r.id for r in ds.records]


def test_each_test_fold_is_scored_with_folds_1_to_9_without_it_and_fold_10_is_never_read(bench, tmp_path):
    folder = write_folds(tmp_path / "d", [1, 2, 8, 8, 9, 9, 10, 10])
    dev, test = bench.fold_split(folder, (8, 9), 8)
    assert ids(test) == ["r002", "r003"] and ids(dev) == ["r000", "r001", "r004", "r005"]
    dev, test = bench.fold_split(folder, (8, 9), 9)
    assert ids(test) == ["r004", "r005"] and ids(dev) == ["r000", "r001", "r002", "r003"]
    dev, test = bench.fold_split(folder, (8, 9), None)  # the searches: outside every test fold
    assert test is None and ids(dev) == ["r000", "r001"]


def test_the_subsets_train_and_val_headers_serve_fold_9_and_a_folds_file_serves_the_rest(bench, tmp_path):
    folder = write_folds(tmp_path / "d", ["train", "train", "train", "val", "val", "train"])
    dev, test = bench.fold_split(folder, (9,), 9)  # the subset's protocol: folds 1-8 dev, fold 9 test
    assert ids(test) == ["r003", "r004"] and len(dev) == 4
    with pytest.raises(DataError, match="--folds FILE"):
        bench.fold_split(folder, (8, 9), 8)
    (tmp_path / "folds.csv").write_text("ecg_id,strat_fold\n" + "".join(
        f"{100 + i},{fold}\n" for i, fold in enumerate([1, 8, 8, 9, 9, 10])))
    dev, test = bench.fold_split(folder, (8, 9), 8, str(tmp_path / "folds.csv"))
    assert ids(test) == ["r001", "r002"] and ids(dev) == ["r000", "r003", "r004"]  # r005: fold 10
    (tmp_path / "short.csv").write_text("record,fold\nr000,1\n")
    with pytest.raises(DataError, match="no fold for record r001"):
        bench.fold_split(folder, (9,), 9, str(tmp_path / "short.csv"))


def test_scores_and_gaps_over_several_test_folds_are_the_mean_of_each_folds(bench, capsys):
    scoring = load_benchmark("scoring")
    rng = np.random.default_rng(4)

    def fold(n, signal):
        y = rng.integers(0, 2, (n, 3))
        return y, {name: np.clip(s * y + rng.random(y.shape), 0, None)[:, None] for name, s in signal.items()}

    folds = [fold(150, {"n2nas search": 0.9, "resnet-12": 0.5}), fold(90, {"n2nas search": 0.4, "resnet-12": 0.6})]
    rows = {name: {"kind": "reference", "folds": [8, 9], "ys": [y for y, _ in folds],
                   "preds": [p[name] for _, p in folds]} for name in ("n2nas search", "resnet-12")}
    per_fold = {name: [macro_auroc_ranks(y, p[name][:, 0]) for y, p in folds] for name in rows}
    assert scoring.row_score(bench.auroc_of, rows["resnet-12"]["preds"], rows["resnet-12"]["ys"]) == pytest.approx(
        np.mean(per_fold["resnet-12"]))
    bench.print_gaps(rows, "test-fold 8,9")
    out = capsys.readouterr().out.splitlines()
    assert "minus resnet-12's" in out[0] and "240 records" in out[0]
    gap = np.mean(per_fold["n2nas search"]) - np.mean(per_fold["resnet-12"])
    assert out[1].split()[2] == f"{gap:+.3f}"
    point, low, high = scoring.interval(bench.auroc_of, rows["resnet-12"]["preds"], rows["resnet-12"]["ys"], 200)
    assert low <= point <= high
