"""Search 12-lead, multi-label PTB-XL records, retrain the winner, and score it on fold 9 next to a random-search
winner and hand-designed 12-lead nets, all retrained with one recipe and one budget.

Usage: python benchmarks/ptbxl.py [DIR] [--search-minutes 30] [--retrain-minutes 15] [--preset 12-lead]
       [--rows search,random,plain-cnn-12,resnet-12] [--space NAME] [--pipeline NAME=FILE ...] [--parallel 2]
       [--retrain-seeds 0,1,2] [--out FOLDER]

Protocol: records whose header says ``# fold: val`` (PTB-XL fold 9) are the test set; every other record (folds
1-8, ``# fold: train``) is dev. Searches and retrainings see only dev, each with its own seeded, stratified
validation split inside dev: the search picks its pipeline there, the retrain its epoch and the per-class decision
thresholds (maximising each class's F1). Fold 9 picks nothing; it is predicted once per model, at the end. Rows:

- ``n2nas search``: the preset's ENAS search (``--search-minutes``), its best pipeline retrained;
- ``random search``: the same search with ``--controller random`` and the same budget;
- ``plain-cnn-12`` and ``resnet-12``: the hand-designed 12-lead references (:mod:`search_spaces.twelve_lead`);
- ``--pipeline NAME=FILE``: any pipeline JSON, e.g. an earlier search's ``best_pipeline.json`` (no new search).

Columns: fold-9 macro AUROC (the PTB-XL benchmark's metric, over whole records), per-class AUROC, macro F1 at the
kept thresholds, parameters, GFLOPs per 10 s record as evaluated (every multi-crop window), train minutes. Then each
row's macro AUROC minus the best hand reference's on the same fold-9 records with a paired bootstrap 95% interval.
The best hand reference is the one with the higher fold-9 AUROC: the comparison a search has to win against, chosen
in the reference's favour. ``--retrain-seeds`` retrains every row once per seed (initialisation, batch order and the
validation split inside dev): the same pipeline retrained twice moved 0.926 -> 0.938 on fold 9, as much as the gaps
between rows, so the table then adds each row's mean and spread, and the intervals compare seed-mean AUROC.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.physionet2017 import (_run_all, by_row, pipeline_rows, print_seed_spread,  # noqa: E402
                                      retrain_and_predict, run_search, search_behaviour)
from n2nas.cli.options import parse_fixed  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import split_by_header  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from n2nas.measure.cost import pipeline_cost  # noqa: E402
from n2nas.metrics import evaluate_predictions, macro_auroc_ranks, paired_bootstrap  # noqa: E402
from n2nas.retrain import RetrainConfig  # noqa: E402
from n2nas.evaluation import load_thresholds  # noqa: E402
from n2nas.presets import named, presets_of  # noqa: E402
from n2nas.searching.loop import SearchConfig  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from search_spaces.ecg import fixed_pipelines  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptbxl-subset"
REFERENCES = ("plain-cnn-12", "resnet-12")
ROWS = ("search", "random") + REFERENCES
RECORD_SECONDS = 10.0  # PTB-XL records are 10 s


def dev_and_test(folder: str) -> tuple:
    """Folds 1-8 (dev) and fold 9 (test) of the folder, split by each header's ``# fold:`` comment."""
    return split_by_header(load_dataset(f"wfdb:{folder},{Path(folder) / 'labels.csv'}"), "val")


def cost(pipeline: Pipeline, n_classes: int) -> tuple[int, float]:
    """Parameters and GFLOPs per 10 s, 12-lead record as evaluated (every multi-crop window)."""
    found = pipeline_cost(pipeline, RECORD_SECONDS, 12, n_classes)
    return found["params"], found["flops_per_record"] / 1e9


def _search_job(folder: str, cfg: SearchConfig, out: str, threads: int) -> dict:
    """One search on the dev records (in its own process when rows run side by side)."""
    return run_search(dev_and_test(folder)[0], cfg, out, threads)


def _retrain_job(folder: str, pipeline_json: dict, out: str, cfg: RetrainConfig, threads: int) -> dict:
    """Retrain one pipeline on the dev records and score it once on fold 9 with its kept thresholds."""
    dev, test = dev_and_test(folder)
    summary, minutes, probs, y, pipeline = retrain_and_predict(dev, test, pipeline_json, out, cfg, threads)
    scores = evaluate_predictions(probs, y, test.classes, True, load_thresholds(out))
    return {"summary": summary, "minutes": minutes, "test": scores, "probs": probs, "y": y, "n_dev": len(dev),
            "n_test": len(test), "cost": cost(pipeline, len(dev.classes)), "sample": pipeline.sample}


def print_table(done: dict, classes: list[str]) -> None:
    """One row per model: fold-9 macro AUROC, per-class AUROC, macro F1, params, GFLOPs per record, minutes."""
    head = (f"{'pipeline':<14} {'leads':>5} {'params':>8} {'GFLOP/10s':>9} {'train min':>9} {'epochs':>6} "
            f"{'val AUROC':>9} {'AUROC':>6} " + " ".join(f"{c[:5]:>5}" for c in classes) + f" {'mF1':>5}")
    print(head)
    for name, row in done.items():
        s, (params, gflops) = row["test"], row["cost"]
        per = " ".join(f"{s['per_class_auroc'][c]:>5.3f}" for c in classes)
        print(f"{name:<14} {row['sample'].get('leads', 12):>5} {params:>8} {gflops:>9.3f} {row['minutes']:>9.1f} "
              f"{row['summary']['epochs_run']:>6} {row['summary']['validation']['macro_auroc']:>9.3f} "
              f"{s['macro_auroc']:>6.3f} {per} {s['macro_f1']:>5.3f}")


def seed_mean_auroc(probs, y) -> float:
    """Macro AUROC of ``probs`` (records x classes), or its mean over retrain seeds (records x seeds x classes)."""
    probs = np.asarray(probs)
    if probs.ndim == 2:
        return macro_auroc_ranks(y, probs)
    return float(np.mean([macro_auroc_ranks(y, probs[:, k]) for k in range(probs.shape[1])]))


def print_gaps(rows: dict) -> None:
    """Each row's fold-9 macro AUROC (its seeds' mean when ``probs`` has a seed axis) minus the best hand
    reference's, paired bootstrap 95% interval (each resample takes the same records for every seed)."""
    refs = [r for r in REFERENCES if r in rows]
    if not refs:
        return
    best = max(refs, key=lambda r: seed_mean_auroc(rows[r]["probs"], rows[r]["y"]))
    ref = rows[best]
    print(f"fold-9 macro AUROC minus {best}'s (the best hand reference) on the same {len(ref['y'])} records "
          f"(paired bootstrap over records, 95% interval):")
    for name, row in rows.items():
        if name != best:
            gap = paired_bootstrap(seed_mean_auroc, row["probs"], ref["probs"], ref["y"])
            print(f"  {name:<14} {gap['difference']:+.3f}  [{gap['low']:+.3f}, {gap['high']:+.3f}]")


def main() -> None:
    """Search (ENAS and random), retrain every row with one recipe, print the comparison on fold 9."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--preset", default="12-lead", choices=list(presets_of(SearchConfig)),
                    help="search preset (default 12-lead)")
    ap.add_argument("--search-minutes", type=float, default=30, help="budget of each search (default 30)")
    ap.add_argument("--retrain-minutes", type=float, default=15, help="budget of each retraining (default 15)")
    ap.add_argument("--epochs", type=int, default=60, help="retraining epochs at most (default 60)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows to run (default {','.join(ROWS)})")
    ap.add_argument("--flops-weight", type=float, default=None, help="FLOPs exponent of the reward (default: preset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default=None, help="search space of the searches (default: the preset's)")
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="pin a decision")
    ap.add_argument("--pipeline", action="append", default=[], metavar="NAME=FILE",
                    help="also retrain this pipeline JSON as row NAME")
    ap.add_argument("--retrain-seeds", default=None, metavar="S1,S2,...",
                    help="retrain every row once per seed; the gaps then compare seed-mean AUROC (default: --seed)")
    ap.add_argument("--out", default=None, help="keep run and model folders here (default: a temporary folder)")
    ap.add_argument("--parallel", type=int, default=1,
                    help="run the searches side by side, then every retraining side by side, each in its own process")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per job (default: all cores when --parallel 1, else 1)")
    args = ap.parse_args()
    rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(rows_wanted) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    if args.threads is None:
        import os

        args.threads = 1 if args.parallel > 1 else (os.cpu_count() or 1)
    extra_rows = pipeline_rows(ap, args.pipeline)
    try:
        seeds = [int(v) for v in args.retrain_seeds.split(",")] if args.retrain_seeds else [args.seed]
    except ValueError:
        ap.error(f"--retrain-seeds expects comma-separated integers, got {args.retrain_seeds!r}")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="n2nas-ptbxl-"))
    base = named(SearchConfig, args.preset)
    changes = {"seed": args.seed, "budget_minutes": args.search_minutes, "budget_epochs": None,
               "fixed": parse_fixed(args.fix)}
    if args.space is not None:
        changes["space"] = args.space
    if args.flops_weight is not None:
        changes["reward"] = dataclasses.replace(base.reward, flops_weight=args.flops_weight)
    cfg = dataclasses.replace(base, **changes)
    searches = _run_all({row: (_search_job, (args.folder, dataclasses.replace(cfg, controller=ctrl),
                                             str(work / f"{row}-run")))
                         for row, ctrl in (("search", "enas"), ("random", "random")) if row in rows_wanted},
                        args.parallel, args.threads)
    contenders = {("n2nas search" if row == "search" else "random search"): found["best"]
                  for row, found in searches.items()}
    fixed = fixed_pipelines()
    contenders.update({row: fixed[row] for row in REFERENCES if row in rows_wanted})
    contenders.update(extra_rows)
    if not contenders:
        ap.error("no row to retrain: name one in --rows or give --pipeline NAME=FILE")
    def label(name: str, seed: int) -> str:
        return name if len(seeds) == 1 else f"{name} s{seed}"

    jobs = {(name, s): (_retrain_job, (args.folder, pipeline, str(work / label(name, s).replace(" ", "-")),
                                       RetrainConfig(epochs=args.epochs, max_minutes=args.retrain_minutes, seed=s)))
            for s in seeds for name, pipeline in contenders.items()}
    # every row of one seed side by side (as with one seed), or --parallel jobs when that is more
    side_by_side = 1 if args.parallel <= 1 else max(args.parallel, len(contenders))
    results = _run_all(jobs, side_by_side, args.threads)
    done = {label(*key): result for key, result in results.items()}
    rows = by_row(results, "probs", "y", "macro_auroc", "auroc")
    first = next(iter(done.values()))
    classes = list(first["test"]["per_class_auroc"])
    print(f"dev (folds 1-8) {first['n_dev']} records, test (fold 9) {first['n_test']}; retrain <= "
          f"{args.retrain_minutes:g} min, <= {args.epochs} epochs each, seed(s) {','.join(map(str, seeds))}; "
          f"side by side: searches "
          f"{min(max(args.parallel, 1), len(searches))}, retrains {side_by_side}, {args.threads} torch thread(s) each")
    for row, found in searches.items():
        print(f"{row} search: {found['minutes']:.1f} min wall, {len(found['trials'])} children scored, "
              f"preset {args.preset}")
    print_table(done, classes)
    if len(seeds) > 1:
        print_seed_spread(rows, "auroc", "fold-9 macro AUROC", width=14)
    print_gaps(rows)
    for name, row in done.items():
        print(f"{name} thresholds (chosen on its dev validation split): "
              f"{json.dumps({k: round(v, 2) for k, v in row['test']['thresholds'].items()})}")
    for row, found in searches.items():
        print(f"{row} search behaviour: {json.dumps(search_behaviour(found['trials']))}")
        print(f"{row} best pipeline: {json.dumps(found['best']['sample'])}")
    (work / "results.json").write_text(json.dumps(
        {name: {"test": row["test"], "minutes": row["minutes"], "params": row["cost"][0], "gflops": row["cost"][1],
                "sample": row["sample"], "validation": row["summary"]["validation"]} for name, row in done.items()},
        indent=1, default=str))


if __name__ == "__main__":
    exit_on_error(main, "ptbxl.py")
