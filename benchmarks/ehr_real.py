"""Real EHR (UCI Diabetes 130-US hospitals): searched MLP vs DiagnoseNET's grid vs scikit-learn baselines.

For each target (``chapter``, ``readmitted30``, ``readmitted``) every method gets the same encoded features
(:mod:`n2nas.data.table`, encoder fitted on the training rows only) and the same split by ``patient_nbr``
(:func:`n2nas.train.rows.split_indices`, seeded: 15% test patients, then the ``ehr-cpu`` search's own validation
share, 20%, of the rest: 68% train, 17% validation; the search's run folder's ``split.json`` is checked to hold
exactly these training and validation rows, and the grid's cells get the same validation rows):

- searched MLP: ``n2nas search --preset ehr-cpu`` (ENAS over ``ehr-mlp-small``, reward validation macro AUROC) on
  the training + validation rows only, then its best pipeline retrained from scratch as ``n2nas retrain`` does
  (:func:`n2nas.models.retrain.fit_rows`: Adam, lr decayed linearly to zero over ``--retrain-epochs`` epochs, never a wall cap, so
  the result does not depend on the machine's load; stopped after ``--retrain-patience`` epochs without a better
  validation macro AUROC; the best epoch kept; ``--class-weight`` weights its loss by balanced class weights
  raised to that power);
- grid: DiagnoseNET's layers x units cells (Adam 0.001, relu, dropout 0.2, batch 768, early stopping on
  validation macro F1); the reported cell is the best on *validation* macro F1, never chosen on test;
- the grid's best cell retrained exactly like the searched MLP (when both run): it separates what the search's
  choice adds from what the retrain recipe adds;
- LogisticRegression (lbfgs, multinomial, C=1, on the sparse matrix);
- HistGradientBoostingClassifier (early stopping on 10% of the training rows), which needs a dense matrix: it
  gets a dense copy of the training rows only (the benchmark's baseline, not the n2nas path);
- ``--pipeline NAME=FILE``: an ``ehr-mlp-small`` pipeline JSON retrained like the searched MLP;
- with a family (``--flops-targets``): each member folder of the search as written (inherited, and fine-tuned when
  the search fine-tuned it) and, with ``--retrain-members``, each member retrained like the searched MLP.

``--retrain-seeds`` retrains every MLP row once per seed (initialisation and batch order; the split stays
``--seed``'s) and compares seed means; ``--parallel`` runs those retrains side by side in processes.

Scores on the test patients: accuracy, macro F1, macro AUROC (one-vs-rest, classes absent from the test rows
left out), then the searched MLP's (without a search: the first ``--pipeline`` row's) macro AUROC minus each other
row's on the same test encounters with a paired percentile-bootstrap 95% interval, then the Pareto table of every
row (:func:`benchmarks.scoring.pareto_table`; FLOPs per encounter; logistic regression counted as the dense linear
layer it is, the boosted trees have no FLOPs), drawn as ``report.png`` in ``--out`` (one panel per target). Also
prints the cold and warm read times of the table (parse + encode, then the cache), each wall-clock figure with the
load average at its start and end.

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

import n2nas  # noqa: E402
from benchmarks.common import add_options, finish_options, load_avg, load_span, member_rows, run_jobs  # noqa: E402
from benchmarks.common import search_config  # noqa: E402
from benchmarks.ehr_baselines import baselines, scores, shown  # noqa: E402
from benchmarks.scoring import (by_row, folder_cost, format_pareto, module_cost,  # noqa: E402
                                paired_gap, pareto_table, plot_pareto, print_seed_spread)
from n2nas.data.ehr_matrix import EHRDataset  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import Split  # noqa: E402
from n2nas.data.table import fit_on_training  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from n2nas.models.evaluate import predict  # noqa: E402
from n2nas.grid.cells import GridConfig, run_grid  # noqa: E402
from n2nas.metrics import macro_auroc_counts, macro_auroc_ranks  # noqa: E402
from n2nas.searching.family import read_family  # noqa: E402
from n2nas.searching.loop import SearchConfig, search  # noqa: E402
from n2nas.train.rows import predict_rows, split_indices  # noqa: E402
from search_spaces import get_space  # noqa: E402
from n2nas.grid.cells import TEST_PROBS  # noqa: E402

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


def check_search_split(run_dir: Path, seen_idx: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    """The search's saved split (ids ``p<i>`` of the rows it saw, ``seen_idx``) is the benchmark's own."""
    split = Split.load(run_dir / "split.json")
    for name, part, mine in (("train", split.train, train_idx), ("val", split.val, val_idx)):
        rows = np.sort(seen_idx[[int(i[1:]) for i in part]])
        assert np.array_equal(rows, mine), f"the search's {name} rows differ from the benchmark's"


def read_times(spec: str) -> dict[str, float]:
    """Cold (fresh cache: parse + encode + store) and warm (cache) seconds of ``load_dataset(spec)``, and the load
    average at start and end."""
    root = Path(tempfile.mkdtemp(prefix="n2nas-read-"))
    load0 = load_avg()
    try:
        start = time.perf_counter()
        load_dataset(spec, cache_root=root)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(spec, cache_root=root)
        return {"cold_s": round(cold, 2), "warm_s": round(time.perf_counter() - start, 3), "load": (load0, load_avg())}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rows_of(ds: EHRDataset, idx: np.ndarray, tag: str) -> EHRDataset:
    """These rows as a dataset of their own, already encoded (``table=None``: not re-read or refitted)."""
    return dataclasses.replace(ds, X=ds.X[idx], y=ds.y[idx], groups=ds.groups[idx], table=None,
                               source=f"{ds.source}[{tag}]", fingerprint=f"{ds.fingerprint}-{tag}")


def auroc_of(probs, labels) -> float:
    """Macro AUROC (one-vs-rest, rank-based) of single-label probabilities against class indices."""
    probs = np.asarray(probs)
    return macro_auroc_ranks(np.eye(probs.shape[-1], dtype=bool)[labels], probs)


def auroc_counts(probs, labels, counts) -> np.ndarray:
    """:func:`auroc_of` of many resamples of the test encounters at once, given as draw counts (resamples x
    encounters): :func:`n2nas.metrics.macro_auroc_counts`."""
    probs = np.asarray(probs)
    return macro_auroc_counts(np.eye(probs.shape[-1], dtype=bool)[labels], probs, counts)


def paired_gaps(rows: dict[str, dict], first: str, log, n_resamples: int = 1000) -> list[dict]:
    """Row ``first``'s (the searched MLP's) test macro AUROC minus each other row's (seed means), with a paired
    percentile-bootstrap 95% interval over the test encounters (:func:`benchmarks.scoring.paired_gap`, resamples
    scored as draw counts). Not BCa: its jackknife would score each of the ~12,000 leave-one-out sets, about 20
    minutes a gap on one core."""
    gaps = []
    for name, row in rows.items():
        if name != first:
            gaps.append({"minus": name, **paired_gap(auroc_of, rows[first], row, n_resamples, method="percentile",
                                                     counted=auroc_counts)})
            log(f"gap: {gaps[-1]}")
    return gaps


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
    """``sample`` trained from scratch as ``n2nas retrain`` trains an EHR pipeline (:func:`n2nas.models.retrain.fit_rows`:
    Adam, lr decayed linearly to zero over ``--retrain-epochs``, ``--retrain-patience``, the epoch best on
    validation ``metric`` kept) on the benchmark's training rows; test-patient scores."""
    import torch

    from n2nas.models.folder import data_card
    from n2nas.models.retrain import RetrainConfig, fit_rows
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


def mlp_job(fitted: EHRDataset, sample: dict, metric: str, idx: tuple, args, seed: int) -> dict:
    """:func:`retrained` with retrain seed ``seed`` (the split stays ``--seed``'s), with the load average at its
    start and end."""
    load0 = load_avg()
    row = retrained(fitted, sample, metric, *idx, argparse.Namespace(**{**vars(args), "seed": seed}))
    return {**row, "load": (load0, load_avg())}


def mlp_cost(sample: dict, n_features: int, n_classes: int) -> dict:
    """Params, FLOPs and CPU latency per encounter of an ``ehr-mlp-small`` sample's network."""
    space = get_space(SPACE)
    model = space.build_child({**space.space.default_sample(), **sample}, n_features, n_classes)
    return module_cost(model, (n_features,))


def searched(fitted: EHRDataset, config: SearchConfig, train_idx, val_idx, args, out: Path, log) -> dict:
    """ENAS on the training + validation rows only (its own split of them checked to be the benchmark's): its best
    sample, the reward metric (which the retrains keep their best epoch on), run folder, family and minutes."""
    seen_idx = np.sort(np.concatenate([train_idx, val_idx]))
    seen = rows_of(fitted, seen_idx, "search")
    config = dataclasses.replace(config, budget_minutes=args.search_minutes, seed=args.seed, device="cpu")
    load0, start = load_avg(), time.perf_counter()
    result = search(seen, config, out=out / f"search-{int(time.time())}")
    search_s = time.perf_counter() - start
    check_search_split(result.run_dir, seen_idx, train_idx, val_idx)
    best = result.best(1)[0]
    metric = best.scores.get("metric_name") or "macro_f1"
    log(f"search: {len(result.trials)} trials in {search_s:.0f} s, best {best.sample} ({metric})")
    return {"search_s": round(search_s, 1), "load": (load0, load_avg()), "trials": len(result.trials),
            "sample": best.sample, "metric": metric, "run_dir": str(result.run_dir),
            "family": read_family(result.run_dir)}


def print_table(target: str, rows: list[dict]) -> None:
    """One fixed-width table: a line per row and retrain seed."""
    print(f"\n== {target} ==")
    print(f"{'method':52s} {'accuracy':>8s} {'macro F1':>8s} {'macro AUROC':>11s} {'train s':>8s} {'load':>14s}"
          "  params/trees")
    for r in rows:
        print(f"{r['method']:52s} {r['accuracy']:8.4f} {r['macro_f1']:8.4f} {r['macro_auroc']:11.4f} "
              f"{r['train_s']:8.1f} {load_span(r['load']):>14s}  {r['size']}")


def print_gaps(gaps: list[dict], first: str) -> None:
    """The searched MLP's test macro AUROC minus each other row's, with its 95% interval."""
    print(f"{first}'s test macro AUROC minus each row's (seed means; paired percentile bootstrap over test "
          f"encounters, 95%):")
    for g in gaps:
        print(f"  {g['minus']:52s} {g['difference']:+.4f}  [{g['low']:+.4f}, {g['high']:+.4f}]")


def mlp_name(prefix: str, s: dict) -> str:
    """A row name that shows the MLP's shape."""
    return f"{prefix} ({s.get('layers')} x {s.get('units')} {s.get('activation', 'relu')}, dropout {s.get('dropout')})"


def run_target(target: str, args, out: Path, skip: set, log) -> tuple[dict, list[dict]]:
    """Every row of one target: ``(report entry, Pareto table)``."""
    load_start = load_avg()
    ds = load_dataset(f"diabetes130:{args.folder},{target}")
    config = search_config(args, SearchConfig.ehr_cpu())
    train_idx, val_idx, test_idx = benchmark_split(ds, config, args.seed)
    shared = set(ds.groups[train_idx]) & set(ds.groups[test_idx])
    assert not shared, f"{len(shared)} patients on both sides"
    fitted = fit_on_training(ds, train_idx)
    y_test, idx = fitted.label_indices()[test_idx], (train_idx, val_idx, test_idx)
    n_in, n_out = fitted.n_features, len(fitted.classes)
    log(f"{target}: {len(ds)} rows, {fitted.n_features} features, train/val/test {len(train_idx)}/"
        f"{len(val_idx)}/{len(test_idx)} rows, {len(np.unique(ds.groups[test_idx]))} test patients")
    single, mlps, kinds, costs, extra = {}, {}, {}, {}, {}  # rows without and with retrain seeds
    metric = "macro_auroc"
    if "search" not in skip:
        extra["search"] = found = searched(fitted, config, train_idx, val_idx, args, out / target, log)
        metric = found["metric"]
        name = mlp_name("searched MLP", found["sample"])
        mlps[name], kinds[name] = found["sample"], "search"
        test_rows = rows_of(fitted, test_idx, "test")
        for label, entry in (m for member in found["family"] for m in member_rows(
                f"member {member['name'].removeprefix('flops-')}", member).items()):
            probs, _ = predict(entry["model_dir"], test_rows)
            single[label] = {"method": label, "train_s": 0.0, "load": (load_avg(), load_avg()), "size": "folder",
                             **scores(probs, y_test, fitted.classes)}
            kinds[label], costs[label] = entry["kind"], folder_cost(entry["model_dir"], 30.0)
        if args.retrain_members:
            for member in found["family"]:
                name = f"member {member['name'].removeprefix('flops-')} retrained"
                mlps[name] = n2nas.load_pipeline(Path(member["model_dir"]) / "pipeline.json").sample
                kinds[name] = "retrained"
    if "grid" not in skip:
        load0 = load_avg()
        row, extra["grid"] = grid_best(ds, args, val_share(config), out / target / "grid", log)
        single[row["method"]] = {**row, "load": (load0, load_avg())}
        kinds[row["method"]], costs[row["method"]] = "reference", mlp_cost(extra["grid"]["best_sample"], n_in, n_out)
        if "search" not in skip:  # the grid's best shape retrained like the searched MLP: what the search adds
            cell = extra["grid"]["best_sample"]
            name = f"grid's best cell, n2nas retrain ({cell['layers']} x {cell['units']})"
            mlps[name], kinds[name] = cell, "reference"
    for name, pipeline in args.extra_rows.items():
        mlps[name], kinds[name] = pipeline["sample"], "pipeline"
    done = run_jobs({(name, s): (mlp_job, (fitted, sample, metric, idx, args, s))
                     for name, sample in mlps.items() for s in args.seeds}, args.parallel, args.threads)
    costs.update({name: mlp_cost(sample, n_in, n_out) for name, sample in mlps.items()})
    if "baselines" not in skip:
        for row in baselines(fitted, train_idx, test_idx, args.seed, log):
            single[row["method"]], kinds[row["method"]], costs[row["method"]] = row, "reference", row.pop("cost")
    lines = [{**r, "method": name + (f" s{s}" if len(args.seeds) > 1 else "")} for (name, s), r in done.items()]
    lines += list(single.values())
    print_table(target, lines)
    results = {key: {"pred": r["probs"], "y": y_test, "test": r} for key, r in done.items()}
    results.update({(name, args.seed): {"pred": r["probs"], "y": y_test, "test": r} for name, r in single.items()})
    rows = by_row(results, "macro_auroc", kinds)
    if len(args.seeds) > 1:
        print_seed_spread(rows, "test macro AUROC", width=52)
    # the searched MLP, or without a search the first --pipeline row (e.g. an earlier search's best_pipeline.json)
    first = next((name for kind_wanted in ("search", "pipeline") for name, kind in kinds.items()
                  if kind == kind_wanted), None)
    if first:
        extra["paired_gaps"] = paired_gaps(rows, first, log)
        print_gaps(extra["paired_gaps"], first)
    table = pareto_table(rows, auroc_of, costs, counted=auroc_counts)
    print(format_pareto(table, "AUROC", "row", f"{target}, seed mean over the retrain seeds of each MLP row"))
    print(f"  CPU latency measured during this target, at {load_span((load_start, load_avg()))}")
    return {"rows": [shown(r) for r in lines], **extra, "n_test": int(len(test_idx)), "n_features": n_in,
            "pareto": table}, table


def main() -> None:
    """Read times, then one table per target and the Pareto tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(ap, data="../shared/data/diabetes130", data_flag="--data", search_minutes=20.0, epochs=30,
                epochs_flag="--retrain-epochs", retrain_cap=False, threads=1, out="runs/bench-ehr-real")
    ap.add_argument("--targets", default="chapter,readmitted30")
    ap.add_argument("--units", default="64,256,512")
    ap.add_argument("--layers", default="2,4")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of each grid cell (DiagnoseNET's protocol)")
    ap.add_argument("--cell-minutes", type=float, default=None,
                    help="wall-time cap of each grid cell (DiagnoseNET's protocol; default: none)")
    ap.add_argument("--retrain-patience", type=int, default=8,
                    help="the retrain stops after this many epochs without a better validation score")
    ap.add_argument("--class-weight", type=float, default=0.0,
                    help="power of the balanced class weights in the MLP retrains' loss (0 off, 0.5 sqrt, 1 balanced)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: search, grid, baselines")
    args = finish_options(ap, ap.parse_args())
    for name, pipeline in args.extra_rows.items():
        if pipeline["space"] != SPACE:
            ap.error(f"--pipeline {name}: an {SPACE} pipeline is needed, got space {pipeline['space']!r}")
    from n2nas.train.numerics import use_cpu_threads

    use_cpu_threads(args.threads)
    out = Path(args.out)
    skip = set(args.skip.split(",")) - {""}

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    print(f"load average at start {load_avg():.1f}; MLP retrains: {args.retrain_epochs} epochs each (no wall cap), "
          f"retrain seed(s) {','.join(map(str, args.seeds))}")
    times = read_times(f"diabetes130:{args.folder},chapter")
    print(f"read + encode {times['cold_s']} s cold, {times['warm_s']} s warm (cache) ({load_span(times['load'])})")
    report, tables = {"read": times, "targets": {}}, {}
    for target in args.targets.split(","):
        report["targets"][target], tables[f"diabetes130 {target}"] = run_target(target, args, out, skip, log)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"plot: {plot_pareto(tables, out / 'report.png', 'macro AUROC', 'encounter')}; load average at end "
          f"{load_avg():.1f}")
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    exit_on_error(main, "ehr_real.py")
