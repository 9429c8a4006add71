"""How well the supernet ranks children: Kendall tau / Spearman rho of supernet vs standalone scores.

Children are sampled uniformly; each is scored by the trained supernet and trained standalone.

Usage: python benchmarks/ranking.py [--data SPEC] [--space ecg-cpu] [--records N] [--children 12] [--minutes 20]
       [--epochs 10] [--seeds 1]
       [--bn recalibrate|running|batch] [--fix LABEL=VALUE ...] [--seed 0] [--device auto] [--out DIR] [--quick]

Protocol: one seeded stratified split (15% validation) for everything. Every preprocessing choice the space can
sample is prepared first (timed apart from the supernet budget). The preprocessing is pinned to one setting
(``PREPROCESSING``; ``--fix`` overrides), as a search shares weights only after its screen has chosen the
preprocessing. The ``--space`` supernet (default ``ecg-cpu``, the cpu-hour preset's space) is trained for
``--minutes`` on uniformly sampled single-path children (SPOS), then scores ``--children`` uniformly sampled
children on the whole validation split (CinC 2017 F1, BatchNorm statistics per ``--bn``). Each child is then
trained from scratch by the ``retrain`` recipe for ``--epochs`` (patience = epochs, same split, same seed), its
best-epoch validation F1 being its standalone score. With ``--seeds K`` each child trains K times (training seeds
seed .. seed+K-1, the split unchanged) and the mean is its standalone score; the seeds' agreement with each other
then says how far any ranking can agree with the standalone scores at all (see :func:`ceiling_tau`). The
training tokens (``supernet_blind``: lr, weight decay,
batch size, dropout, class weighting) are pinned to the space defaults for every child, as in a search: a
shared-weight score cannot see them. ``--quick`` (about 10
minutes on 2 idle cores): 1500 records, 3 min supernet, 4 epochs.
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
from scipy.stats import kendalltau, rankdata, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.base import random_index_sample  # noqa: E402
from n2nas.cli.options import parse_fixed  # noqa: E402
from n2nas.data.spec import default_cache_root, load_dataset  # noqa: E402
from n2nas.data.splits import Split, stratified_split  # noqa: E402
from n2nas.errors import N2NASError, exit_on_error  # noqa: E402
from n2nas.measure import LatencyConfig, MeasureConfig  # noqa: E402
from n2nas.retrain import RetrainConfig, retrain  # noqa: E402
from n2nas.runners.local import LocalRunner, SharedTrainingConfig  # noqa: E402
from n2nas.space import Pipeline  # noqa: E402
from n2nas.train.primitives import pick_device  # noqa: E402
from search_spaces import get_space  # noqa: E402

PREPROCESSING = {"fs": 100, "filter": "bandpass", "normalise": "record_z", "window": "crop:20"}
OPS = {"conv": "c", "sep": "s", "maxpool": "mp", "avgpool": "ap"}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="physionet2017:" + str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                                             / "physionet2017"))
    ap.add_argument("--space", default="ecg-cpu", help="search space (default ecg-cpu)")
    ap.add_argument("--records", type=int, default=None, help="seeded stratified subset (default: all; quick: 1500)")
    ap.add_argument("--children", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=None, help="supernet training budget (default 20; quick: 3)")
    ap.add_argument("--epochs", type=int, default=None, help="standalone epochs per child (default 10; quick: 4)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="standalone trainings per child, training seeds seed..seed+K-1 on the same split; the mean "
                         "is the standalone score, and K >= 2 also measures how much the seeds agree (default 1)")
    ap.add_argument("--child-minutes", type=float, default=None,
                    help="stop a child's training after the epoch that passes this (default: none)")
    ap.add_argument("--bn", default="recalibrate", choices=["recalibrate", "running", "batch"],
                    help="BatchNorm statistics a child is scored with (SharedTrainingConfig.bn)")
    ap.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE", help="pin a decision")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (on an oversubscribed machine 1 can be 10x faster than 2)")
    ap.add_argument("--out", default=None, help="keep the children's model folders here")
    ap.add_argument("--quick", action="store_true", help="about 10 minutes on 2 cores (see the docstring)")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds: must be at least 1, got {args.seeds}")
    quick = {"records": 1500, "minutes": 3.0, "epochs": 4} if args.quick else {"minutes": 20.0, "epochs": 10}
    for key, value in quick.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def subset(dataset, n, seed):
    """A seeded stratified subset of ``n`` records, in dataset order (so the preprocessing cache key is stable)."""
    if n is None or n >= len(dataset.records):
        return dataset
    keep = set(stratified_split(dataset, val=n / len(dataset.records), seed=seed).val)
    return dataset.subset([i for i in dataset.ids if i in keep])


def describe(sample) -> str:
    """fs / window / filter / normalise / width / ops (dilation after 'd', skip inputs after '+')."""
    ops = []
    for i in range(sum(1 for k in sample if k.endswith("/op"))):
        op = sample[f"layer{i}/op"]
        name = next(short + op[len(long):] for long, short in OPS.items() if op.startswith(long))
        dil = sample[f"layer{i}/dilation"] if not op.endswith("pool3") else 1
        ops.append(name + (f"d{dil}" if dil > 1 else "") + ("+" * sum(sample[f"layer{i}/skip"])))
    return (f"{sample['fs']}Hz {sample['window']} {sample['filter']} {sample['normalise']} w{sample['width']} "
            + " ".join(ops))


def ranks(values):
    """1 = best, ties share the better rank; NaN stays unranked."""
    ok = [i for i, v in enumerate(values) if math.isfinite(v)]
    out = [None] * len(values)
    for i, r in zip(ok, rankdata([-values[i] for i in ok], method="min")):
        out[i] = int(r)
    return out


def one_class(metrics) -> bool:
    """True when at most one class has a non-zero F1: a constant predictor, i.e. not learned yet."""
    return sum(v > 0 for v in metrics.get("f1", {}).values()) <= 1


def correlations(x, y) -> tuple[float, float]:
    """Kendall tau-b and Spearman rho. When either side scores every child alike it ranks nothing: both are
    0 (no concordance), not scipy's NaN. Fewer than two children: NaN."""
    if len(x) < 2:
        return math.nan, math.nan
    if len(set(x)) == 1 or len(set(y)) == 1:
        return 0.0, 0.0
    return float(kendalltau(x, y)[0]), float(spearmanr(x, y)[0])


def seed_agreement(per_seed: list[list[float]]) -> tuple[float, float]:
    """Mean Kendall tau and mean Pearson r over every pair of seeds' standalone scores (children as rows)."""
    taus, rs = [], []
    for a in range(len(per_seed)):
        for b in range(a + 1, len(per_seed)):
            x, y = np.asarray(per_seed[a]), np.asarray(per_seed[b])
            taus.append(correlations(list(x), list(y))[0])
            rs.append(float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0)
    return float(np.mean(taus)), float(np.mean(rs))


def ceiling_tau(seed_r: float, seeds: int) -> float:
    """The Kendall tau a ranker that knows every child's true quality can expect against the mean of ``seeds``
    standalone trainings, when one training is that quality plus independent noise (Gaussian).

    Two seeds correlate at r = var(true) / var(one run), so the mean of K correlates with the truth at
    sqrt(1 / (1 + (1/r - 1) / K)) (Spearman-Brown), and tau = 2/pi * arcsin(correlation) for Gaussians. A
    supernet's tau is bounded by this, whatever it does."""
    if not seed_r > 0:
        return 0.0
    corr = math.sqrt(1.0 / (1.0 + (1.0 / min(seed_r, 1.0) - 1.0) / seeds))
    return 2.0 / math.pi * math.asin(corr)


def main(argv=None) -> dict:
    """Run the benchmark, print the table and summary; returns the summary numbers."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)  # a caller (the smoke test) keeps its own setting


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

    runner = LocalRunner(space_def, ctx, SharedTrainingConfig(bn=args.bn), device, args.seed)
    runner.set_measurement(MeasureConfig(latency=LatencyConfig(enabled=False)))  # latency: not what is ranked
    rng = np.random.default_rng(args.seed + 1)
    t0, losses = time.monotonic(), []
    while True:  # SPOS: one uniformly sampled single path per batch, in chunks of 10 between clock checks
        losses.append(runner.train_shared([space.decode(random_index_sample(space.tokens, rng))
                                           for _ in range(10)])["shared_loss"])
        if time.monotonic() - t0 >= 60 * args.minutes:
            break
    times["supernet"] = time.monotonic() - t0
    print(f"supernet: {10 * len(losses)} steps in {times['supernet'] / 60:.1f} min, mean loss of the first / last "
          f"100 steps {np.nanmean(losses[:10]):.3f} / {np.nanmean(losses[-10:]):.3f}", flush=True)

    child_rng = np.random.default_rng(args.seed + 2)
    children = [space.decode(random_index_sample(space.tokens, child_rng)) for _ in range(args.children)]
    t0 = time.monotonic()
    scored = runner.score(children, val_idx)
    times["scoring"] = time.monotonic() - t0
    sup = [r["metrics"].get("cinc2017_f1", math.nan) if r["status"] == "ok" else math.nan for r in scored]
    flat = [one_class(r["metrics"]) for r in scored]

    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="n2nas-ranking-")
    work = Path(args.out or tmp.name)
    per_seed = [[math.nan] * len(children) for _ in range(args.seeds)]
    runs, flat_alone, t0 = [(0, 0.0)] * len(children), [False] * len(children), time.monotonic()
    for i, sample in enumerate(children):
        for k in range(args.seeds):
            cfg = RetrainConfig(epochs=args.epochs, patience=args.epochs, max_minutes=args.child_minutes,
                                val_fraction=0.15, seed=args.seed + k, split_seed=args.seed, device=args.device,
                                data_workers=args.data_workers)
            folder = work / (f"child{i:02d}" + (f"-seed{args.seed + k}" if args.seeds > 1 else ""))
            try:
                summary = retrain(Pipeline(args.space, sample), dataset, folder, cfg, log=lambda _m: None)
            except N2NASError as err:
                print(f"child {i} seed {args.seed + k}: standalone training failed ({err})")
                continue
            # retrain splits internally from the same (dataset, val, split seed): it must be this very split
            assert Split.load(folder / "split.json") == split, "retrain used another split"
            per_seed[k][i] = float(summary["validation"]["cinc2017_f1"])
            flat_alone[i] = flat_alone[i] or one_class(summary["validation"])
            runs[i] = (runs[i][0] + summary["epochs_run"], runs[i][1] + summary["train_seconds"])
    # a child with any failed seed has no standalone score (a mean over fewer seeds would not be comparable)
    alone = [float(np.mean(column)) for column in zip(*per_seed)]
    times["standalone"] = time.monotonic() - t0
    if tmp is not None:
        tmp.cleanup()

    rs, ra = ranks(sup), ranks(alone)
    print(f"\n{'#':>2} {'params':>7} {'MFLOP':>6} {'sup F1':>7} {'alone':>7} {'ep':>3} {'sec':>5} {'sup#':>4} "
          f"{'alone#':>6}  child (* = predicts one class only)")
    for i, sample in enumerate(children):
        star, star_alone = "*" if flat[i] else " ", "*" if flat_alone[i] else " "
        print(f"{i:>2} {scored[i]['params']:>7} {scored[i]['flops'] / 1e6:>6.1f} {sup[i]:>6.3f}{star}"
              f" {alone[i]:>6.3f}{star_alone} {runs[i][0]:>3} {runs[i][1]:>5.0f} {rs[i] or '-':>4}"
              f" {ra[i] or '-':>6}  {describe(sample)}")
    ok = [i for i in range(len(children)) if math.isfinite(sup[i]) and math.isfinite(alone[i])]
    x, y = [sup[i] for i in ok], [alone[i] for i in ok]
    tau, rho = correlations(x, y)
    top = max(ok, key=lambda i: sup[i]) if ok else None
    ys = [alone[i] for i in ok]
    print(f"\nKendall tau {tau:.3f}, Spearman rho {rho:.3f} over {len(ok)} children (BN: {args.bn}); one-class "
          f"predictors (not learned yet): {sum(flat)} by the supernet, {sum(flat_alone)} standalone")
    agreement = ""
    if args.seeds > 1 and len(ok) > 1:
        seed_tau, seed_r = seed_agreement([[column[i] for i in ok] for column in per_seed])
        ceiling = ceiling_tau(seed_r, args.seeds)
        spread = np.std([[column[i] for i in ok] for column in per_seed], axis=0, ddof=1)
        print(f"standalone seeds against each other: Kendall tau {seed_tau:.3f}, Pearson r {seed_r:.3f}; median "
              f"seed sd of a child {float(np.median(spread)):.3f}, sd across children {float(np.std(y, ddof=1)):.3f}; "
              f"the tau any ranking can expect against the {args.seeds}-seed mean: about {ceiling:.3f}")
        agreement = f" seeds={args.seeds} standalone_tau={seed_tau:.3f} ceiling_tau={ceiling:.3f}"
    if ys:
        tied = sum(sup[i] == sup[top] for i in ok) - 1
        print(f"standalone F1 of the supernet's top child (#{top}{f', tied with {tied}' if tied else ''}): "
              f"{alone[top]:.3f}; best {max(ys):.3f}, median {float(np.median(ys)):.3f}")
    print("minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items())
          + f", total {sum(times.values()) / 60:.1f}")
    print(f"kendall_tau={tau:.3f} spearman_rho={rho:.3f} children={len(children)} records={len(dataset.records)} "
          f"supernet_minutes={args.minutes:g}{agreement}")
    return {"kendall_tau": tau, "spearman_rho": rho, "supernet": sup, "standalone": alone, "per_seed": per_seed,
            "times": times}


if __name__ == "__main__":
    exit_on_error(main, "ranking.py")
