"""Search 12-lead, multi-label PTB-XL records, retrain the winner, and score it on held-out folds next to a
random-search winner and hand-designed 12-lead nets, all retrained with one recipe and one epoch budget.

Usage: python benchmarks/ptbxl.py [DIR] [--search-minutes 30] [--epochs 60] [--retrain-minutes CAP]
       [--preset 12-lead] [--rows search,random,plain-cnn-12,resnet-12] [--space NAME] [--pipeline NAME=FILE ...]
       [--test-folds 9] [--folds FILE] [--retrain-seeds 0,1,2] [--retrain-members] [--parallel 2] [--out FOLDER]

Protocol: each fold of ``--test-folds`` (default 9; any of PTB-XL's folds 1-9) is in turn the test set, and folds
1-9 without it are that fold's dev records. Fold 10 is never read: it is kept aside. The searches see only the
folds outside every test fold (one search, whichever fold is scored), each with its own seeded, stratified
validation split: the search picks its pipeline there. Every row is then retrained on each test fold's dev records
(its epoch and per-class decision thresholds chosen on a validation split inside them) and predicts its test fold
once. A record's fold is its header's ``# fold:`` comment (a number, or the subset's ``val`` = fold 9 and
``train`` = one of folds 1-8), or its ``strat_fold`` in ``--folds FILE`` (a CSV with ``record`` or ``ecg_id`` and
``strat_fold`` or ``fold`` columns, such as PTB-XL's ``ptbxl_database.csv``); a test fold of 1-8 needs the latter
when the headers only say ``train``. Every retrain runs ``--epochs`` epochs (no wall cap unless
``--retrain-minutes``). Rows:

- ``n2nas search``: the preset's ENAS search (``--search-minutes``), its best pipeline retrained;
- ``random search``: the same search with ``--controller random`` and the same budget;
- ``plain-cnn-12`` and ``resnet-12``: the hand-designed 12-lead references (:mod:`search_spaces.references`);
- ``--pipeline NAME=FILE``: any pipeline JSON, e.g. an earlier search's ``best_pipeline.json`` (no new search);
- with a family (``--flops-targets``): each member folder as the search wrote it (inherited, and fine-tuned when
  the search fine-tuned it) and, with ``--retrain-members``, retrained from scratch like every other row.

Columns: macro AUROC on the test fold (the PTB-XL benchmark's metric, over whole records), per-class AUROC, macro
F1 at the kept thresholds, parameters, GFLOPs per 10 s record as evaluated (every multi-crop window), train
minutes. With several test folds a row's score is the *mean* of its per-fold scores (each fold scored by the model
that did not see it; the bootstrap resamples records within each fold). Then each row's score minus the best hand
reference's on the same records with a paired bootstrap 95% interval: the best hand reference is the one with the
higher test score, the comparison a search has to win, chosen in the reference's favour. ``--retrain-seeds``
retrains every row once per seed (initialisation, batch order and the validation split inside dev); the table
then adds each row's seed mean and spread, and the intervals compare seed-mean AUROC. Last, the Pareto table of
every row (:func:`benchmarks.scoring.pareto_table`), drawn as ``report.png`` in the ``--out`` folder.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import n2nas  # noqa: E402
from benchmarks.common import (add_options, budget_line, finish_options, folder_job, load_avg, load_span,  # noqa: E402
                               print_searches, retrain_config, retrain_job, run_jobs,
                               rows_to_score, search_behaviour, search_config, search_jobs)
from benchmarks.scoring import (by_row, folder_cost, format_pareto, paired_gap, pareto_table,  # noqa: E402
                                plot_pareto, print_seed_spread, row_score)
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.errors import DataError, exit_on_error  # noqa: E402
from n2nas.metrics import macro_auroc_ranks  # noqa: E402
from n2nas.presets import named, presets_of  # noqa: E402
from n2nas.searching.loop import SearchConfig  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptbxl-subset"
REFERENCES = ("plain-cnn-12", "resnet-12")
ROWS = ("search", "random") + REFERENCES
RECORD_SECONDS = 10.0  # PTB-XL records are 10 s
KEPT_ASIDE = 10  # PTB-XL's fold 10 is never read here
HEADER_FOLDS = {"val": 9, "train": None}  # the subset's headers: fold 9, or one of folds 1-8 (which one unknown)


def read_folds(dataset, folds_file: str | None = None) -> dict[str, int | None]:
    """Each record's PTB-XL fold: from ``folds_file`` (``record`` or ``ecg_id``, and ``strat_fold`` or ``fold``)
    when given, else from its ``# fold:`` header comment; None where only "one of folds 1-8" is known."""
    if folds_file:
        with open(folds_file, newline="") as fh:
            table = list(csv.DictReader(fh))
        key = next((k for k in ("record", "ecg_id") if table and k in table[0]), None)
        col = next((k for k in ("strat_fold", "fold") if table and k in table[0]), None)
        if key is None or col is None:
            raise DataError(folds_file, "needs a record or ecg_id column and a strat_fold or fold column")
        by_key = {str(int(float(r[key]))) if key == "ecg_id" else r[key]: int(float(r[col])) for r in table}
    folds = {}
    for record in dataset.records:
        header = record.meta.get("header") or {}
        if folds_file:
            found = by_key.get(str(header.get("ecg_id")) if key == "ecg_id" else record.id)
            if found is None:
                raise DataError(folds_file, f"has no fold for record {record.id}")
            folds[record.id] = found
            continue
        value = header.get("fold")
        if value is None or not (value.isdigit() or value in HEADER_FOLDS):
            raise DataError((record.meta.get("files") or [record.id])[0],
                            f"record {record.id} has no '# fold:' header comment (a number, val or train)")
        folds[record.id] = int(value) if value.isdigit() else HEADER_FOLDS[value]
    return folds


def fold_split(folder: str, test_folds: tuple[int, ...], fold: int | None, folds_file: str | None = None) -> tuple:
    """``(dev, test)``: for a test ``fold``, that fold and folds 1-9 without it; for ``fold`` None (the searches'
    records), folds 1-9 without every one of ``test_folds`` and no test set. Fold 10 is left out."""
    data = load_dataset(f"wfdb:{folder},{Path(folder) / 'labels.csv'}")
    folds = read_folds(data, folds_file)
    if any(f is None for f in folds.values()) and set(test_folds) - {9}:
        raise DataError(folder, f"test fold(s) {sorted(set(test_folds) - {9})}: the headers only say 'train' for "
                                "folds 1-8; give --folds FILE with each record's strat_fold")
    usable = {r: f for r, f in folds.items() if f != KEPT_ASIDE}
    left_out = set(test_folds) if fold is None else {fold}
    dev = [r for r, f in usable.items() if f not in left_out]
    test = [r for r, f in usable.items() if f == fold]
    if not dev or (fold is not None and not test):
        raise DataError(folder, f"fold {fold} leaves {len(dev)} dev and {len(test)} test records")
    return data.subset(dev), (data.subset(test) if fold is not None else None)


def dev_and_test(folder: str) -> tuple:
    """Folds 1-8 (dev) and fold 9 (test) of the folder: :func:`fold_split` with the default test fold."""
    return fold_split(folder, (9,), 9)


def auroc_of(probs, y) -> float:
    """Macro AUROC over whole records of multi-label probabilities (records x classes)."""
    return macro_auroc_ranks(y, probs)


def label(key: tuple, seeds: list[int], folds: list[int]) -> str:
    """A model's name in the per-model table: the row, then its seed and fold when there are several."""
    name, seed, fold = key
    return name + (f" s{seed}" if len(seeds) > 1 else "") + (f" f{fold}" if len(folds) > 1 else "")


def print_table(done: dict, costs: dict, classes: list[str], seeds: list[int], folds: list[int]) -> None:
    """One line per model: test macro AUROC, per-class AUROC, macro F1, params, GFLOPs per record, minutes."""
    print(f"{'pipeline':<20} {'leads':>5} {'params':>8} {'GFLOP/10s':>9} {'train min':>9} {'load':>14} {'epochs':>6} "
          f"{'val AUROC':>9} {'AUROC':>6} " + " ".join(f"{c[:5]:>5}" for c in classes) + f" {'mF1':>5}")
    for key, row in done.items():
        s, cost = row["test"], costs[key[0]]
        val = row["summary"]["validation"].get("macro_auroc")
        per = " ".join(f"{s['per_class_auroc'][c]:>5.3f}" for c in classes)
        leads = n2nas.load_pipeline(Path(row["model_dir"]) / "pipeline.json").sample.get("leads", 12)
        print(f"{label(key, seeds, folds):<20} {leads:>5} {cost['params']:>8} {cost['flops_per_record'] / 1e9:>9.3f} "
              f"{row['minutes']:>9.1f} {load_span(row['load']):>14} {row['summary']['epochs_run']:>6} "
              f"{val if val is None else round(val, 3)!s:>9} {s['macro_auroc']:>6.3f} {per} {s['macro_f1']:>5.3f}")


def print_gaps(rows: dict, what: str = "fold-9") -> None:
    """Each row's test macro AUROC (mean over seeds, then folds) minus the best hand reference's, paired bootstrap
    95% interval (each resample takes the same records for every seed)."""
    refs = [r for r in REFERENCES if r in rows]
    if not refs:
        return
    best = max(refs, key=lambda r: row_score(auroc_of, rows[r]["preds"], rows[r]["ys"]))
    ref = rows[best]
    print(f"{what} macro AUROC minus {best}'s (the best hand reference) on the same "
          f"{sum(len(y) for y in ref['ys'])} records (paired bootstrap over records, 95% interval):")
    for name, row in rows.items():
        if name != best:
            gap = paired_gap(auroc_of, row, ref)
            print(f"  {name:<20} {gap['difference']:+.3f}  [{gap['low']:+.3f}, {gap['high']:+.3f}]")


def main() -> None:
    """Search (ENAS and random), retrain every row with one recipe per test fold, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(ap, data=str(DEFAULT_DIR), search_minutes=30, epochs=60, rows=ROWS)
    ap.add_argument("--preset", default="12-lead", choices=list(presets_of(SearchConfig)), help="search preset (default 12-lead)")
    ap.add_argument("--flops-weight", type=float, default=None, help="FLOPs exponent of the reward (default: preset)")
    ap.add_argument("--space", default=None, help="search space of the searches (default: the preset's)")
    ap.add_argument("--test-folds", default="9", metavar="F1,F2,...",
                    help="PTB-XL folds (1-9) scored in turn, each with folds 1-9 without it as dev (default 9)")
    ap.add_argument("--folds", default=None, metavar="FILE",
                    help="CSV of each record's fold (record or ecg_id; strat_fold or fold), e.g. ptbxl_database.csv")
    args = finish_options(ap, ap.parse_args(), ROWS)
    try:
        test_folds = sorted({int(v) for v in args.test_folds.split(",") if v.strip()})
    except ValueError:
        ap.error(f"--test-folds expects comma-separated fold numbers, got {args.test_folds!r}")
    if not test_folds or not set(test_folds) <= set(range(1, 10)):
        ap.error(f"--test-folds takes folds 1-9 (fold {KEPT_ASIDE} is kept aside), got {args.test_folds!r}")
    load_start = load_avg()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="n2nas-ptbxl-"))
    cfg = search_config(args, named(SearchConfig, args.preset))
    search_split = (fold_split, (args.folder, tuple(test_folds), None, args.folds))
    searches = run_jobs(search_jobs(args, search_split, cfg, work), args.parallel, args.threads)
    contenders, kinds, folders = rows_to_score(searches, args, REFERENCES)
    if not contenders and not folders:
        ap.error("no row to retrain: name one in --rows or give --pipeline NAME=FILE")
    splits = {f: (fold_split, (args.folder, tuple(test_folds), f, args.folds)) for f in test_folds}
    jobs = {(name, s, f): (retrain_job, (splits[f], pipeline,
                                         str(work / label((name, s, f), args.seeds, test_folds).replace(" ", "-")),
                                         retrain_config(args, s, name)))
            for f in test_folds for s in args.seeds for name, pipeline in contenders.items()}
    jobs.update({(name, args.seeds[0], f): (folder_job, (splits[f], entry["model_dir"], entry["validation"]))
                 for f in test_folds for name, entry in folders.items()})
    # every row of one seed side by side (as with one seed), or --parallel jobs when that is more
    side_by_side = 1 if args.parallel <= 1 else max(args.parallel, len(contenders))
    done = run_jobs(jobs, side_by_side, args.threads)
    rows = by_row(done, "macro_auroc", kinds)
    load_costs = load_avg()
    costs = {name: folder_cost(next(r["model_dir"] for k, r in done.items() if k[0] == name), RECORD_SECONDS)
             for name in rows}
    first = next(iter(done.values()))
    classes = list(first["test"]["per_class_auroc"])
    what = f"test-fold {','.join(map(str, test_folds))}" if len(test_folds) > 1 else f"fold-{test_folds[0]}"
    print(f"test fold(s) {','.join(map(str, test_folds))} (each scored with folds 1-9 without it as dev; fold "
          f"{KEPT_ASIDE} unused); first fold: dev {first['n_dev']} records, test {first['n_test']}; "
          f"{budget_line(args)}; side by side: searches {min(max(args.parallel, 1), max(len(searches), 1))}, "
          f"retrains {side_by_side}, {args.threads} torch thread(s) each; load average at start {load_start:.1f}")
    print_searches(searches, args.preset)
    print_table(done, costs, classes, args.seeds, test_folds)
    if len(args.seeds) > 1:
        print_seed_spread(rows, f"{what} macro AUROC", width=20)
    print_gaps(rows, what)
    for key, row in done.items():
        if row["test"].get("thresholds"):
            print(f"{label(key, args.seeds, test_folds)} thresholds (chosen on its dev validation split): "
                  f"{json.dumps({k: round(v, 2) for k, v in row['test']['thresholds'].items()})}")
    for row, found in searches.items():
        print(f"{row} search behaviour: {json.dumps(search_behaviour(found['trials']))}")
        print(f"{row} best pipeline: {json.dumps(found['best']['sample'])}")
    table = pareto_table(rows, auroc_of, costs)
    how = (f"mean over test folds {','.join(map(str, test_folds))} of each fold's score" if len(test_folds) > 1
           else f"test fold {test_folds[0]}") + f", seed mean over {len(args.seeds)} retrain seed(s)"
    print(format_pareto(table, "AUROC", "10s", how))
    print(f"  CPU latency measured at {load_span((load_costs, load_avg()))}; "
          f"load average at end {load_avg():.1f}")
    print(f"plot: {plot_pareto({f'PTB-XL, {what}': table}, work / 'report.png', 'macro AUROC', '10 s')}")
    (work / "results.json").write_text(json.dumps(
        {label(key, args.seeds, test_folds): {
            "test": row["test"], "minutes": row["minutes"], "load": row["load"], "fold": key[2],
            "params": costs[key[0]]["params"], "gflops": costs[key[0]]["flops_per_record"] / 1e9,
            "sample": n2nas.load_pipeline(Path(row["model_dir"]) / "pipeline.json").sample,
            "validation": row["summary"]["validation"], "model_dir": row["model_dir"]} for key, row in done.items()}
        | {"pareto": table}, indent=1, default=str))


if __name__ == "__main__":
    exit_on_error(main, "ptbxl.py")
