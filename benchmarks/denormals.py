"""Denormal weights: a training step and a forward pass of a net whose weights hold denormal floats, against the
same net freshly initialised, with denormals computed (flush off) and flushed to zero (flush on, what n2nas sets,
``n2nas.train.numerics``), and with the denormal weights set to zero first (``zero_denormals``, what the family
does to a member it cuts).

Usage: python benchmarks/denormals.py [--member MODEL_DIR] [--share 0.08] [--batch 32] [--steps 5] [--repeats 3]

``--member``: a model folder, e.g. a family's ``<member>-inherited`` folder, whose weights are used as they are;
without it, the ecg-res space's default net with ``--share`` of its weights set to random denormal values (0.08 is
the share in run 4's 0.33-GFLOP member, docs/ecg-res.md). One torch thread (the flag is per thread). Each round
times every row once, one after another, ``--steps`` AdamW steps (the first untimed) on a fresh copy; the table
gives each row's median over ``--repeats`` rounds and its ratio to the fresh net without flushing, and the load
average at the start and end.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import load_avg  # noqa: E402
from n2nas.errors import exit_on_error  # noqa: E402
from n2nas.train.numerics import zero_denormals  # noqa: E402


def nets(args) -> tuple[torch.nn.Module, torch.nn.Module, int, int]:
    """(the net with denormal weights, the same architecture freshly initialised, input leads, input samples)."""
    from n2nas.models.folder import build_model, load_model_dir
    from search_spaces import get_space

    if args.member:
        pipeline, model = load_model_dir(args.member)
        space_def, sample = get_space(pipeline.space), pipeline.sample
        fresh = build_model(pipeline)
        leads = next(p for p in model.parameters() if p.dim() == 3).shape[1]
    else:
        space_def = get_space("ecg-res")
        sample, leads = space_def.space.default_sample(), 1
        torch.manual_seed(args.seed)
        fresh = space_def.build_child(sample, leads, 4)
        model = copy.deepcopy(fresh)
        gen = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            for p in model.parameters():
                mask = torch.rand(p.shape, generator=gen) < args.share
                # magnitudes spread over the denormal range, signs random
                values = torch.exp(torch.empty(p.shape).uniform_(-96.0, -88.0, generator=gen))
                values = values * torch.sign(torch.rand(p.shape, generator=gen) - 0.5)
                p.masked_scatter_(mask, values[mask])
    seconds = space_def.window_config(sample).seconds
    fs = space_def.preprocess_config(sample).fs
    return model, fresh, leads, int(round(seconds * fs))


def timed(base: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[float, float]:
    """(median seconds of a training step, median seconds of a forward pass in eval mode) of a copy of ``base``."""
    model = copy.deepcopy(base)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    train = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        train.append(time.perf_counter() - t)
    model = copy.deepcopy(base).eval()
    forward = []
    with torch.inference_mode():
        for _ in range(steps):
            t = time.perf_counter()
            model(x)
            forward.append(time.perf_counter() - t)
    return statistics.median(train[1:]), statistics.median(forward[1:])


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns 0."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", help="a model folder whose weights to use as they are")
    ap.add_argument("--share", type=float, default=0.08, help="without --member: share of weights made denormal")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="steps a measurement, the first untimed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 2 or args.repeats < 1 or not 0 < args.share <= 1:
        ap.error("--steps must be >= 2, --repeats >= 1 and --share in (0, 1]")
    torch.set_num_threads(1)
    start = load_avg()
    denormal, fresh, leads, samples = nets(args)
    zeroed = copy.deepcopy(denormal)
    n_denormal = zero_denormals(zeroed)  # the count of denormal values, and the net without them
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, leads, samples, generator=gen)
    y = torch.randint(0, fresh(x[:1]).shape[1], (args.batch,), generator=gen)
    rows = {(name, flush): [] for flush in (False, True) for name in ("fresh", "denormal", "zeroed")}
    nets_by_name = {"fresh": fresh, "denormal": denormal, "zeroed": zeroed}
    for _ in range(args.repeats):
        for name, flush in rows:
            torch.set_flush_denormal(flush)
            rows[name, flush].append(timed(nets_by_name[name], x, y, args.steps))
    torch.set_flush_denormal(False)
    total = sum(p.numel() for p in denormal.parameters())
    print(f"{args.member or 'ecg-res default net, ' + format(args.share, '.0%') + ' of weights denormal'}: "
          f"{n_denormal} denormal values (set to zero in the zeroed net) among {total} parameters; batch {args.batch} x {leads} x {samples}; 1 thread; median of {args.repeats} rounds, "
          f"{args.steps - 1} timed steps each; load average at start {start:.1f}")
    base_train, base_fwd = (statistics.median(v[i] for v in rows["fresh", False]) for i in (0, 1))
    print(f"  {'weights':<10} {'flush':<6} {'train step s':>12} {'ratio':>7} {'forward s':>10} {'ratio':>7}")
    for (name, flush), values in rows.items():
        train, fwd = (statistics.median(v[i] for v in values) for i in (0, 1))
        print(f"  {name:<10} {'on' if flush else 'off':<6} {train:12.3f} {train / base_train:6.2f}x "
              f"{fwd:10.3f} {fwd / base_fwd:6.2f}x")
    print(f"load average at end {load_avg():.1f}")
    return 0


if __name__ == "__main__":
    exit_on_error(main, "denormals.py")
