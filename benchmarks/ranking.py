"""How well the supernet ranks children: Kendall tau / Spearman rho of supernet vs standalone scores, the
seed-against-seed ceiling, and the regret of trusting the supernet's top child.

Usage: python benchmarks/ranking.py [--data SPEC] [--space ecg-res] [--rule uniform,sandwich] [--records N]
       [--children 8] [--stratify flops|uniform] [--minutes 20] [--clock auto|cpu|wall] [--epochs 10] [--seeds 2]
       [--bn recalibrate|running|batch] [--fix LABEL=VALUE ...] [--seed 0] [--device auto|cpu|cuda]
       [--threads T] [--out DIR] [--quick | --full]

Protocol: one seeded stratified split (15% validation) for everything. Every preprocessing choice the space can
sample is prepared first (timed apart from the supernet budget). The preprocessing is pinned to one setting
(``PREPROCESSING``; ``--fix`` overrides), as a search shares weights only after its screen has chosen the
preprocessing, and the training tokens (``supernet_blind``) to the space defaults, as in a search.

Children: ``--stratify flops`` (default) draws a pool of uniformly random architectures, measures each one's
FLOPs per 30 s record (``pipeline_cost``, as ``n2nas flops`` counts), cuts the log-FLOPs range from the space's
smallest to its largest child (the pool's range for spaces without them) into ``--children`` equal strata and
takes one pool child per stratum (the nearest one when a stratum is empty), so cheap and expensive children are
ranked alike; ``--stratify uniform`` takes uniformly random children.

For each ``--rule`` (comma-separated, e.g. ``uniform,sandwich``) a supernet starts from the same seed, trains for
``--minutes`` (of CPU time on a CPU, so that other jobs on a shared machine do not shortchange one rule;
``--clock``) (``SharedTrainingConfig.rule``: uniform = one single path per step, sandwich = BigNAS's largest +
smallest + 2 random children with in-place distillation, progressive = Once-for-All's shrinking, ``--shrink-steps``
per phase) and scores every child on the whole validation split
(CinC 2017 F1, BatchNorm statistics per ``--bn``). Each child is trained from scratch once per seed (``--seeds``,
training seeds seed .. seed+K-1 on the same split) by the ``retrain`` recipe for ``--epochs`` (patience = epochs),
its best-epoch validation F1 per seed; the seeds' mean is its standalone score, shared by every rule.

Printed per rule, on its last line: ``kendall_tau`` and ``spearman_rho`` (scipy.stats) between supernet and
standalone scores; ``ceiling_tau``: Kendall tau of the standalone seeds against each other (mean over pairs), the
noise floor of the standalone ranking itself; ``ceiling_tau_mean``: the tau an oracle can expect against the
seeds' mean (Spearman-Brown, :func:`ceiling_tau`); ``top1_regret``: the best standalone F1 among the children
minus the standalone F1 of the child the supernet ranks first. Size knobs: ``--records --children --minutes
--epochs --seeds``, or the presets ``--quick`` (1500 records, 3 min, 4 epochs; about 10-20 CPU minutes per rule)
and ``--full`` (every record, 12 children, 30 min per supernet, 15 epochs: meant for a GPU, ``--device cuda``).
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rank_stats import ceiling_tau, correlations, ranks, seed_agreement  # noqa: E402
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
from n2nas.train.primitives import pick_device  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.protocol import DescribesSamples, ElasticSpace  # noqa: E402

PREPROCESSING = {"fs": 100, "filter": "bandpass", "normalise": "record_z", "window": "crop:10"}
OPS = {"conv": "c", "sep": "s", "maxpool": "mp", "avgpool": "ap"}
RULES = ("uniform", "sandwich", "progressive")
PRESETS = {"quick": {"records": 1500, "minutes": 3.0, "epochs": 4},
           "full": {"children": 12, "minutes": 30.0, "epochs": 15},
           None: {"minutes": 20.0, "epochs": 10}}


def parse_args(argv=None) -> argparse.Namespace:
    """The benchmark's options; ``--full`` widens the defaults to the issue's protocol."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="physionet2017:" + str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                                             / "physionet2017"))
    ap.add_argument("--space", default="ecg-res", help="search space (default ecg-res)")
    ap.add_argument("--rule", default="uniform,sandwich",
                    help="shared-training rules to compare, comma-separated: uniform, sandwich, progressive "
                         "(default uniform,sandwich)")
    ap.add_argument("--records", type=int, default=None, help="seeded stratified subset (default: all; quick: 1500)")
    ap.add_argument("--children", type=int, default=None, help="children ranked (default 8; full: 12)")
    ap.add_argument("--stratify", default="flops", choices=["flops", "uniform"],
                    help="children stratified over the space's FLOPs range (default) or uniformly random")
    ap.add_argument("--minutes", type=float, default=None, help="supernet training per rule (default 20; quick: 3)")
    ap.add_argument("--shrink-steps", type=int, default=300,
                    help="progressive rule: steps per phase (largest only, then kernel, depth, width+stride)")
    ap.add_argument("--clock", default="auto", choices=["auto", "cpu", "wall"],
                    help="what --minutes counts: this process's CPU time (fair between rules on a shared CPU) or "
                         "wall time; auto: CPU time on a CPU device, wall time on a GPU")
    ap.add_argument("--epochs", type=int, default=None, help="standalone epochs per child (default 10; quick: 4)")
    ap.add_argument("--seeds", type=int, default=2,
                    help="standalone trainings per child (training seeds seed..seed+K-1, one split); the mean is "
                         "the standalone score and K >= 2 measures the seed-against-seed ceiling (default 2)")
    ap.add_argument("--child-minutes", type=float, default=None,
                    help="stop a child's training after the epoch that passes this (default: none)")
    ap.add_argument("--bn", default="recalibrate", choices=["recalibrate", "running", "batch"],
                    help="BatchNorm statistics a child is scored with (SharedTrainingConfig.bn)")
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="pin a decision")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--supernet-seed", type=int, default=None,
                    help="seed of the supernets' weights and sampled paths (default --seed); the split, the "
                         "children and their standalone seeds stay those of --seed")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="auto: the GPU when there is one (supernets and standalone children alike)")
    ap.add_argument("--data-workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (on an oversubscribed machine 1 can be 10x faster than 2)")
    ap.add_argument("--out", default=None, help="keep the children's model folders here")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a standalone training found in --out when it trained the same child for --epochs on "
                         "the same split (compare another rule without training the children again)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about 10-20 CPU minutes per rule (see the docstring)")
    size.add_argument("--full", action="store_true", help="every record, 12 children, 30 min per rule, 15 epochs")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds: must be at least 1, got {args.seeds}")
    args.rules = [r.strip() for r in args.rule.split(",") if r.strip()]
    if not args.rules or any(r not in RULES for r in args.rules):
        ap.error(f"--rule: expected a comma-separated list of {', '.join(RULES)}, got {args.rule!r}")
    preset = PRESETS["quick" if args.quick else "full" if args.full else None]
    for key, value in {"children": 8, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
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


def record_gflops(space_name: str, sample, dataset) -> float:
    """GFLOPs per 30 s record of the standalone child, as ``n2nas flops`` counts them (every multi-crop window)."""
    data = {"n_leads": int(dataset.records[0].signal.shape[0]), "classes": list(dataset.classes)}
    return pipeline_cost(Pipeline(space_name, sample, data))["flops_per_record"] / 1e9


def pick_children(args, space_def, space, dataset, rng) -> tuple[list[dict], list[float]]:
    """``--children`` children and their GFLOPs per record: one per log-FLOPs stratum (``--stratify flops``) or
    uniformly random."""
    draw = lambda: space.decode(random_index_sample(space.tokens, rng))  # noqa: E731
    if args.stratify == "uniform":
        children = [draw() for _ in range(args.children)]
        return children, [record_gflops(args.space, c, dataset) for c in children]
    pool = [draw() for _ in range(max(40, 10 * args.children))]
    flops = [record_gflops(args.space, c, dataset) for c in pool]
    if isinstance(space_def, ElasticSpace):  # the whole range of the space, not only the range a uniform pool reaches
        base = space.default_sample()
        lo, hi = (record_gflops(args.space, f(base), dataset) for f in (space_def.smallest, space_def.largest))
    else:
        lo, hi = min(flops), max(flops)
    edges = np.linspace(math.log(lo), math.log(hi), args.children + 1)
    logs, taken, out = np.log(flops), set(), []
    for k in range(args.children):
        inside = [i for i in range(len(pool)) if edges[k] <= logs[i] <= edges[k + 1] and i not in taken]
        if not inside:  # an empty stratum: the unused pool child nearest its centre
            centre = (edges[k] + edges[k + 1]) / 2
            inside = [min((i for i in range(len(pool)) if i not in taken), key=lambda i: abs(logs[i] - centre))]
        pick = inside[int(rng.integers(len(inside)))]
        taken.add(pick)
        out.append(pick)
    return [pool[i] for i in out], [flops[i] for i in out]


def one_class(metrics) -> bool:
    """True when at most one class has a non-zero F1: a constant predictor, i.e. not learned yet."""
    return sum(v > 0 for v in metrics.get("f1", {}).values()) <= 1


def main(argv=None) -> dict:
    """Run the benchmark, print the tables and summaries; returns the numbers per rule."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
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


def standalone(args, dataset, split, children) -> tuple[list[list[float]], list[bool], list[tuple[int, float]]]:
    """Every child trained from scratch once per seed: (F1 per seed per child, one-class flags, epochs/seconds)."""
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="n2nas-ranking-")
    work = Path(args.out or tmp.name)
    per_seed = [[math.nan] * len(children) for _ in range(args.seeds)]
    runs, flat = [(0, 0.0)] * len(children), [False] * len(children)
    for i, sample in enumerate(children):
        for k in range(args.seeds):
            cfg = RetrainConfig(epochs=args.epochs, patience=args.epochs, max_minutes=args.child_minutes,
                                val_fraction=0.15, seed=args.seed + k, split_seed=args.seed, device=args.device,
                                data_workers=args.data_workers)
            folder = work / (f"child{i:02d}" + (f"-seed{args.seed + k}" if args.seeds > 1 else ""))
            try:
                summary = reused(args, folder, sample, split) if args.reuse else None
                summary = summary or retrain(Pipeline(args.space, sample), dataset, folder, cfg, log=lambda _m: None)
            except N2NASError as err:
                print(f"child {i} seed {args.seed + k}: standalone training failed ({err})")
                continue
            # retrain splits internally from the same (dataset, val, split seed): it must be this very split
            assert Split.load(folder / "split.json") == split, "retrain used another split"
            per_seed[k][i] = float(summary["validation"]["cinc2017_f1"])
            flat[i] = flat[i] or one_class(summary["validation"])
            runs[i] = (runs[i][0] + summary["epochs_run"], runs[i][1] + summary["train_seconds"])
        print(f"child {i}: standalone " + " ".join(f"{column[i]:.3f}" for column in per_seed), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return per_seed, flat, runs


def reused(args, folder: Path, sample, split) -> dict | None:
    """The summary of a standalone training already in ``folder`` (``--reuse``) when it trained this very child
    for ``--epochs`` on this split; None otherwise (it is trained again)."""
    import json

    try:
        trained = Pipeline.from_json(json.loads((folder / "pipeline.json").read_text()), get_space(args.space).space)
        summary = json.loads((folder / "metrics.json").read_text())
        same_split = Split.load(folder / "split.json") == split
    except (OSError, ValueError, KeyError, N2NASError):
        return None
    if not same_split or summary.get("epochs_run") != args.epochs or trained.sample != sample:
        return None
    return summary


def summarise(args, rule, sup, alone, per_seed) -> dict:
    """tau, rho, the seed ceilings and the top-1 regret of one rule's supernet scores."""
    ok = [i for i in range(len(sup)) if math.isfinite(sup[i]) and math.isfinite(alone[i])]
    tau, rho = correlations([sup[i] for i in ok], [alone[i] for i in ok])
    out = {"rule": rule, "kendall_tau": tau, "spearman_rho": rho, "children_ranked": len(ok),
           "ceiling_tau": math.nan, "ceiling_tau_mean": math.nan, "top1_regret": math.nan, "top1": None}
    if args.seeds > 1 and len(ok) > 1:
        seed_tau, seed_r = seed_agreement([[column[i] for i in ok] for column in per_seed])
        out.update(ceiling_tau=seed_tau, seed_r=seed_r, ceiling_tau_mean=ceiling_tau(seed_r, args.seeds))
    if ok:
        top = max(ok, key=lambda i: sup[i])  # ties: the first child the supernet scores best
        out.update(top1=top, top1_regret=max(alone[i] for i in ok) - alone[top],
                   top1_ties=sum(sup[i] == sup[top] for i in ok) - 1)
    return out


def run(args: argparse.Namespace) -> dict:
    """:func:`main` after argument parsing."""
    times, t0 = {}, time.monotonic()
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    dataset = subset(load_dataset(args.data), args.records, args.seed)
    times["load"] = time.monotonic() - t0
    split = stratified_split(dataset, val=0.15, seed=args.seed)
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
    children, gflops = pick_children(args, space_def, space, dataset, np.random.default_rng(args.seed + 2))
    print(f"children ({args.stratify}): GFLOPs per 30 s record " + " ".join(f"{g:.4f}" for g in gflops),
          flush=True)

    scores = {}
    for rule in args.rules:
        t0 = time.monotonic()
        scores[rule] = train_and_score(args, rule, space_def, space, ctx, device, children, val_idx)
        times[f"supernet {rule}"] = time.monotonic() - t0
    t0 = time.monotonic()
    per_seed, flat_alone, runs = standalone(args, dataset, split, children)
    # a child with any failed seed has no standalone score (a mean over fewer seeds would not be comparable)
    alone = [float(np.mean(column)) for column in zip(*per_seed)]
    times["standalone"] = time.monotonic() - t0

    ra = ranks(alone)
    results = {}
    head = " ".join(f"{'F1 ' + r[:4]:>8} {'#':>2}" for r in args.rules)
    print(f"\n{'#':>2} {'GFLOP':>7} {head} {'alone':>7} {'seeds':>11} {'#':>2} {'ep':>3} {'sec':>5}  child "
          "(* = predicts one class only)")
    rank_of = {rule: ranks(scores[rule][0]) for rule in args.rules}
    for i, sample in enumerate(children):
        cells = " ".join(f"{scores[r][0][i]:>7.3f}{'*' if scores[r][1][i] else ' '} {rank_of[r][i] or '-':>2}"
                         for r in args.rules)
        seeds = "/".join(f"{column[i]:.3f}" for column in per_seed)
        print(f"{i:>2} {gflops[i]:>7.4f} {cells} {alone[i]:>6.3f}{'*' if flat_alone[i] else ' '} {seeds:>11} "
              f"{ra[i] or '-':>2} {runs[i][0]:>3} {runs[i][1]:>5.0f}  {describe(space_def, sample)}")
    print("minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items())
          + f", total {sum(times.values()) / 60:.1f}")
    for rule in args.rules:
        sup, flat, info = scores[rule]
        res = summarise(args, rule, sup, alone, per_seed)
        results[rule] = {**res, "supernet": sup, "steps": info["steps"], "one_class": sum(flat)}
        print(f"\n{rule}: {info['steps']} shared steps; one-class predictors (not learned yet): {sum(flat)} by the "
              f"supernet, {sum(flat_alone)} standalone; supernet's top child #{res['top1']}")
        print(f"rule={rule} kendall_tau={res['kendall_tau']:.3f} spearman_rho={res['spearman_rho']:.3f} "
              f"ceiling_tau={res['ceiling_tau']:.3f} ceiling_tau_mean={res['ceiling_tau_mean']:.3f} "
              f"top1_regret={res['top1_regret']:.3f} children={len(children)} records={len(dataset.records)} "
              f"supernet_minutes={args.minutes:g} seeds={args.seeds}")
    return {"rules": results, "standalone": alone, "per_seed": per_seed, "gflops": gflops, "times": times,
            "children": children}


if __name__ == "__main__":
    exit_on_error(main, "ranking.py")
