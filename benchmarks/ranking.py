"""How well the supernet ranks children: Kendall tau / Spearman rho of supernet vs standalone scores, the
seed-against-seed ceiling, and the regret of trusting the supernet's top child (docs/ecg-res.md).

Usage: python benchmarks/ranking.py [--data SPEC] [--space ecg-res] [--rule uniform,sandwich|none] [--records N]
       [--children 8] [--stratify flops|uniform] [--minutes 20] [--clock auto|cpu|wall] [--epochs 10] [--seeds 2]
       [--bn recalibrate|running|batch] [--fix LABEL=VALUE ...] [--seed 0] [--device auto|cpu|cuda]
       [--threads T] [--results FILE] [--out DIR] [--quick | --full]

One seeded stratified split (15% validation); preprocessing pinned to ``PREPROCESSING`` (``--fix`` overrides) and
the training tokens (``supernet_blind``) to the space defaults, as a search shares weights after its screen.

Standalone trainings live in a results file (``--results``, default ``benchmarks/results/ranking-SPACE.jsonl``,
committed): one JSON line per training with the space, pins, recipe (``RECIPE_FIELDS`` of ``RetrainConfig``),
data (reader, record count, hash of record ids and labels), split (seed, fraction, hash of the validation ids),
child, its FLOPs and params, training seed, best-epoch validation CinC 2017 F1, commit and date. A line is reused
only when all of these and the seed match; its device is recorded, not matched.

A run ranks every child of the file that matches, adding children until there are ``--children``, and trains only
the (child, seed) pairs the file lacks (seeds seed .. seed+K-1, ``--epochs`` with patience = epochs), appending a
line after each. New children (``--stratify flops``): a pool of random architectures, the log-FLOPs range (per 30 s
record, as ``n2nas flops`` counts) from the space's smallest to its largest child cut into ``--children`` strata,
one pool child in each stratum the file leaves empty, the emptiest gaps first; ``uniform``: random children.

Each ``--rule`` (``none``: only fill the file) trains a supernet from the same seed for ``--minutes`` (CPU time on
a CPU, so other jobs do not shortchange a rule; ``--clock``) and scores every child on the validation split.
Printed per rule: ``kendall_tau``, ``spearman_rho`` against the seeds' mean; ``ceiling_tau`` (seed against seed),
``ceiling_tau_mean`` (Spearman-Brown, ``rank_stats.ceiling_tau``); ``top1_regret`` (best standalone F1 minus that
of the supernet's first choice); ``baseline=flops``: the same for ranking by FLOPs alone. Presets: ``--quick``
(1500 records, 3 min, 4 epochs), ``--full`` (every record, 12 children, 30 min, 15 epochs; for a GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rank_results import (VAL_FRACTION, append_training, child_key, git_commit,  # noqa: E402
                                     load_trainings, matching_children, run_key, sha, utc_now)
from benchmarks.rank_stats import ceilings, correlations, ranks  # noqa: E402
from controllers.base import random_index_sample  # noqa: E402
from n2nas.cli.options import parse_fixed  # noqa: E402
from n2nas.data.spec import default_cache_root, load_dataset  # noqa: E402
from n2nas.data.splits import Split, stratified_split  # noqa: E402
from n2nas.errors import N2NASError, exit_on_error  # noqa: E402
from n2nas.measure import LatencyConfig, MeasureConfig  # noqa: E402
from n2nas.measure.cost import pipeline_cost  # noqa: E402
from n2nas.models.retrain import RetrainConfig, retrain  # noqa: E402
from n2nas.runners.local import LocalRunner  # noqa: E402
from n2nas.runners.shared import SharedTrainingConfig  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from n2nas.train.numerics import use_cpu_threads  # noqa: E402
from n2nas.train.primitives import pick_device  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.protocol import DescribesSamples, ElasticSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREPROCESSING = {"fs": 100, "filter": "bandpass", "normalise": "record_z", "window": "crop:10"}
OPS = {"conv": "c", "sep": "s", "maxpool": "mp", "avgpool": "ap"}
RULES = ("uniform", "sandwich", "progressive")
PRESETS = {"quick": {"records": 1500, "minutes": 3.0, "epochs": 4},
           "full": {"children": 12, "minutes": 30.0, "epochs": 15},
           None: {"minutes": 20.0, "epochs": 10}}


def parse_args(argv=None) -> argparse.Namespace:
    """The benchmark's options; ``--full`` widens the defaults to the issue's protocol."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="physionet2017:" + str(ROOT.parent / "shared" / "data" / "physionet2017"))
    ap.add_argument("--space", default="ecg-res", help="search space (default ecg-res)")
    ap.add_argument("--rule", default="uniform,sandwich",
                    help="comma-separated: uniform, sandwich, progressive; none: only fill the results file")
    ap.add_argument("--records", type=int, default=None, help="seeded stratified subset (default: all; quick: 1500)")
    ap.add_argument("--children", type=int, default=None, help="at least this many (default 8; full: 12)")
    ap.add_argument("--stratify", default="flops", choices=["flops", "uniform"],
                    help="new children stratified over the space's FLOPs range (default) or uniformly random")
    ap.add_argument("--minutes", type=float, default=None, help="supernet training per rule (default 20; quick: 3)")
    ap.add_argument("--shrink-steps", type=int, default=300,
                    help="progressive rule: steps per phase (largest only, then kernel, depth, width+stride)")
    ap.add_argument("--clock", default="auto", choices=["auto", "cpu", "wall"],
                    help="what --minutes counts; auto: CPU time on a CPU device, wall time on a GPU")
    ap.add_argument("--epochs", type=int, default=None, help="standalone epochs per child (default 10; quick: 4)")
    ap.add_argument("--seeds", type=int, default=2,
                    help="standalone trainings per child, seeds seed..seed+K-1 on one split (default 2)")
    ap.add_argument("--child-minutes", type=float, default=None,
                    help="stop a child's training after the epoch that passes this wall time (default: none)")
    ap.add_argument("--bn", default="recalibrate", choices=["recalibrate", "running", "batch"],
                    help="BatchNorm statistics a child is scored with (SharedTrainingConfig.bn)")
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="pin a decision")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--supernet-seed", type=int, default=None,
                    help="seed of the supernets' weights and paths only (default --seed)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="auto: the GPU when there is one (supernets and standalone children alike)")
    ap.add_argument("--data-workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (on an oversubscribed machine 1 can be 10x faster than 2)")
    ap.add_argument("--results", default=None,
                    help="standalone trainings, read and appended (default benchmarks/results/ranking-SPACE.jsonl)")
    ap.add_argument("--out", default=None, help="also keep the model folders of new standalone trainings here")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1500 records, 3 min per rule, 4 epochs")
    size.add_argument("--full", action="store_true", help="every record, 12 children, 30 min per rule, 15 epochs")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds: must be at least 1, got {args.seeds}")
    args.rules = [r.strip() for r in args.rule.split(",") if r.strip() and r.strip() != "none"]
    if args.rule.strip() != "none" and (not args.rules or any(r not in RULES for r in args.rules)):
        ap.error(f"--rule: expected none or a comma-separated list of {', '.join(RULES)}, got {args.rule!r}")
    preset = PRESETS["quick" if args.quick else "full" if args.full else None]
    for key, value in {"children": 8, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.results is None:
        args.results = str(ROOT / "benchmarks" / "results" / f"ranking-{args.space}.jsonl")
    return args


def subset(dataset, n, seed):
    """A seeded stratified subset of ``n`` records, in dataset order (so the preprocessing cache key is stable)."""
    if n is None or n >= len(dataset.records):
        return dataset
    keep = set(stratified_split(dataset, val=n / len(dataset.records), seed=seed).val)
    return dataset.subset([i for i in dataset.ids if i in keep])


def describe(space_def, sample) -> str:
    """One line per child: the space's own ``describe_sample``, or, for the layer spaces (``ecg*``),
    fs / window / filter / normalise / width / ops (dilation after 'd', skip inputs after '+')."""
    if isinstance(space_def, DescribesSamples):
        return space_def.describe_sample(sample)
    ops = []
    for i in range(sum(1 for k in sample if k.endswith("/op"))):
        op = sample[f"layer{i}/op"]
        name = next(short + op[len(long):] for long, short in OPS.items() if op.startswith(long))
        dil = sample[f"layer{i}/dilation"] if not op.endswith("pool3") else 1
        ops.append(name + (f"d{dil}" if dil > 1 else "") + ("+" * sum(sample[f"layer{i}/skip"])))
    return (f"{sample['fs']}Hz {sample['window']} {sample['filter']} {sample['normalise']} w{sample['width']} "
            + " ".join(ops))


def child_cost(space_name: str, sample, dataset) -> tuple[float, int]:
    """GFLOPs per 30 s record of the standalone child, as ``n2nas flops`` counts them (every multi-crop window),
    and its parameter count."""
    data = {"n_leads": int(dataset.records[0].signal.shape[0]), "classes": list(dataset.classes)}
    cost = pipeline_cost(Pipeline(space_name, sample, data))
    return cost["flops_per_record"] / 1e9, int(cost["params"])


def pick_children(args, space_def, space, dataset, rng, have=()) -> tuple[list[dict], list[float]]:
    """New children, so that with ``have`` ((sample, GFLOPs) pairs already ranked) there are ``--children``, and
    their GFLOPs per record: one per log-FLOPs stratum that ``have`` leaves empty (``--stratify flops``) or
    uniformly random; never a child of ``have``."""
    need = args.children - len(have)
    if need <= 0:
        return [], []
    known = {child_key(sample) for sample, _ in have}
    draw = lambda: space.decode(random_index_sample(space.tokens, rng))  # noqa: E731
    if args.stratify == "uniform":
        children = []
        while len(children) < need:
            child = draw()
            if child_key(child) not in known:
                known.add(child_key(child))
                children.append(child)
        return children, [child_cost(args.space, c, dataset)[0] for c in children]
    pool = [c for c in (draw() for _ in range(max(40, 10 * args.children))) if child_key(c) not in known]
    pool = list({child_key(c): c for c in pool}.values())
    flops = [child_cost(args.space, c, dataset)[0] for c in pool]
    if isinstance(space_def, ElasticSpace):  # the whole range of the space, not only the range a uniform pool reaches
        base = space.default_sample()
        lo, hi = (child_cost(args.space, f(base), dataset)[0] for f in (space_def.smallest, space_def.largest))
    else:
        lo, hi = min(flops), max(flops)
    edges = np.linspace(math.log(lo), math.log(hi), args.children + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    held = [math.log(g) for _, g in have]
    occupied = set(np.clip(np.searchsorted(edges, held, side="right") - 1, 0, args.children - 1).tolist())
    fill, anchors = [], list(held)
    while len(fill) < need:  # the empty strata farthest from every child already there, so gaps close first
        empty = [k for k in range(args.children) if k not in occupied and k not in fill]
        gap = lambda k: min((abs(centres[k] - a) for a in anchors), default=math.inf)  # noqa: E731
        fill.append(max(empty, key=lambda k: (gap(k), -k)))
        anchors.append(centres[fill[-1]])
    logs, taken, out = np.log(flops), set(), []
    for k in sorted(fill):
        inside = [i for i in range(len(pool)) if edges[k] <= logs[i] <= edges[k + 1] and i not in taken]
        if not inside:  # an empty stratum: the unused pool child nearest its centre
            inside = [min((i for i in range(len(pool)) if i not in taken), key=lambda i: abs(logs[i] - centres[k]))]
        pick = inside[int(rng.integers(len(inside)))]
        taken.add(pick)
        out.append(pick)
    return [pool[i] for i in out], [flops[i] for i in out]


def main(argv=None) -> dict:
    """Run the benchmark, print the tables and summaries; returns the numbers per rule."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        use_cpu_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)  # a caller (the smoke test) keeps its own setting


def train_and_score(args, rule, space_def, space, ctx, device, children, val_idx) -> tuple[list, list, dict]:
    """One supernet trained with ``rule`` for ``--minutes`` (the same seed for every rule), then every child
    scored with it: (supernet F1 per child, one-class flags, what the training did)."""
    seed = args.seed if args.supernet_seed is None else args.supernet_seed
    torch.manual_seed(seed)
    shared = SharedTrainingConfig(bn=args.bn, rule=rule, shrink_steps=args.shrink_steps)
    runner = LocalRunner(space_def, ctx, shared, device, seed)
    runner.set_measurement(MeasureConfig(latency=LatencyConfig(enabled=False)))  # latency: not what is ranked
    rng = np.random.default_rng(seed + 1)
    # on a shared CPU the wall clock gives a rule whatever the other jobs leave; CPU time gives each the same work
    clock = time.process_time if (args.clock == "cpu" or (args.clock == "auto" and device.type == "cpu")) \
        else time.monotonic
    t0, c0, losses = time.monotonic(), clock(), []
    while True:  # the rule wraps each sampled path; chunks of 10 steps between clock checks
        losses.append(runner.train_shared([space.decode(random_index_sample(space.tokens, rng))
                                           for _ in range(10)])["shared_loss"])
        if clock() - c0 >= 60 * args.minutes:
            break
    info = {"steps": 10 * len(losses), "train_s": time.monotonic() - t0, "clock_s": clock() - c0,
            "loss_first": float(np.nanmean(losses[:10])), "loss_last": float(np.nanmean(losses[-10:]))}
    t0 = time.monotonic()
    scored = runner.score(children, val_idx)
    info["score_s"] = time.monotonic() - t0
    sup = [r["metrics"].get("cinc2017_f1", math.nan) if r["status"] == "ok" else math.nan for r in scored]
    print(f"supernet ({rule}): {info['steps']} steps in {info['clock_s'] / 60:.1f} min by the {args.clock} clock "
          f"({info['train_s'] / 60:.1f} wall), mean loss of the first / "
          f"last 100 steps {info['loss_first']:.3f} / {info['loss_last']:.3f}", flush=True)
    return sup, [one_class(r["metrics"]) for r in scored], info


def one_class(metrics) -> bool:
    """True when at most one class has a non-zero F1: a constant predictor, i.e. not learned yet."""
    return sum(v > 0 for v in metrics.get("f1", {}).values()) <= 1


def retrain_config(args, seed: int) -> RetrainConfig:
    """The standalone recipe: ``--epochs`` with patience = epochs, training seed ``seed`` on the split of ``--seed``."""
    return RetrainConfig(epochs=args.epochs, patience=args.epochs, max_minutes=args.child_minutes,
                         val_fraction=VAL_FRACTION, seed=seed, split_seed=args.seed, device=args.device,
                         data_workers=args.data_workers)


def standalone(args, key, dataset, split, children, lines, commit) -> tuple[list[list[float]], list[dict], int]:
    """Each child's F1 per training seed, taken from the file's ``lines`` or trained now and appended: (F1 per
    seed per child, per child the lines used, trainings done now). A failed training leaves NaN."""
    have = {(child_key(line["child"]), line["seed"]): line for line in lines}
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="n2nas-ranking-")
    work, trained = Path(args.out or tmp.name), 0
    per_seed = [[math.nan] * len(children) for _ in range(args.seeds)]
    used = [[] for _ in children]
    for i, (sample, gflops, params) in enumerate(children):
        for k, seed in enumerate(range(args.seed, args.seed + args.seeds)):
            line = have.get((child_key(sample), seed))
            if line is None:
                folder = work / f"{sha([child_key(sample)])[:10]}-seed{seed}"
                c0, t0 = time.process_time(), time.monotonic()
                try:
                    summary = retrain(Pipeline(args.space, sample), dataset, folder, retrain_config(args, seed),
                                      log=lambda _m: None)
                except N2NASError as err:
                    print(f"child {i} seed {seed}: standalone training failed ({err})")
                    continue
                # retrain splits internally from the same (dataset, val, split seed): it must be this very split
                assert Split.load(folder / "split.json") == split, "retrain used another split"
                line = {**key, "child": sample, "gflops": round(gflops, 6), "params": params, "seed": seed,
                        "f1": round(float(summary["validation"]["cinc2017_f1"]), 6),
                        "one_class": one_class(summary["validation"]), "epochs_run": summary["epochs_run"],
                        "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.monotonic() - t0, 1),
                        "device": str(pick_device(args.device)), "commit": commit, "date": utc_now()}
                append_training(args.results, line)
                trained += 1
            per_seed[k][i] = math.nan if line["f1"] is None else float(line["f1"])
            used[i].append(line)
        print(f"child {i}: standalone " + " ".join(f"{column[i]:.3f}" for column in per_seed), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return per_seed, used, trained


def summarise(args, rule, sup, alone, per_seed) -> dict:
    """tau, rho, the seed ceilings and the top-1 regret of one rule's supernet scores."""
    ok = [i for i in range(len(sup)) if math.isfinite(sup[i]) and math.isfinite(alone[i])]
    tau, rho = correlations([sup[i] for i in ok], [alone[i] for i in ok])
    out = {"rule": rule, "kendall_tau": tau, "spearman_rho": rho, "children_ranked": len(ok),
           "top1_regret": math.nan, "top1": None, **ceilings(per_seed, ok)}
    if ok:
        top = max(ok, key=lambda i: sup[i])  # ties: the first child the supernet scores best
        out.update(top1=top, top1_regret=max(alone[i] for i in ok) - alone[top],
                   top1_ties=sum(sup[i] == sup[top] for i in ok) - 1)
    return out


def run(args: argparse.Namespace) -> dict:
    """:func:`main` after argument parsing."""
    times, t0 = {}, time.monotonic()
    commit = git_commit(ROOT)  # before anything runs long, while the checkout is what the code ran from
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    dataset = subset(load_dataset(args.data), args.records, args.seed)
    times["load"] = time.monotonic() - t0
    split = stratified_split(dataset, val=VAL_FRACTION, seed=args.seed)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    train_idx, val_idx = (np.array([index[i] for i in part]) for part in (split.train, split.val))
    space_def = get_space(args.space)
    fixed = {**PREPROCESSING, **parse_fixed(args.fix)}
    defaults = space_def.space.default_sample()
    blind = {label: defaults[label] for label in space_def.supernet_blind}
    space = space_def.space.pinned({**blind, **fixed})
    ctx = space_def.make_context(dataset, train_idx, val_idx, default_cache_root() / "prepared", args.data_workers)

    t0 = time.monotonic()  # every preprocessing choice the supernet may sample, prepared before its clock starts
    variants = list(dict.fromkeys(space_def.preprocess_config(s)
                                  for s in space.grid(["fs", "filter", "normalise", "window"])))
    ctx.prepare_all(variants)
    times["preprocess"] = time.monotonic() - t0
    print(f"{len(dataset.records)} records ({len(train_idx)} train / {len(val_idx)} val), {len(variants)} "
          f"preprocessing choices, device {device}, pinned {fixed or 'nothing'} + {blind}", flush=True)
    key = json.loads(json.dumps(run_key(args, retrain_config(args, args.seed), dataset, split, {**blind, **fixed})))  # as a line reads back
    lines, children = matching_children(load_trainings(args.results), key)
    new, gflops = pick_children(args, space_def, space, dataset, np.random.default_rng(args.seed + 2),
                                have=[(c[0], c[1]) for c in children])
    children += [(json.loads(json.dumps(c)), round(g, 6), child_cost(args.space, c, dataset)[1])
                 for c, g in zip(new, gflops)]
    children.sort(key=lambda c: c[1])  # cheap to costly, whatever order the file holds them in
    print(f"{len(children)} children ({len(children) - len(new)} from {args.results}, {len(new)} new, "
          f"{args.stratify}): GFLOPs per 30 s record " + " ".join(f"{c[1]:.4f}" for c in children), flush=True)

    t0 = time.monotonic()
    per_seed, used, trained = standalone(args, key, dataset, split, children, lines, commit)
    # a child with any failed seed has no standalone score (a mean over fewer seeds would not be comparable)
    alone = [float(np.mean(column)) for column in zip(*per_seed)]
    times["standalone"] = time.monotonic() - t0
    samples = [c[0] for c in children]
    scores = {}
    for rule in args.rules:
        t0 = time.monotonic()
        scores[rule] = train_and_score(args, rule, space_def, space, ctx, device, samples, val_idx)
        times[f"supernet {rule}"] = time.monotonic() - t0
    print_table(args, space_def, children, scores, alone, per_seed, used)
    print("minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items())
          + f", total {sum(times.values()) / 60:.1f}; standalone trainings done now: {trained}")
    seeds = ceilings(per_seed, [i for i in range(len(alone)) if math.isfinite(alone[i])])
    print(f"standalone children={len(children)} seeds={args.seeds} ceiling_tau={seeds['ceiling_tau']:.3f} "
          f"ceiling_tau_mean={seeds['ceiling_tau_mean']:.3f}")
    # the zero-cost ranker a supernet must beat to be worth its training: more FLOPs ranks higher
    flops = summarise(args, "flops", [c[1] for c in children], alone, per_seed)
    print(f"baseline=flops kendall_tau={flops['kendall_tau']:.3f} spearman_rho={flops['spearman_rho']:.3f} "
          f"top1_regret={flops['top1_regret']:.3f} children={flops['children_ranked']}")
    results = {}
    for rule in args.rules:
        sup, flat, info = scores[rule]
        res = summarise(args, rule, sup, alone, per_seed)
        results[rule] = {**res, "supernet": sup, "steps": info["steps"], "one_class": sum(flat)}
        print(f"\n{rule}: {info['steps']} shared steps; one-class predictors (not learned yet): {sum(flat)} by the "
              f"supernet; supernet's top child #{res['top1']}")
        print(f"rule={rule} kendall_tau={res['kendall_tau']:.3f} spearman_rho={res['spearman_rho']:.3f} "
              f"ceiling_tau={res['ceiling_tau']:.3f} ceiling_tau_mean={res['ceiling_tau_mean']:.3f} "
              f"top1_regret={res['top1_regret']:.3f} children={res['children_ranked']} "
              f"records={len(dataset.records)} supernet_minutes={args.minutes:g} seeds={args.seeds}")
    return {"rules": results, "flops_baseline": flops, "standalone": alone, "per_seed": per_seed,
            "gflops": [c[1] for c in children], "times": times, "children": samples, "trained": trained,
            "results": args.results}


def print_table(args, space_def, children, scores, alone, per_seed, used) -> None:
    """One row per child: FLOPs, params, each rule's score and rank, standalone mean, seeds and rank."""
    ra, rank_of = ranks(alone), {rule: ranks(scores[rule][0]) for rule in args.rules}
    head = "".join(f" {'F1 ' + r[:4]:>8} {'#':>2}" for r in args.rules)
    print(f"\n{'#':>2} {'GFLOP':>7} {'kparam':>6}{head} {'alone':>7} {'seeds':>11} {'#':>2} {'ep':>3} {'cpu-s':>6}  "
          "child (* = predicts one class only)")
    for i, (sample, gflops, params) in enumerate(children):
        cells = "".join(f" {scores[r][0][i]:>7.3f}{'*' if scores[r][1][i] else ' '} {rank_of[r][i] or '-':>2}"
                        for r in args.rules)
        flat = any(line["one_class"] for line in used[i])
        print(f"{i:>2} {gflops:>7.4f} {params / 1e3:>6.1f}{cells} {alone[i]:>6.3f}{'*' if flat else ' '} "
              f"{'/'.join(f'{column[i]:.3f}' for column in per_seed):>11} {ra[i] or '-':>2} "
              f"{sum(line['epochs_run'] for line in used[i]):>3} {sum(line['cpu_s'] for line in used[i]):>6.0f}  "
              f"{describe(space_def, sample)}")


if __name__ == "__main__":
    exit_on_error(main, "ranking.py")
