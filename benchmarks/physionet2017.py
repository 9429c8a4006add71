"""Search on the PhysioNet 2017 development folder, retrain the winner, and score it on held-out records next to
hand-designed pipelines and a random-search winner, all retrained with one recipe and one epoch budget.

Usage: python benchmarks/physionet2017.py [DIR] [--search-minutes 60] [--epochs 60] [--retrain-minutes CAP]
       [--preset cpu-hour] [--rows search,random,plain-cnn,hannun] [--pipeline NAME=FILE ...]
       [--retrain-seeds 0,1,2] [--retrain-members] [--parallel 2 --threads 1] [--out FOLDER]

Protocol: the folder is split once (seeded, stratified, by record) into dev (85%) and held-out test (15%).
Searches and retrainings see only dev (each with its own validation split inside dev); the test records are
touched once per model, at the end. Every retrain runs ``--epochs`` epochs (its lr schedule over them; a
``--retrain-minutes`` wall cap is off unless given), so the machine's load does not change a result. Rows:

- ``n2nas search``: the preset's ENAS search (``--search-minutes``), its best pipeline retrained;
- ``random search``: the same search with ``--controller random`` and the same budget;
- ``plain-cnn``: the hand-designed 6-layer CNN of ``ecg-small`` (:func:`search_spaces.references.plain_cnn_sample`);
- ``hannun``: the Hannun / DiagnoseNET residual network (``ecg-hannun``);
- ``--pipeline NAME=FILE``: any pipeline JSON, e.g. an earlier search's ``best_pipeline.json`` (no new search);
- with a family (``--preset cpu-3h``, or ``--flops-targets``): every member folder of each search's family as the
  search wrote it (no training: ``search 0.33G inherited``, and ``search 0.33G fine-tuned (N epochs)`` when the
  search fine-tuned it) and, with ``--retrain-members``, retrained from scratch with the same recipe as every
  other row (``search 0.33G retrained``).

``--retrain-seeds`` retrains every row once per seed (initialisation, batch order and the validation split inside
dev; the dev / test split stays ``--seed``'s). One retraining of these nets varies by about as much as the gaps
between them, so a claim that one row beats another needs several: the table then adds each row's mean and
standard deviation, and the paired intervals compare seed-mean F1 on the same resampled records.

Scores above ~0.85 CinC 2017 F1 would suggest leakage (best challenge entries: 0.83 on the hidden test set).
After the table it prints each row's test CinC F1 minus plain-cnn's on the same records with a paired bootstrap
95% interval (one AF record moves the score by about 0.004, so a gap inside the interval is not a win), what the
ENAS search did (the mean reward of the first and last fifth of its controller-phase children, the median FLOPs of
both fifths, whether any derive-phase child predicted a single class), and last the Pareto table of every row
(:func:`benchmarks.scoring.pareto_table`), also drawn as ``report.png`` in the ``--out`` folder.
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

import n2nas  # noqa: E402
from benchmarks.common import (add_options, budget_line, finish_options, folder_job, load_avg, load_span,  # noqa: E402
                               member_rows, members_of, print_searches, retrain_config, retrain_job, run_jobs,
                               rows_to_score, search_behaviour, search_config, search_jobs)
from benchmarks.scoring import (by_row, folder_cost, format_pareto, paired_gap, pareto_table,  # noqa: E402
                                plot_pareto, print_seed_spread)
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import stratified_split  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from n2nas.measure.cost import RECORD_SECONDS  # noqa: E402
from n2nas.metrics import cinc2017_f1  # noqa: E402
from n2nas.models.retrain import RetrainConfig  # noqa: E402
from n2nas.searching.finals import FinalsConfig  # noqa: E402
from n2nas.presets import named, presets_of  # noqa: E402
from n2nas.searching.loop import SearchConfig  # noqa: E402
from n2nas.searching.screen import ScreenConfig  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017"
ROWS = ("search", "random", "plain-cnn", "hannun")
REFERENCES = ("plain-cnn", "hannun")


def dev_and_test(folder: str, seed: int):
    """The one dev / held-out test split of the folder (seeded, stratified, by record)."""
    data = load_dataset(f"physionet2017:{folder}")
    split = stratified_split(data, val=0.15, seed=seed)
    return data.subset(list(split.train)), data.subset(list(split.val))


def f1_of(probs, y) -> float:
    """CinC 2017 F1 of class probabilities (records x classes; the prediction is the argmax)."""
    return cinc2017_f1(np.asarray(probs).argmax(-1), y)


def print_paired_gaps(rows: dict, reference: str = "plain-cnn") -> None:
    """Each row's test CinC F1 minus ``reference``'s on the same records, with a paired bootstrap 95% interval:
    whether a row beats the hand design or only seems to (seed-mean F1 when rows have several retrain seeds)."""
    if reference not in rows:
        return
    ref = rows[reference]
    print(f"test CinC F1 minus {reference}'s on the same {len(ref['ys'][0])} records "
          f"(paired bootstrap, 95% interval):")
    for name, row in rows.items():
        if name != reference:
            gap = paired_gap(f1_of, row, ref)
            print(f"  {name:<24} {gap['difference']:+.3f}  [{gap['low']:+.3f}, {gap['high']:+.3f}]")


def print_table(done: dict, costs: dict, seeds: list[int]) -> None:
    """One line per model: params, GFLOPs per 30 s record, train minutes (load at start and end), epochs,
    validation and test CinC F1, F1 per class, macro AUROC."""
    print(f"{'pipeline':<32} {'params':>10} {'GFLOP/30s':>9} {'train min':>9} {'load':>14} {'epochs':>6} "
          f"{'val F1':>7} {'test F1':>8} {'F1 N':>5} {'F1 A':>5} {'F1 O':>5} {'F1 ~':>5} {'AUROC':>6}")
    for (name, seed), row in done.items():
        s, f1 = row["test"], row["test"]["f1"]
        label = name if len(seeds) == 1 or row["minutes"] == 0 else f"{name} s{seed}"
        val = row["summary"]["validation"].get("cinc2017_f1")
        print(f"{label:<32} {costs[name]['params']:>10} {costs[name]['flops_per_record'] / 1e9:>9.3f} "
              f"{row['minutes']:>9.1f} {load_span(row['load']):>14} {row['summary']['epochs_run']:>6} "
              f"{val if val is None else round(val, 3)!s:>7} {s['cinc2017_f1']:>8.3f} {f1['N']:>5.3f} "
              f"{f1['A']:>5.3f} {f1['O']:>5.3f} {(f1['~'] or 0):>5.3f} {s['macro_auroc']:>6.3f}")


def warm_cache(args, cfg: SearchConfig, work: Path) -> None:
    """Prepare the preprocessing cache once, so that searches side by side do not both prepare it."""
    dev, _ = dev_and_test(args.folder, args.seed)
    warm = dataclasses.replace(cfg, budget_minutes=None, budget_epochs=1, shared_steps=1, controller_steps=0,
                               derive_children=1, derive_top=0, screen=ScreenConfig.off(), finals=FinalsConfig.off())
    n2nas.search(dev, warm, out=work / "cache-warm-up", progress=True)


def main() -> None:
    """Search (ENAS and random), retrain every row with one recipe, print the comparison and the Pareto table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(ap, data=str(DEFAULT_DIR), search_minutes=60, epochs=60, rows=ROWS)
    ap.add_argument("--preset", default="cpu-hour", choices=list(presets_of(SearchConfig)),
                    help="search preset (default cpu-hour)")
    ap.add_argument("--space", default=None, help="search space (default: the preset's)")
    ap.add_argument("--flops-weight", type=float, default=None, help="FLOPs exponent of the reward (default: preset)")
    ap.add_argument("--flops-target", type=float, default=None,
                    help="FLOPs per 30 s record that the reward's FLOPs term is relative to "
                         "(default: the space's default child)")
    ap.add_argument("--max-flops", type=float, default=None,
                    help="hard FLOPs limit per 30 s record: larger children are infeasible (default: none)")
    ap.add_argument("--schedule", default=RetrainConfig.schedule, choices=["plateau", "budget"],
                    help=f"lr schedule of every retraining (RetrainConfig.schedule, default {RetrainConfig.schedule})")
    args = finish_options(ap, ap.parse_args(), ROWS)
    load_start = load_avg()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="n2nas-pn17-"))
    cfg = search_config(args, named(SearchConfig, args.preset))
    split = (dev_and_test, (args.folder, args.seed))
    if args.parallel > 1 and {"search", "random"} <= set(args.rows_wanted):
        warm_cache(args, cfg, work)
    searching = search_jobs(args, split, cfg, work)

    def folder(name: str, seed: int) -> str:
        return str(work / (name.replace(" ", "-") + (f"-s{seed}" if len(args.seeds) > 1 else "")))

    def retrains(pipelines: dict) -> dict:
        return {(name, s): (retrain_job, (split, pipeline, folder(name, s), retrain_config(args, s, name)))
                for s in args.seeds for name, pipeline in pipelines.items()}

    # the hand rows do not depend on a search: with a core to spare they retrain beside the searches run here
    running = len(set(searching) - set(args.search_runs))
    beside = retrains(rows_to_score({}, args, REFERENCES)[0]) if args.parallel > running > 0 else {}
    first = run_jobs({**searching, **beside}, args.parallel, args.threads)
    searches = {row: first[row] for row in searching}
    contenders, kinds, folders = rows_to_score(searches, args, REFERENCES)
    if not contenders and not folders:
        ap.error("no row to retrain: name one in --rows or give --pipeline NAME=FILE")
    jobs = retrains(contenders)
    jobs.update({(name, args.seeds[0]): (folder_job, (split, entry["model_dir"], entry["validation"]))
                 for name, entry in folders.items()})
    order, jobs = list(jobs), {key: job for key, job in jobs.items() if key not in beside}
    # side by side: every row at once as before, or --parallel jobs when that is more (several seeds)
    side_by_side = 1 if args.parallel <= 1 else max(1, min(len(jobs), max(args.parallel, len(contenders))))
    later = run_jobs(jobs, side_by_side, args.threads)
    done = {key: later[key] if key in later else first[key] for key in order}
    rows = by_row(done, "cinc2017_f1", kinds)
    load_costs = load_avg()
    costs = {name: folder_cost(next(r["model_dir"] for (n, _), r in done.items() if n == name), RECORD_SECONDS)
             for name in rows}
    one = next(iter(done.values()))
    print(f"dev {one['n_dev']} records, held-out test {one['n_test']}; {budget_line(args)}; side by side: "
          f"searches {max(args.parallel, 1)}, retrains {side_by_side} at a time, {args.threads} torch thread(s)"
          + (f"; {', '.join(sorted({k[0] for k in beside}))} retrained beside the search(es)" if beside else "")
          + f"; load average at start {load_start:.1f}")
    print_searches(searches, args.preset)
    print_table(done, costs, args.seeds)
    if len(args.seeds) > 1:
        print_seed_spread(rows, "test CinC F1")
    print_paired_gaps(rows)
    if args.retrain_members:  # the aim: a member within 0.01 of the same net trained from scratch
        for name, member in members_of(searches).items():
            for label in member_rows(name, member):
                gap = paired_gap(f1_of, rows[label], rows[f"{name} retrained"])
                print(f"{label} minus {name} retrained: test CinC F1 {gap['difference']:+.3f} "
                      f"[{gap['low']:+.3f}, {gap['high']:+.3f}]")
    for row, found in searches.items():
        print(f"{row} search behaviour: {json.dumps(search_behaviour(found['trials']))}")
        print(f"{row} best pipeline: {json.dumps(found['best']['sample'])}")
    table = pareto_table(rows, f1_of, costs)
    print(format_pareto(table, "CinC F1", "30s", f"seed mean over {len(args.seeds)} retrain seed(s)"))
    print(f"  CPU latency measured at {load_span((load_costs, load_avg()))}; "
          f"load average at end {load_avg():.1f}")
    print(f"plot: {plot_pareto({'PhysioNet 2017, held-out test': table}, work / 'report.png', 'CinC F1', '30 s')}")


if __name__ == "__main__":
    exit_on_error(main, "physionet2017.py")
