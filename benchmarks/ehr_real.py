"""Real EHR (UCI Diabetes 130-US hospitals): searched MLP vs DiagnoseNET's grid vs scikit-learn baselines.

For each target (``chapter``, ``readmitted30``, ``readmitted``) every method gets the same encoded features
(:mod:`n2nas.data.table`, encoder fitted on the training rows only) and the same split by ``patient_nbr``
(:func:`n2nas.train.rows.split_indices`, seeded: 15% test patients, then the ``ehr-cpu`` search's own validation
share, 20%, of the rest: 68% train, 17% validation; the search's run folder's ``split.json`` is checked to hold
exactly these training and validation rows, and the grid's cells get the same validation rows):

- searched MLP: ``n2nas search --preset ehr-cpu`` (ENAS over ``ehr-mlp-small``, reward validation macro AUROC) on
  the training + validation rows only, then its best pipeline retrained from scratch as ``n2nas retrain`` does
  (:func:`n2nas.retrain.fit_rows`: Adam, lr decayed linearly to zero over ``--retrain-epochs`` epochs, never a wall cap, so
  the result does not depend on the machine's load; stopped after ``--retrain-patience`` epochs without a better
  validation macro AUROC; the best epoch kept; ``--class-weight`` weights its loss by balanced class weights
  raised to that power);
- grid: DiagnoseNET's layers x units cells (Adam 0.001, relu, dropout 0.2, batch 768, early stopping on
  validation macro F1); the reported cell is the best on *validation* macro F1, never chosen on test;
- the grid's best cell retrained exactly like the searched MLP (when both run): it separates what the search's
  choice adds from what the retrain recipe adds;
- LogisticRegression (lbfgs, multinomial, C=1, on the sparse matrix);
- HistGradientBoostingClassifier (early stopping on 10% of the training rows), which needs a dense matrix: it
  gets a dense copy of the training rows only (the benchmark's baseline, not the n2nas path).

Scores on the test patients: accuracy, macro F1, macro AUROC (one-vs-rest, classes absent from the test rows
left out), then the searched MLP's macro AUROC minus each other row's on the same test encounters with a paired
bootstrap 95% interval. Also prints the cold and warm read times of the table (parse + encode, then the cache).

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/ehr_real.py --data ../shared/data/diabetes130 \\
        --targets chapter,readmitted30 --search-minutes 20 --epochs 15 --cell-minutes 4 --retrain-epochs 30
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.data.ehr import EHRDataset  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import Split  # noqa: E402
from n2nas.data.table import fit_on_training  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from n2nas.grid.run import GridConfig, run_grid  # noqa: E402
from n2nas.metrics import evaluate_predictions, macro_auroc_ranks, paired_bootstrap  # noqa: E402
from n2nas.searching.loop import SearchConfig, search  # noqa: E402
from n2nas.train.rows import predict_rows, split_indices  # noqa: E402
from search_spaces import get_space  # noqa: E402
from n2nas.grid.run import TEST_PROBS  # noqa: E402

SPACE = "ehr-mlp-small"
BASE = {"lr": 0.001, "activation": "relu", "dropout": 0.2, "batch_size": 768}
TEST_FRACTION = 0.15


def val_share(config: SearchConfig) -> float:
    """The validation share of all rows: ``config``'s share of the non-test rows."""
    return config.val_fraction * (1 - TEST_FRACTION)


def benchmark_split(ds: EHRDataset, config: SearchConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Train / validation / test rows: 15% test patients, then ``config``'s validation share of the rest, so that
    the search (which splits the non-test rows itself), the retrains and the grid share one validation split."""
    return split_indices(ds, val_share(config), TEST_FRACTION, seed)


def shown(row: dict) -> dict:
    """A row without its test probabilities (kept for :func:`paired_gaps`), for logs and the report."""
    return {k: v for k, v in row.items() if k != "probs"}


def check_search_split(run_dir: Path, seen_idx: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    """The search's saved split (ids ``p<i>`` of the rows it saw, ``seen_idx``) is the benchmark's own."""
    split = Split.load(run_dir / "split.json")
    for name, part, mine in (("train", split.train, train_idx), ("val", split.val, val_idx)):
        rows = np.sort(seen_idx[[int(i[1:]) for i in part]])
        assert np.array_equal(rows, mine), f"the search's {name} rows differ from the benchmark's"


def read_times(spec: str) -> dict[str, float]:
    """Cold (fresh cache: parse + encode + store) and warm (cache) seconds of ``load_dataset(spec)``."""
    root = Path(tempfile.mkdtemp(prefix="n2nas-read-"))
    try:
        start = time.perf_counter()
        load_dataset(spec, cache_root=root)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(spec, cache_root=root)
        return {"cold_s": round(cold, 2), "warm_s": round(time.perf_counter() - start, 3)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rows_of(ds: EHRDataset, idx: np.ndarray, tag: str) -> EHRDataset:
    """These rows as a dataset of their own, already encoded (``table=None``: not re-read or refitted)."""
    return dataclasses.replace(ds, X=ds.X[idx], y=ds.y[idx], groups=ds.groups[idx], table=None,
                               source=f"{ds.source}[{tag}]", fingerprint=f"{ds.fingerprint}-{tag}")


def scores(probs: np.ndarray, y: np.ndarray, classes) -> dict[str, float]:
    """Accuracy, macro F1 and macro AUROC of single-label probabilities (and the probabilities, as ``probs``, for
    :func:`paired_gaps`; dropped from the report)."""
    m = evaluate_predictions(probs, y, classes, False)
    return {**{k: m[k] for k in ("accuracy", "macro_f1", "macro_auroc")}, "probs": probs}


def paired_gaps(rows: list[dict], y: np.ndarray, n_classes: int, log) -> list[dict]:
    """The first row's (the searched MLP's) test macro AUROC minus each other row's, with a paired bootstrap 95%
    interval over the test encounters (:func:`n2nas.metrics.paired_bootstrap`)."""
    onehot = np.eye(n_classes, dtype=bool)

    def auroc(probs, labels):
        return macro_auroc_ranks(onehot[labels], probs)

    gaps = []
    for row in rows[1:]:
        gap = paired_bootstrap(auroc, rows[0]["probs"], row["probs"], y, n_resamples=1000)
        gaps.append({"minus": row["method"], **gap})
        log(f"gap: {gaps[-1]}")
    return gaps


def baselines(ds: EHRDataset, train_idx, test_idx, seed: int, log) -> list[dict]:
    """LogisticRegression and HistGradientBoostingClassifier on the same rows and features."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    y = ds.label_indices()
    present = np.unique(y[train_idx])  # a class with no training row cannot be a column of predict_proba
    out = []
    start = time.perf_counter()
    lr = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(ds.X[train_idx], y[train_idx])
    secs = time.perf_counter() - start
    out.append({"method": "LogisticRegression", "train_s": secs, "size": f"{lr.coef_.size + lr.intercept_.size} "
                "params", **scores(_full(lr.predict_proba(ds.X[test_idx]), present, len(ds.classes)),
                                   y[test_idx], ds.classes)})
    log(f"logistic regression: {shown(out[-1])}")
    start = time.perf_counter()
    dense = ds.X[train_idx].toarray()  # HGB takes dense input: the training rows only, for this baseline
    hgb = HistGradientBoostingClassifier(max_iter=300, early_stopping=True, validation_fraction=0.1,
                                         n_iter_no_change=10, random_state=seed).fit(dense, y[train_idx])
    secs = time.perf_counter() - start
    del dense
    trees = hgb.n_iter_ * (1 if len(present) == 2 else len(present))
    probs = np.concatenate([hgb.predict_proba(ds.X[test_idx[s:s + 4096]].toarray())
                            for s in range(0, len(test_idx), 4096)])
    out.append({"method": "HistGradientBoosting", "train_s": secs, "size": f"{trees} trees",
                **scores(_full(probs, present, len(ds.classes)), y[test_idx], ds.classes)})
    log(f"gradient boosting: {shown(out[-1])}")
    return out


def _full(probs: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    full = np.zeros((len(probs), n_classes), dtype=np.float64)
    full[:, present] = probs
    return full


def grid_best(ds: EHRDataset, args, val_fraction: float, out: Path, log) -> tuple[dict, dict]:
    """DiagnoseNET's cells (on the benchmark's validation rows: ``val_fraction``); the row of the cell with the best
    validation macro F1, and a grid summary."""
    axes = [("layers", tuple(int(v) for v in args.layers.split(","))),
            ("units", tuple(int(v) for v in args.units.split(",")))]
    start = time.perf_counter()
    grid = run_grid(SPACE, axes, ds, out, GridConfig(epochs=args.epochs, patience=5, seed=args.seed, device="cpu",
                                                     max_minutes=args.cell_minutes, val_fraction=val_fraction,
                                                     protocol="diagnosenet"),
                    BASE)
    secs = time.perf_counter() - start
    log(grid.table)
    results = [json.loads((out / "cells" / f"{r['cell']:03d}" / "result.json").read_text()) for r in grid.rows]
    ok = [r for r in results if r["result"].get("metrics")]
    best = max(ok, key=lambda r: r["result"]["metrics"]["val_macro_f1"])
    m = best["result"]["metrics"]
    row = {"method": f"grid best by val ({best['row']['layers']} x {best['row']['units']})",
           "train_s": best["result"]["train_seconds"], "size": f"{best['result']['params']} params",
           **{k: m[k] for k in ("accuracy", "macro_f1", "macro_auroc")},
           "probs": np.load(out / "cells" / f"{best['row']['cell']:03d}" / TEST_PROBS)}
    return row, {"cells": len(results), "grid_s": round(secs, 1), "best_sample": best["sample"],
                 "best_test_auroc_any_cell": max(r["result"]["metrics"]["macro_auroc"] for r in ok)}


def retrained(fitted: EHRDataset, sample: dict, metric: str, train_idx, val_idx, test_idx, args) -> dict:
    """``sample`` trained from scratch as ``n2nas retrain`` trains an EHR pipeline (:func:`n2nas.retrain.fit_rows`:
    Adam, lr decayed linearly to zero over ``--retrain-epochs``, ``--retrain-patience``, the epoch best on
    validation ``metric`` kept) on the benchmark's training rows; test-patient scores."""
    import torch

    from n2nas.artifacts import data_card
    from n2nas.retrain import RetrainConfig, fit_rows
    from n2nas.space import Pipeline

    space = get_space(SPACE)
    sample = {**space.space.default_sample(), **sample}
    config = RetrainConfig(epochs=args.retrain_epochs, patience=args.retrain_patience, seed=args.seed,
                           class_weight=args.class_weight)
    result = fit_rows(Pipeline(SPACE, sample, data_card(fitted)), fitted, train_idx, val_idx, config, metric,
                      torch.device("cpu"))
    probs = predict_rows(result.model, fitted, test_idx, fitted.multilabel, torch.device("cpu"))
    return {"train_s": result.train_seconds, "size": f"{sum(p.numel() for p in result.model.parameters())} params",
            "best_epoch": result.best_epoch, "epochs_run": len(result.history), "val": round(result.best_score, 4),
            **scores(probs, fitted.label_indices()[test_idx], fitted.classes)}


def searched(fitted: EHRDataset, config: SearchConfig, train_idx, val_idx, test_idx, args, out: Path,
             log) -> tuple[dict, dict]:
    """ENAS on the training + validation rows only (its own split of them checked to be the benchmark's), then the
    best pipeline retrained from scratch the way ``n2nas retrain`` does, keeping the epoch best on the search's
    own reward metric."""
    seen_idx = np.sort(np.concatenate([train_idx, val_idx]))
    seen = rows_of(fitted, seen_idx, "search")
    config = dataclasses.replace(config, budget_minutes=args.search_minutes, seed=args.seed, device="cpu")
    start = time.perf_counter()
    result = search(seen, config, out=out / f"search-{int(time.time())}")
    search_s = time.perf_counter() - start
    check_search_split(result.run_dir, seen_idx, train_idx, val_idx)
    best = result.best(1)[0]
    metric = best.scores.get("metric_name") or "macro_f1"
    log(f"search: {len(result.trials)} trials in {search_s:.0f} s, best {best.sample} ({metric})")
    s = best.sample
    row = {"method": f"searched MLP ({s['layers']} x {s['units']} {s['activation']}, dropout {s['dropout']})",
           **retrained(fitted, s, metric, train_idx, val_idx, test_idx, args)}
    return row, {"search_s": round(search_s, 1), "trials": len(result.trials), "sample": s, "metric": metric,
                 "run_dir": str(result.run_dir)}


def print_table(target: str, rows: list[dict]) -> None:
    """One fixed-width table."""
    print(f"\n== {target} ==")
    print(f"{'method':44s} {'accuracy':>8s} {'macro F1':>8s} {'macro AUROC':>11s} {'train s':>8s}  params/trees")
    for r in rows:
        print(f"{r['method']:44s} {r['accuracy']:8.4f} {r['macro_f1']:8.4f} {r['macro_auroc']:11.4f} "
              f"{r['train_s']:8.1f}  {r['size']}")


def print_gaps(gaps: list[dict]) -> None:
    """The searched MLP's test macro AUROC minus each other row's, with its 95% interval."""
    print("searched MLP's test macro AUROC minus each row's (paired bootstrap over test encounters, 95% interval):")
    for g in gaps:
        print(f"  {g['minus']:44s} {g['difference']:+.4f}  [{g['low']:+.4f}, {g['high']:+.4f}]")


def main() -> None:
    """Read times, then one table per target."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/diabetes130")
    ap.add_argument("--targets", default="chapter,readmitted30")
    ap.add_argument("--search-minutes", type=float, default=20.0)
    ap.add_argument("--units", default="64,256,512")
    ap.add_argument("--layers", default="2,4")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of each grid cell (DiagnoseNET's protocol)")
    ap.add_argument("--cell-minutes", type=float, default=None,
                    help="wall-time cap of each grid cell (DiagnoseNET's protocol; default: none)")
    ap.add_argument("--retrain-epochs", type=int, default=30,
                    help="epoch budget of the searched MLP's retrain (and of the grid cell retrained like it)")
    ap.add_argument("--retrain-patience", type=int, default=8,
                    help="the retrain stops after this many epochs without a better validation score")
    ap.add_argument("--class-weight", type=float, default=0.0,
                    help="power of the balanced class weights in the MLP retrains' loss (0 off, 0.5 sqrt, 1 balanced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: search, grid, baselines")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench-ehr-real")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    skip = set(args.skip.split(",")) - {""}

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    times = read_times(f"diabetes130:{args.data},chapter")
    print(f"read + encode {times['cold_s']} s cold, {times['warm_s']} s warm (cache)")
    report = {"read": times, "targets": {}}
    for target in args.targets.split(","):
        ds = load_dataset(f"diabetes130:{args.data},{target}")
        config = SearchConfig.ehr_cpu()
        train_idx, val_idx, test_idx = benchmark_split(ds, config, args.seed)
        shared = set(ds.groups[train_idx]) & set(ds.groups[test_idx])
        assert not shared, f"{len(shared)} patients on both sides"
        fitted = fit_on_training(ds, train_idx)
        log(f"{target}: {len(ds)} rows, {fitted.n_features} features, train/val/test {len(train_idx)}/"
            f"{len(val_idx)}/{len(test_idx)} rows, {len(np.unique(ds.groups[test_idx]))} test patients")
        rows, extra = [], {}
        if "search" not in skip:
            row, extra["search"] = searched(fitted, config, train_idx, val_idx, test_idx, args, out / target, log)
            rows.append(row)
            log(f"searched: {shown(row)}")
        if "grid" not in skip:
            row, extra["grid"] = grid_best(ds, args, val_share(config), out / target / "grid", log)
            rows.append(row)
            log(f"grid: {shown(row)}")
            if "search" not in skip:  # the grid's best shape retrained like the searched MLP: what the search adds
                cell = extra["grid"]["best_sample"]
                rows.append({"method": f"grid's best cell, n2nas retrain ({cell['layers']} x {cell['units']})",
                             **retrained(fitted, cell, extra["search"]["metric"], train_idx, val_idx, test_idx,
                                         args)})
                log(f"grid shape retrained: {shown(rows[-1])}")
        if "baselines" not in skip:
            rows += baselines(fitted, train_idx, test_idx, args.seed, log)
        print_table(target, rows)
        if "search" not in skip:
            extra["paired_gaps"] = paired_gaps(rows, fitted.label_indices()[test_idx], len(fitted.classes), log)
            print_gaps(extra["paired_gaps"])
        rows = [shown(r) for r in rows]
        report["targets"][target] = {"rows": rows, **extra, "n_test": int(len(test_idx)),
                                     "n_features": fitted.n_features}
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    exit_on_error(main, "ehr_real.py")
