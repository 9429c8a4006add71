"""Search on the PhysioNet 2017 development folder, retrain the winner, and score it on held-out records next to
hand-designed pipelines and a random-search winner, all retrained with one recipe and one budget.

Usage: python benchmarks/physionet2017.py [DIR] [--search-minutes 60] [--retrain-minutes 30]
       [--preset cpu-hour] [--rows search,random,plain-cnn,hannun] [--pipeline NAME=FILE ...]
       [--retrain-seeds 0,1,2] [--out FOLDER]

Protocol: the folder is split once (seeded, stratified, by record) into dev (85%) and held-out test (15%).
Searches and retrainings see only dev (each with its own validation split inside dev); the test records are
touched once per model, at the end. Rows:

- ``n2nas search``: the preset's ENAS search (``--search-minutes``), its best pipeline retrained;
- ``random search``: the same search with ``--controller random`` and the same budget;
- ``plain-cnn``: the hand-designed 6-layer CNN of ``ecg-small`` (:func:`search_spaces.ecg.plain_cnn_sample`);
- ``hannun``: the Hannun / DiagnoseNET residual network (``ecg-hannun``);
- ``--pipeline NAME=FILE``: any pipeline JSON, e.g. an earlier search's ``best_pipeline.json`` (no new search);
- with a family (``--preset cpu-3h``, or ``--flops-targets``): every member of each search's ``RUN/family/``, once
  with its inherited weights as the search wrote it (no training: ``search 0.33G inherited``) and once retrained
  from scratch with the same recipe as every other row (``search 0.33G retrained``).

``--retrain-seeds`` retrains every row once per seed (initialisation, batch order and the validation split inside
dev; the dev / test split stays ``--seed``'s). One retraining of these nets varies by about as much as the gaps
between them, so a claim that one row beats another needs several: the table then adds each row's mean and
standard deviation, and the paired intervals compare seed-mean F1 on the same resampled records.

Scores above ~0.85 CinC 2017 F1 would suggest leakage (best challenge entries: 0.83 on the hidden test set).
After the table it prints each row's test CinC F1 minus plain-cnn's on the same records with a paired bootstrap
95% interval (one AF record moves the score by about 0.004, so a gap inside the interval is not a win), then
what the ENAS search did: the mean reward of the first and last fifth of its
controller-phase children, the median FLOPs of both fifths, and whether any derive-phase child predicted a
single class.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import n2nas  # noqa: E402
from n2nas.cli.options import parse_fixed  # noqa: E402
from n2nas.data.spec import load_dataset  # noqa: E402
from n2nas.data.splits import stratified_split  # noqa: E402
from n2nas.measure.cost import RECORD_SECONDS, pipeline_cost  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from n2nas.metrics import cinc2017_f1, evaluate_predictions, paired_bootstrap  # noqa: E402
from n2nas.retrain import RetrainConfig, retrain  # noqa: E402
from n2nas.evaluation import predict  # noqa: E402
from n2nas.searching.finals import FinalsConfig  # noqa: E402
from n2nas.presets import named, presets_of  # noqa: E402
from n2nas.searching.loop import SearchConfig  # noqa: E402
from n2nas.searching.screen import ScreenConfig  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.ecg import fixed_pipelines  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017"
ROWS = ("search", "random", "plain-cnn", "hannun")


def cost(pipeline: Pipeline, n_leads: int) -> tuple[int, float]:
    """Parameters and GFLOPs per 30 s record as evaluated (every multi-crop window), as ``n2nas flops`` and the
    search's reward count them."""
    found = pipeline_cost(pipeline, RECORD_SECONDS, n_leads, 4)
    return found["params"], found["flops_per_record"] / 1e9


def search_behaviour(trials: list[dict]) -> dict:
    """Did the controller's sampling move, did any derive-phase child collapse to one class, and what did the
    screen and the finals score ((step, reward) pairs)?"""
    ctrl = [t for t in trials if t["phase"] == "controller" and t["status"] == "ok"]
    fifth = max(1, len(ctrl) // 5)
    first, last = ctrl[:fifth], ctrl[-fifth:]
    derive = [t for t in trials if t["phase"] == "derive" and t["status"] == "ok"]
    collapsed = [t["step"] for t in derive
                 if sum(1 for v in (t["metrics"].get("f1") or {}).values() if v) <= 1]
    return {"controller_children": len(ctrl),
            "mean_reward_first_fifth": float(np.mean([t["reward"] for t in first])) if ctrl else None,
            "mean_reward_last_fifth": float(np.mean([t["reward"] for t in last])) if ctrl else None,
            "median_mflops_first_fifth": float(np.median([t["flops"] for t in first]) / 1e6) if ctrl else None,
            "median_mflops_last_fifth": float(np.median([t["flops"] for t in last]) / 1e6) if ctrl else None,
            "derive_children": len(derive), "derive_collapsed_to_one_class": collapsed,
            "screen": [(t["step"], round(t["reward"], 3)) for t in trials if t["phase"] == "screen" and t["reward"]],
            "finals": [(t["step"], round(t["reward"], 3)) for t in trials if t["phase"] == "final" and t["reward"]]}


def _dev_and_test(folder: str, seed: int):
    """The one dev / held-out test split of the folder (seeded, stratified, by record)."""
    data = load_dataset(f"physionet2017:{folder}")
    split = stratified_split(data, val=0.15, seed=seed)
    return data.subset(list(split.train)), data.subset(list(split.val))


def run_search(dev, cfg: SearchConfig, out: str, threads: int) -> dict:
    """One search on ``dev`` with ``threads`` torch threads: its minutes, trials, best pipeline and family members
    (every benchmark that runs searches as rows shares this)."""
    import torch

    torch.set_num_threads(threads)
    t0 = time.monotonic()
    # both searches write to one stderr side by side: the label tells their lines apart
    result = n2nas.search(dev, cfg, out=out, progress=f"search[{cfg.controller}]")
    family = Path(out) / "family" / "family.json"
    return {"minutes": (time.monotonic() - t0) / 60, "trials": result.trials,
            "best": result.best(1)[0].to_json(),
            "family": json.loads(family.read_text())["members"] if family.exists() else []}


def retrain_and_predict(dev, test, pipeline_json: dict, out: str, cfg: RetrainConfig, threads: int) -> tuple:
    """Retrain a pipeline JSON on ``dev`` into ``out`` as ``n2nas retrain`` does, then predict ``test`` once.
    Returns ``(retrain summary, minutes, probabilities, targets, pipeline)``."""
    import torch

    torch.set_num_threads(threads)
    pipeline = Pipeline.from_json(pipeline_json, get_space(pipeline_json["space"]).space)
    t0 = time.monotonic()
    summary = retrain(Pipeline(pipeline.space, pipeline.sample), dev, out, cfg,
                      log=lambda m: print(f"[{Path(out).name}] {m}", file=sys.stderr))
    minutes = (time.monotonic() - t0) / 60
    probs, y = predict(out, test)
    return summary, minutes, probs, y, pipeline


def _search_job(folder: str, seed: int, cfg: SearchConfig, out: str, threads: int) -> dict:
    """One search on the dev records (in its own process when rows run side by side)."""
    return run_search(_dev_and_test(folder, seed)[0], cfg, out, threads)


def _inherited_job(folder: str, seed: int, member: dict, threads: int) -> dict:
    """A family member as the search wrote it (inherited weights, no training), scored once on the test records."""
    import torch

    torch.set_num_threads(threads)
    dev, test = _dev_and_test(folder, seed)
    pipeline = n2nas.load_pipeline(Path(member["model_dir"]) / "pipeline.json")
    probs, y = predict(member["model_dir"], test)
    return {"summary": {"epochs_run": 0, "validation": {"cinc2017_f1": member["val_metric"]}}, "minutes": 0.0,
            "test": evaluate_predictions(probs, y, test.classes, test.multilabel), "test_pred": probs.argmax(1),
            "test_y": y, "n_dev": len(dev), "n_test": len(test), "cost": cost(pipeline, 1)}


def _retrain_job(folder: str, seed: int, pipeline_json: dict, out: str, cfg: RetrainConfig, threads: int) -> dict:
    """Retrain one pipeline on the dev records and score it once on the held-out test records."""
    dev, test = _dev_and_test(folder, seed)
    summary, minutes, probs, y, pipeline = retrain_and_predict(dev, test, pipeline_json, out, cfg, threads)
    return {"summary": summary, "minutes": minutes, "test": evaluate_predictions(probs, y, test.classes, test.multilabel),
            "test_pred": probs.argmax(1), "test_y": y, "n_dev": len(dev), "n_test": len(test),
            "cost": cost(pipeline, 1)}


def seed_mean_f1(preds, y) -> float:
    """CinC 2017 F1 averaged over the columns of ``preds`` (records x retrain seeds) on the same records."""
    preds = np.asarray(preds)
    preds = preds[:, None] if preds.ndim == 1 else preds
    return float(np.mean([cinc2017_f1(preds[:, k], y) for k in range(preds.shape[1])]))


def print_paired_gaps(done: dict, reference: str = "plain-cnn") -> None:
    """Each row's test CinC F1 minus ``reference``'s on the same records, with a paired bootstrap 95% interval:
    whether a row beats the hand design or only seems to. ``done[name]["test_pred"]`` is one prediction per record,
    or one column per retrain seed (the F1 is then the seeds' mean, each resample taking the same records for all)."""
    if reference not in done:
        return
    ref = done[reference]
    print(f"test CinC F1 minus {reference}'s on the same {len(ref['test_y'])} records "
          f"(paired bootstrap, 95% interval):")
    for name, row in done.items():
        if name != reference:
            gap = paired_bootstrap(seed_mean_f1, row["test_pred"], ref["test_pred"], ref["test_y"])
            print(f"  {name:<24} {gap['difference']:+.3f}  [{gap['low']:+.3f}, {gap['high']:+.3f}]")


def by_row(done: dict, pred: str = "test_pred", target: str = "test_y", metric: str = "cinc2017_f1",
           scores: str = "f1") -> dict:
    """``{(row, seed): result}`` -> ``{row: {pred: records x seeds (x classes), target, scores: [per seed]}}``, the
    seeds' predictions stacked on axis 1 and ``result["test"][metric]`` listed (every benchmark with retrain seeds
    shares this)."""
    rows: dict = {}
    for (name, _), result in done.items():
        row = rows.setdefault(name, {pred: [], target: result[target], scores: []})
        row[pred].append(result[pred])
        row[scores].append(result["test"][metric])
    for row in rows.values():
        row[pred] = np.stack(row[pred], axis=1)
    return rows


def print_seed_spread(rows: dict, scores: str, what: str, width: int = 24) -> None:
    """Each row's mean, standard deviation, min and max over its retrain seeds (``rows[name][scores]``)."""
    print(f"{what} over {len(next(iter(rows.values()))[scores])} retrain seeds:")
    for name, row in rows.items():
        print(f"  {name:<{width}} mean {np.mean(row[scores]):.3f}  sd {np.std(row[scores], ddof=1):.3f}  "
              f"min {min(row[scores]):.3f}  max {max(row[scores]):.3f}")


def pipeline_rows(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, dict]:
    """The ``--pipeline NAME=FILE`` options as ``{row name: pipeline JSON}`` (every benchmark with such rows shares
    this): a malformed option is a usage error, a missing or bad file one line naming it and exit 2."""
    rows = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            ap.error(f"--pipeline expects NAME=FILE, got {item!r}")
        rows[name] = n2nas.load_pipeline(file).to_json()
    return rows


def _run_all(jobs: dict, parallel: int, threads: int) -> dict:
    """Run ``{name: (fn, args)}`` one after another, or ``parallel`` at a time in fresh processes."""
    if parallel <= 1:
        return {name: fn(*args, threads) for name, (fn, args) in jobs.items()}
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(fn, *args, threads) for name, (fn, args) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def main() -> None:
    """Search (ENAS and random), retrain every row with one recipe, print the comparison table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--preset", default="cpu-hour", choices=list(presets_of(SearchConfig)),
                    help="search preset (default cpu-hour)")
    ap.add_argument("--space", default=None, help="search space (default: the preset's)")
    ap.add_argument("--search-minutes", type=float, default=60, help="budget of each search (default 60)")
    ap.add_argument("--retrain-minutes", type=float, default=30, help="budget of each retraining (default 30)")
    ap.add_argument("--epochs", type=int, default=60, help="retraining epochs at most (default 60)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, comma-separated (default {','.join(ROWS)})")
    ap.add_argument("--flops-weight", type=float, default=None, help="FLOPs exponent of the reward (default: preset)")
    ap.add_argument("--flops-target", type=float, default=None,
                    help="FLOPs per 30 s record that the reward's FLOPs term is relative to "
                         "(default: the space's default child)")
    ap.add_argument("--max-flops", type=float, default=None,
                    help="hard FLOPs limit per 30 s record: larger children are infeasible (default: none)")
    ap.add_argument("--schedule", default=RetrainConfig.schedule, choices=["plateau", "budget"],
                    help=f"lr schedule of every retraining (RetrainConfig.schedule, default {RetrainConfig.schedule})")
    ap.add_argument("--flops-targets", default=None, metavar="F1,F2,...",
                    help="family targets, FLOPs per 30 s record (default: the preset's; cpu-3h: 0.05e9,0.1e9,0.33e9,1e9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="pin a decision")
    ap.add_argument("--pipeline", action="append", default=[], metavar="NAME=FILE",
                    help="also retrain this pipeline JSON as row NAME (e.g. an earlier search's best_pipeline.json)")
    ap.add_argument("--retrain-seeds", default=None, metavar="S1,S2,...",
                    help="retrain every row once per seed (default: --seed only)")
    ap.add_argument("--out", default=None, help="keep run and model folders here (default: a temporary folder)")
    ap.add_argument("--parallel", type=int, default=1,
                    help="run the searches side by side, then every retraining side by side, each in its own "
                         "process (default 1: one after another with all cores)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per job (default: all cores when --parallel 1, else 1)")
    args = ap.parse_args()
    rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    if args.threads is None:
        import os

        args.threads = 1 if args.parallel > 1 else (os.cpu_count() or 1)
    unknown = set(rows_wanted) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    extra_rows = pipeline_rows(ap, args.pipeline)
    try:
        seeds = [int(v) for v in args.retrain_seeds.split(",")] if args.retrain_seeds else [args.seed]
    except ValueError:
        ap.error(f"--retrain-seeds expects comma-separated integers, got {args.retrain_seeds!r}")
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="n2nas-pn17-"))
    base = named(SearchConfig, args.preset)
    changes = {"seed": args.seed, "budget_minutes": args.search_minutes, "budget_epochs": None,
               "fixed": parse_fixed(args.fix)}
    if args.space:
        changes["space"] = args.space
    if args.flops_targets:
        changes["family"] = dataclasses.replace(base.family, flops_targets=tuple(
            float(v) for v in args.flops_targets.split(",")))
    reward_changes = {name: value for name, value in (("flops_weight", args.flops_weight),
                                                      ("flops_target", args.flops_target),
                                                      ("max_flops", args.max_flops)) if value is not None}
    if reward_changes:
        changes["reward"] = dataclasses.replace(base.reward, **reward_changes)
    cfg = dataclasses.replace(base, **changes)
    if args.parallel > 1 and {"search", "random"} <= set(rows_wanted):
        # warm the preprocessing cache once, so side-by-side searches do not both prepare it
        dev, _ = _dev_and_test(args.folder, args.seed)
        warm = dataclasses.replace(cfg, budget_minutes=None, budget_epochs=1, shared_steps=1, controller_steps=0,
                                   derive_children=1, derive_top=0, screen=ScreenConfig.off(),
                                   finals=FinalsConfig.off())
        n2nas.search(dev, warm, out=work / "cache-warm-up", progress=True)
    searches = _run_all({row: (_search_job, (args.folder, args.seed, dataclasses.replace(cfg, controller=ctrl),
                                             str(work / f"{row}-run")))
                         for row, ctrl in (("search", "enas"), ("random", "random")) if row in rows_wanted},
                        args.parallel, args.threads)
    contenders = {("n2nas search" if row == "search" else "random search"): found["best"]
                  for row, found in searches.items()}
    fixed = fixed_pipelines()
    contenders.update({row: fixed[row] for row in ("plain-cnn", "hannun") if row in rows_wanted})
    contenders.update(extra_rows)
    if not contenders:
        ap.error("no row to retrain: name one in --rows or give --pipeline NAME=FILE")
    retrain_cfg = dataclasses.replace(RetrainConfig(), epochs=args.epochs, max_minutes=args.retrain_minutes,
                                      schedule=args.schedule)

    def folder(name: str, seed: int) -> str:
        return str(work / (name.replace(" ", "-") + (f"-s{seed}" if len(seeds) > 1 else "")))

    members = {f"{row} {m['name'].removeprefix('flops-')}": m for row, found in searches.items()
               for m in found["family"]}
    contenders.update({f"{name} retrained": n2nas.load_pipeline(Path(m["model_dir"]) / "pipeline.json").to_json()
                       for name, m in members.items()})
    jobs = {(name, s): (_retrain_job, (args.folder, args.seed, pipeline, folder(name, s),
                                       dataclasses.replace(retrain_cfg, seed=s)))
            for s in seeds for name, pipeline in contenders.items()}
    jobs.update({(f"{name} inherited", s): (_inherited_job, (args.folder, args.seed, m))
                 for s in seeds for name, m in members.items()})
    # side by side: every row at once as before, or --parallel jobs when that is more (several seeds)
    side_by_side = 1 if args.parallel <= 1 else min(len(jobs), max(args.parallel, len(contenders)))
    done = _run_all(jobs, side_by_side, args.threads)
    first = next(iter(done.values()))
    print(f"dev {first['n_dev']} records, held-out test {first['n_test']}; retrain <= {args.retrain_minutes:g} min, "
          f"<= {args.epochs} epochs each, seed(s) {','.join(map(str, seeds))}; side by side: searches "
          f"{max(args.parallel, 1)}, retrains {side_by_side} at a time, {args.threads} torch thread(s)")
    for row, found in searches.items():
        print(f"{row} search: {found['minutes']:.1f} min wall, {len(found['trials'])} children scored, "
              f"preset {args.preset}")
    print(f"{'pipeline':<24} {'params':>10} {'GFLOP/30s':>9} {'train min':>9} {'epochs':>6} {'val F1':>7} "
          f"{'test F1':>8} {'F1 N':>5} {'F1 A':>5} {'F1 O':>5} {'F1 ~':>5} {'AUROC':>6}")
    for (name, seed), row in done.items():
        s, f1, (params, gflops) = row["test"], row["test"]["f1"], row["cost"]
        label = name if len(seeds) == 1 else f"{name} s{seed}"
        print(f"{label:<24} {params:>10} {gflops:>9.3f} {row['minutes']:>9.1f} {row['summary']['epochs_run']:>6} "
              f"{row['summary']['validation']['cinc2017_f1']:>7.3f} {s['cinc2017_f1']:>8.3f} {f1['N']:>5.3f} "
              f"{f1['A']:>5.3f} {f1['O']:>5.3f} {(f1['~'] or 0):>5.3f} {s['macro_auroc']:>6.3f}")
    rows = by_row(done)
    if len(seeds) > 1:
        print_seed_spread(rows, "f1", "test CinC F1")
    print_paired_gaps(rows)
    for name in members:  # the aim: inherited weights within 0.01 of the same net trained from scratch
        inherited, retrained = rows[f"{name} inherited"], rows[f"{name} retrained"]
        gap = paired_bootstrap(seed_mean_f1, inherited["test_pred"], retrained["test_pred"], retrained["test_y"])
        print(f"{name}: inherited minus retrained test CinC F1 {gap['difference']:+.3f} "
              f"[{gap['low']:+.3f}, {gap['high']:+.3f}]")
    for row, found in searches.items():
        print(f"{row} search behaviour: {json.dumps(search_behaviour(found['trials']))}")
        print(f"{row} best pipeline: {json.dumps(found['best']['sample'])}")


if __name__ == "__main__":
    exit_on_error(main, "physionet2017.py")
