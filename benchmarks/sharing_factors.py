"""Which decisions keep a weight-shared supernet from learning? One supernet per row, trained for the same number
of single-path steps with every decision pinned to the plain CNN (``plain_cnn_sample``) except one group,
which is drawn uniformly at every step. Each row prints the mean training loss of its last steps and the
plain CNN's validation score when it is cut out of that supernet (BatchNorm recalibrated per child).

Usage: python benchmarks/sharing_factors.py [--data SPEC] [--records 2400] [--steps 200]
       [--groups none,kernel,op,dilation,activation,skip,width,fs,filter,normalise,window,augment,arch,all]

With nothing free, the loss falls like a standalone network's; a group whose row stays near the class prior
(loss ~1.39 with class weighting) is one the supernet cannot share weights across at this budget.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from n2nas.data.spec import default_cache_root, load_dataset  # noqa: E402
from n2nas.data.splits import stratified_split  # noqa: E402
from n2nas.runners.local import LocalRunner  # noqa: E402
from n2nas.runners.shared import SharedTrainingConfig  # noqa: E402
from n2nas.train.numerics import use_cpu_threads  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from search_spaces import get_space  # noqa: E402
from search_spaces.references import plain_cnn_sample  # noqa: E402

PREPROCESSING = ("fs", "filter", "normalise", "window", "augment")
DEFAULT_DATA = "physionet2017:" + str(Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2017")


def free_labels(group: str, sample: dict, n_layers: int) -> list[str]:
    """The labels a group draws uniformly (every other label keeps the plain CNN's value)."""
    layers = range(n_layers)
    per_layer = {"op": "op", "kernel": "op", "dilation": "dilation", "activation": "activation", "skip": "skip"}
    if group in per_layer:
        return [f"layer{i}/{per_layer[group]}" for i in layers]
    if group == "arch":
        return [k for k in sample if k.startswith("layer") or k == "width"]
    if group == "all":
        return [k for k in sample if k not in ("lr", "weight_decay")]
    return [] if group == "none" else [group]


def draw(space, sample: dict, labels: list[str], group: str, rng: np.random.Generator) -> dict:
    """The plain CNN with ``labels`` drawn uniformly (``kernel``: plain convolutions of every size only)."""
    random = space.random_sample(rng)
    out = {**sample, **{k: random[k] for k in labels}}
    if group == "kernel":
        convs = [o for o in next(d for d in space.flat if d.label == "layer0/op").options if o.startswith("conv")]
        out.update({k: str(rng.choice(convs)) for k in labels})
    return out


def main() -> None:
    """Train one supernet per group and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="data SPEC (default: the shared PhysioNet 2017 folder)")
    ap.add_argument("--records", type=int, default=2400, help="stratified subset of records (default 2400)")
    ap.add_argument("--steps", type=int, default=200, help="single-path steps per supernet (default 200)")
    ap.add_argument("--groups", default="none,kernel,op,dilation,activation,skip,width,fs,filter,normalise,window,"
                                        "augment,arch,all", help="comma-separated rows")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    use_cpu_threads(args.threads)
    data = load_dataset(args.data)
    if args.records < len(data):
        data = data.subset(list(stratified_split(data, val=args.records / len(data), seed=args.seed + 1).val))
    split = stratified_split(data, val=0.2, seed=args.seed)
    index = {rid: i for i, rid in enumerate(data.ids)}
    space_def = get_space("ecg-small")
    space = space_def.space
    ctx = space_def.make_context(data, np.array([index[i] for i in split.train]),
                                 np.array([index[i] for i in split.val]), default_cache_root() / "prepared", 2)
    plain = plain_cnn_sample(space_def)
    reward_idx = ctx.val_idx[:400]
    print(f"{len(data)} records ({len(ctx.train_idx)} train / {len(reward_idx)} scored), {args.steps} steps each")
    print(f"{'free group':<12} {'first loss':>10} {'last loss':>9} {'plain F1':>8} {'AUROC':>6} {'seconds':>7}")
    for group in [g.strip() for g in args.groups.split(",") if g.strip()]:
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        labels = free_labels(group, plain, space_def.config.n_layers)
        runner = LocalRunner(space_def, ctx, SharedTrainingConfig(), torch.device("cpu"), args.seed)
        start, losses = time.monotonic(), []
        for _ in range(0, args.steps, 8):
            losses.append(runner.train_shared([draw(space, plain, labels, group, rng) for _ in range(8)])["shared_loss"])
        scored = runner.score([plain], reward_idx)[0]["metrics"]
        print(f"{group:<12} {losses[0]:>10.3f} {np.mean(losses[-4:]):>9.3f} {scored['cinc2017_f1']:>8.3f} "
              f"{scored['macro_auroc']:>6.3f} {time.monotonic() - start:>7.0f}", flush=True)


if __name__ == "__main__":
    exit_on_error(main, "sharing_factors.py")
