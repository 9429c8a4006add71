"""What the dataset benchmarks (physionet2017.py, ptbxl.py, ehr_real.py) share: their options, the search ->
retrain -> score orchestration (jobs in processes with N torch threads each) and the load average that goes next to
every wall-clock figure. Scores, intervals, costs and the Pareto table are in :mod:`benchmarks.scoring`.

A *split* is ``(fn, args)`` with ``fn(*args) -> (dev, test)``: a module-level function and its arguments, so that
a job in a fresh process can rebuild its records instead of receiving them pickled.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import n2nas  # noqa: E402
from n2nas.cli.options import parse_fixed  # noqa: E402
from n2nas.errors import DataError  # noqa: E402
from n2nas.models.evaluate import load_thresholds, predict  # noqa: E402
from n2nas.metrics import evaluate_predictions  # noqa: E402
from n2nas.models.retrain import RetrainConfig, retrain  # noqa: E402
from n2nas.searching.family import read_deployed, read_family  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from search_spaces import get_space  # noqa: E402


# --------------------------------------------------------------------------- options


def add_options(ap: argparse.ArgumentParser, *, data: str, data_flag: str | None = None, search_minutes: float,
                epochs: int, epochs_flag: str = "--epochs", rows: tuple[str, ...] | None = None,
                retrain_cap: bool = True, threads: int | None = None, out: str | None = None) -> None:
    """The options every dataset benchmark takes: the data folder (positional, or ``data_flag``), the search budget,
    the retrain budget in epochs (``epochs_flag``; ``--retrain-minutes`` an optional wall cap when
    ``retrain_cap``), ``--rows`` (when ``rows`` names them), ``--pipeline NAME=FILE``, ``--retrain-seeds``,
    ``--retrain-members``, ``--parallel`` / ``--threads``, ``--out``, ``--seed``, ``--fix`` and
    ``--flops-targets``; with ``rows``, also ``--row-epochs ROW=N`` (one row's own epoch budget) and
    ``--search-run ROW=RUN_DIR`` (an earlier search's run folder in place of a new search)."""
    if data_flag:
        ap.add_argument(data_flag, dest="folder", default=data, help=f"data folder (default {data})")
    else:
        ap.add_argument("folder", nargs="?", default=data, help=f"data folder (default {data})")
    ap.add_argument("--search-minutes", type=float, default=search_minutes,
                    help=f"wall-clock budget of each search (default {search_minutes:g})")
    ap.add_argument(epochs_flag, dest="retrain_epochs", type=int, default=epochs, metavar="N",
                    help=f"epoch budget of every retrain; its lr schedule runs over these epochs (default {epochs})")
    if retrain_cap:
        ap.add_argument("--retrain-minutes", type=float, default=None,
                        help="optional wall-clock safety cap of each retrain (default: none, so that the machine's "
                             "load cannot change a result)")
    if rows is not None:
        ap.add_argument("--rows", default=",".join(rows), help=f"rows to run, comma-separated (default "
                                                               f"{','.join(rows)}; \"\" for --pipeline rows only)")
    ap.add_argument("--pipeline", action="append", default=[], metavar="NAME=FILE",
                    help="also retrain this pipeline JSON as row NAME (e.g. an earlier search's best_pipeline.json)")
    if rows is not None:
        ap.add_argument("--search-run", action="append", default=[], metavar="ROW=RUN_DIR",
                        help="take row ROW's search (search or random) from an earlier run folder of the same data "
                             "and --seed instead of searching: its best pipeline is retrained and its family members "
                             "scored as written; it must not have seen a test record")
        ap.add_argument("--row-epochs", action="append", default=[], metavar="ROW=N",
                        help="this row's retrain epoch budget instead of the common one, e.g. hannun=5 for a "
                             "reference whose full budget does not fit the machine (printed with the budget)")
    ap.add_argument("--retrain-seeds", default=None, metavar="S1,S2,...",
                    help="retrain every row once per seed and compare seed means (default: --seed only)")
    ap.add_argument("--retrain-members", action="store_true",
                    help="also retrain every family member from scratch with this benchmark's recipe")
    ap.add_argument("--flops-targets", default=None, metavar="F1,F2,...",
                    help="family targets, FLOPs per record as the search counts them (per 30 s of ECG; "
                         "default: the preset's)")
    ap.add_argument("--clock", default=None, choices=["wall", "cpu"],
                    help="what --search-minutes counts: wall time, or the search process's CPU time, which machine "
                         "load does not change (default: the preset's)")
    ap.add_argument("--finetune-epochs", type=int, default=None, metavar="E",
                    help="fine-tune each family member for E epochs inside the search (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the searches, the splits and the default retrain")
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="pin a decision of the search")
    ap.add_argument("--out", default=out, help="keep run and model folders and report.png here (default: "
                                               + (f"{out})" if out else "a temporary folder)"))
    ap.add_argument("--parallel", type=int, default=1,
                    help="jobs side by side, each in its own process (default 1: one after another)")
    ap.add_argument("--threads", type=int, default=threads,
                    help="torch threads per job (default: " + (f"{threads})" if threads else
                                                               "all cores when --parallel 1, else 1)"))


SEARCH_ROW_NAMES = {"search": "n2nas search", "random": "random search"}  # --rows name -> the retrained row's


def finish_options(ap: argparse.ArgumentParser, args: argparse.Namespace,
                   known_rows: tuple[str, ...] | None = None) -> argparse.Namespace:
    """Check and complete parsed :func:`add_options` options: ``args.threads`` resolved, ``args.seeds`` (retrain
    seeds), ``args.rows_wanted``, ``args.extra_rows`` (``--pipeline`` as ``{name: pipeline JSON}``) and
    ``args.search_runs`` (``--search-run`` as ``{row: run folder}``, each such row added to the rows wanted); a bad
    value is a usage error."""
    if args.threads is None:
        args.threads = 1 if args.parallel > 1 else (os.cpu_count() or 1)
    try:
        args.seeds = [int(v) for v in args.retrain_seeds.split(",")] if args.retrain_seeds else [args.seed]
    except ValueError:
        ap.error(f"--retrain-seeds expects comma-separated integers, got {args.retrain_seeds!r}")
    try:
        args.family_targets = (tuple(float(v) for v in args.flops_targets.split(","))
                               if args.flops_targets else None)
    except ValueError:
        ap.error(f"--flops-targets expects comma-separated numbers, got {args.flops_targets!r}")
    if known_rows is not None:
        args.rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = set(args.rows_wanted) - set(known_rows)
        if unknown:
            ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(known_rows)}")
    args.extra_rows = pipeline_rows(ap, args.pipeline)
    args.search_runs = {}
    for item in getattr(args, "search_run", []):
        row, sep, run_dir = item.partition("=")
        if not sep or row not in SEARCH_ROW_NAMES or row not in (known_rows or ()) or not run_dir:
            ap.error(f"--search-run expects ROW=RUN_DIR with ROW one of "
                     f"{', '.join(r for r in SEARCH_ROW_NAMES if r in (known_rows or ()))}, got {item!r}")
        args.search_runs[row] = run_dir
        if row not in args.rows_wanted:
            args.rows_wanted.append(row)
    args.epochs_of = {}
    for item in getattr(args, "row_epochs", []):
        row, _, n = item.partition("=")
        if not row or not n.isdigit() or int(n) < 1:
            ap.error(f"--row-epochs expects ROW=N with N a positive integer, got {item!r}")
        if row not in set(known_rows or ()) | set(args.extra_rows):
            ap.error(f"--row-epochs names {row!r}, which is not a row of this benchmark")
        args.epochs_of[SEARCH_ROW_NAMES.get(row, row)] = int(n)
    return args


def pipeline_rows(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, dict]:
    """The ``--pipeline NAME=FILE`` options as ``{row name: pipeline JSON}``: a malformed option is a usage error, a
    missing or bad file one line naming it and exit 2."""
    rows = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            ap.error(f"--pipeline expects NAME=FILE, got {item!r}")
        rows[name] = n2nas.load_pipeline(file).to_json()
    return rows


def search_config(args: argparse.Namespace, base):
    """``base`` (a ``SearchConfig``) with the benchmark's seed, wall budget, pinned decisions, family targets and
    whichever of ``space``, ``flops_weight``, ``flops_target``, ``max_flops`` the script's options set."""
    changes: dict[str, Any] = {"seed": args.seed, "budget_minutes": args.search_minutes, "budget_epochs": None,
                               "fixed": {**base.fixed, **parse_fixed(args.fix)}}
    if getattr(args, "space", None):
        changes["space"] = args.space
    if args.family_targets:
        changes["family"] = dataclasses.replace(base.family, flops_targets=args.family_targets)
    if getattr(args, "finetune_epochs", None) is not None:
        changes["family"] = dataclasses.replace(changes.get("family", base.family),
                                                finetune_epochs=args.finetune_epochs)
    if getattr(args, "clock", None):
        changes["clock"] = args.clock
    reward = {name: getattr(args, name) for name in ("flops_weight", "flops_target", "max_flops")
              if getattr(args, name, None) is not None}
    if reward:
        changes["reward"] = dataclasses.replace(base.reward, **reward)
    return dataclasses.replace(base, **changes)


def retrain_config(args: argparse.Namespace, seed: int, row: str | None = None, **changes) -> RetrainConfig:
    """The benchmark's one retrain recipe for retrain seed ``seed``: ``args.retrain_epochs`` epochs (``row``'s own
    from ``--row-epochs`` when it has one; the lr schedule runs over them), the optional ``--retrain-minutes`` cap,
    ``--schedule`` when the script has it."""
    epochs = getattr(args, "epochs_of", {}).get(row, args.retrain_epochs)
    cfg = RetrainConfig(epochs=epochs, max_minutes=getattr(args, "retrain_minutes", None), seed=seed,
                        schedule=getattr(args, "schedule", None) or RetrainConfig.schedule)
    return dataclasses.replace(cfg, **changes)


def budget_line(args: argparse.Namespace) -> str:
    """How every retrain was budgeted, for the output's header."""
    cap = getattr(args, "retrain_minutes", None)
    return (f"retrain budget {args.retrain_epochs} epochs (lr schedule over epochs), "
            + (f"wall cap {cap:g} min" if cap else "no wall cap")
            + "".join(f"; {row}: {n} epochs" for row, n in getattr(args, "epochs_of", {}).items())
            + f"; retrain seed(s) {','.join(map(str, args.seeds))}")


# --------------------------------------------------------------------------- load average


def load_avg() -> float:
    """The machine's 1-minute load average (NaN where the OS has none): printed next to every wall-clock figure,
    since a busy machine stretches them all."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def load_span(span) -> str:
    """``(start, end)`` load averages as ``load 1.9->2.1``."""
    return f"load {span[0]:.1f}->{span[1]:.1f}"


# --------------------------------------------------------------------------- jobs


def _threaded(fn: Callable, args: tuple, threads: int):
    from n2nas.train.numerics import use_cpu_threads

    use_cpu_threads(threads)
    return fn(*args)


def run_jobs(jobs: dict, parallel: int, threads: int) -> dict:
    """Run ``{key: (fn, args)}`` as ``fn(*args)`` with ``threads`` torch threads each: one after another in this
    process, or ``parallel`` at a time in fresh (spawned) processes. Returns ``{key: result}`` in ``jobs``' order."""
    if parallel <= 1:
        return {key: _threaded(fn, args, threads) for key, (fn, args) in jobs.items()}
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(_threaded, fn, args, threads) for key, (fn, args) in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def records_of(split: tuple) -> tuple:
    """``(dev, test)`` of a split ``(fn, args)``."""
    fn, args = split
    return fn(*args)


def search_job(split: tuple, cfg, out: str) -> dict:
    """One search on the split's dev records: its wall minutes with the load average at start and end, trials, best
    pipeline JSON, run folder and family members (:func:`n2nas.searching.family.read_family`)."""
    dev = records_of(split)[0]
    load0, t0 = load_avg(), time.monotonic()
    # searches side by side write to one stderr: the label tells their lines apart
    result = n2nas.search(dev, cfg, out=out, progress=f"search[{cfg.controller}]")
    return {"minutes": (time.monotonic() - t0) / 60, "load": (load0, load_avg()), "trials": result.trials,
            "best": result.best(1)[0].to_json(), "run_dir": str(out), "family": read_family(out),
            "deploy": read_deployed(out)}


def search_jobs(args: argparse.Namespace, split: tuple, cfg, work: Path) -> dict:
    """``{row: (fn, args)}`` for each search row wanted (``search`` with the ENAS controller, ``random`` with random
    sampling), each writing ``work/ROW-run``, or read from its ``--search-run`` folder instead."""
    return {row: ((earlier_search_job, (split, args.search_runs[row])) if row in args.search_runs else
                  (search_job, (split, dataclasses.replace(cfg, controller=ctrl), str(work / f"{row}-run"))))
            for row, ctrl in (("search", "enas"), ("random", "random")) if row in args.rows_wanted}


def earlier_search_job(split: tuple, run_dir: str) -> dict:
    """An earlier search's run folder as :func:`search_job` returns a search (``minutes`` and ``load`` None: it
    was not run here). Its records must all be dev records of ``split``: a run that trained or chose on a test
    record would leak it into every row built from it, so that is one line naming the folder, exit 2."""
    dev, test = records_of(split)
    folder = Path(run_dir)
    try:
        used = json.loads((folder / "split.json").read_text())
        trials = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise DataError(folder, f"not a readable search run folder ({exc})") from exc
    seen = {r for part in ("train", "val", "test") for r in used.get(part, [])}
    leaked = sorted(seen & {r.id for r in test.records})
    if leaked:
        raise DataError(folder, f"the search saw {len(leaked)} of this benchmark's test records (e.g. {leaked[0]}); "
                                "give the same data and --seed as the run that made it")
    foreign = sorted(seen - {r.id for r in dev.records})
    if foreign:
        raise DataError(folder, f"{len(foreign)} of its records (e.g. {foreign[0]}) are not in this benchmark's data")
    return {"minutes": None, "load": None, "trials": trials,
            "best": n2nas.load_pipeline(folder / "best_pipeline.json").to_json(), "run_dir": str(folder),
            "family": read_family(folder), "deploy": read_deployed(folder)}


def _scored(model_dir, test, probs, y, **extra) -> dict:
    scores = evaluate_predictions(probs, y, test.classes, test.multilabel, load_thresholds(model_dir))
    return {"pred": probs, "y": y, "test": scores, "model_dir": str(model_dir), "n_test": len(test), **extra}


def retrain_job(split: tuple, pipeline_json: dict, out: str, cfg: RetrainConfig) -> dict:
    """Retrain a pipeline JSON on the split's dev records into ``out`` as ``n2nas retrain`` does, then predict the
    test records once: probabilities ``pred``, targets ``y``, ``test`` scores (at the folder's kept thresholds),
    ``summary``, wall ``minutes`` and ``load`` at start and end."""
    dev, test = records_of(split)
    pipeline = Pipeline.from_json(pipeline_json, get_space(pipeline_json["space"]).space)
    load0, t0 = load_avg(), time.monotonic()
    summary = retrain(Pipeline(pipeline.space, pipeline.sample), dev, out, cfg,
                      log=lambda m: print(f"[{Path(out).name}] {m}", file=sys.stderr))
    minutes, load = (time.monotonic() - t0) / 60, (load0, load_avg())
    probs, y = predict(out, test)
    return _scored(out, test, probs, y, summary=summary, minutes=minutes, load=load, n_dev=len(dev))


def folder_job(split: tuple, model_dir: str, validation: dict | None = None) -> dict:
    """A model folder as it is (no training, e.g. a family member's inherited or fine-tuned weights) scored once on
    the split's test records, like :func:`retrain_job`'s result (0 minutes, ``validation`` as its summary's)."""
    dev, test = records_of(split)
    probs, y = predict(model_dir, test)
    return _scored(model_dir, test, probs, y, summary={"epochs_run": 0, "validation": validation or {}},
                   minutes=0.0, load=(load_avg(), load_avg()), n_dev=len(dev))


def member_rows(name: str, member: dict) -> dict[str, dict]:
    """A family member's folders as written, ``{row name: {"kind", "model_dir", "validation"}}``: the inherited
    one always, the fine-tuned one when the search fine-tuned it (``read_family``'s ``weights``, ``model_dir`` and
    ``inherited_dir``); ``validation`` is the entry's validation score for the folder it belongs to."""
    val = {member["metric_name"]: member["val_metric"]}
    if member["weights"] == "inherited":
        return {f"{name} inherited": {"kind": "inherited", "model_dir": member["model_dir"], "validation": val}}
    return {f"{name} inherited": {"kind": "inherited", "model_dir": member["inherited_dir"], "validation": {}},
            f"{name} {member['weights']}": {"kind": "fine-tuned", "model_dir": member["model_dir"],
                                             "validation": val}}


def rows_to_score(searches: dict[str, dict], args, references: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """What a benchmark scores: ``(contenders, kinds, folders)``. Contenders are pipelines to retrain (each search's
    best, the hand ``references`` named in ``--rows``, the ``--pipeline`` rows and, with ``--retrain-members``, every
    family member from scratch); folders are the members' model folders as the searches wrote them; kinds label
    every row for the Pareto table."""
    import n2nas
    from search_spaces.references import fixed_pipelines

    contenders, kinds = {}, {}
    for row, found in searches.items():
        name = SEARCH_ROW_NAMES[row]
        contenders[name], kinds[name] = found["best"], "search"
    fixed = fixed_pipelines()
    contenders.update({row: fixed[row] for row in references if row in args.rows_wanted})
    kinds.update({row: "reference" for row in references if row in args.rows_wanted})
    contenders.update(args.extra_rows)
    kinds.update({name: "pipeline" for name in args.extra_rows})
    members = members_of(searches)
    folders = {label: entry for name, member in members.items() for label, entry in member_rows(name, member).items()}
    kinds.update({label: entry["kind"] for label, entry in folders.items()})
    if args.retrain_members:
        for name, member in members.items():
            contenders[f"{name} retrained"] = n2nas.load_pipeline(Path(member["model_dir"]) / "pipeline.json").to_json()
            kinds[f"{name} retrained"] = "retrained"
    return contenders, kinds, folders


def members_of(searches: dict[str, dict]) -> dict[str, dict]:
    """``{"search 0.33G": entry}`` for every family member of every search (``searches[row]["family"]``)."""
    return {f"{row} {m['name'].removeprefix('flops-')}": m for row, found in searches.items()
            for m in found["family"]}


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


def print_searches(searches: dict[str, dict], preset: str) -> None:
    """One line per search: wall minutes with the load average at its start and end, children scored."""
    for row, found in searches.items():
        ran = (f"{found['minutes']:.1f} min wall ({load_span(found['load'])}), preset {preset}"
               if found["minutes"] is not None else f"earlier run {found['run_dir']} (not searched here)")
        print(f"{row} search: {ran}, {len(found['trials'])} children scored, {len(found['family'])} family member(s)")
        for name, deployed in (found.get("deploy") or {}).items():  # the family's own noise rule over its members
            if deployed != name:
                print(f"  {row} {name}: its target deploys {deployed} (not better on validation by more than the "
                      f"noise)")
