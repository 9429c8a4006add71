"""Scaling of the runners: children scored per second and shared-weight steps per second at 1, 2 (and more, where
the machine has the cores) workers for the local, Ray and MPI backends, printed as speed-up ratios; then the same
search with sync and async MPI compared on time to a validation F1.

    python benchmarks/scaling.py                       # 1 and 2 workers, small settings
    python benchmarks/scaling.py --workers 1 2 4 --children 12 --steps 16 --repeats 5
    python benchmarks/scaling.py --skip-time-to-f1

Throughputs are medians over ``--repeats`` timed calls after one warm-up call (which prepares the data and
memoises each child's FLOPs, so the timed calls measure training and inference). A "step" is one sampled child's
batch: with W workers, one synchronous step processes W of them. MPI numbers come from ``mpiexec -n W`` runs of
this script (``--mpi-child``). Not part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXED = {"window": "crop:5", "fs": 100}  # cheap preprocessing: the benchmark times the runners, not R-peaks


def _setup(args):
    import numpy as np

    from controllers import make_controller
    from search_spaces import get_space
    from n2nas.data.spec import default_cache_root, load_dataset
    from n2nas.data.splits import stratified_split

    ds = load_dataset(args.data)
    split = stratified_split(ds, val=0.2, seed=0)
    index = {rid: i for i, rid in enumerate(ds.ids)}
    space_def = get_space("ecg-small")
    ctx = space_def.make_context(ds, np.array([index[i] for i in split.train]),
                                 np.array([index[i] for i in split.val]), default_cache_root() / "prepared")
    space = space_def.space.pinned(FIXED)
    controller = make_controller("random", space.tokens, seed=0)
    children = [space.decode(s) for s in controller.sample(args.children)]
    steps = [space.decode(s) for s in controller.sample(args.steps)]
    return ds, space_def, ctx, children, steps


def _measure(runner, ctx, children, steps, args) -> dict[str, float]:
    """Median children/s and steps/s of ``runner`` (warm-up call first)."""
    records = ctx.val_idx[:args.records]
    runner.train_shared(steps)
    runner.score(children, records)
    train, score = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        runner.train_shared(steps)
        train.append(len(steps) / (time.perf_counter() - t))
        t = time.perf_counter()
        runner.score(children, records)
        score.append(len(children) / (time.perf_counter() - t))
    return {"children_per_s": statistics.median(score), "steps_per_s": statistics.median(train)}


def _in_process(backend: str, workers: int, args) -> dict[str, float]:
    import torch

    from n2nas.runners import RunnerConfig, make_runner
    from n2nas.runners.shared import SharedTrainingConfig
    from n2nas.train.numerics import use_cpu_threads

    _, space_def, ctx, children, steps = _setup(args)
    torch.manual_seed(0)
    # One thread per worker everywhere (Ray and MPI workers run with one): the ratios then compare process
    # counts, and a multi-threaded local run on a shared, oversubscribed machine does not collapse in spin-waits.
    use_cpu_threads(1)
    runner = make_runner(RunnerConfig(backend=backend, workers=workers), space_def, ctx, SharedTrainingConfig(),
                         torch.device("cpu"), 0)
    try:
        return _measure(runner, ctx, children, steps, args)
    finally:
        runner.close()


def _mpi_child(args) -> None:
    """Under mpiexec: rank 0 measures an MpiRunner, the other ranks serve it."""
    import torch

    from n2nas.runners import RunnerConfig
    from n2nas.runners.shared import SharedTrainingConfig
    from n2nas.runners.mpi import MpiRunner, serve, world

    _, rank, size = world()
    ds, space_def, ctx, children, steps = _setup(args)
    if rank != 0:
        serve(ds)
        return
    torch.manual_seed(0)
    runner = MpiRunner(RunnerConfig(backend="mpi", workers=size), space_def, ctx, SharedTrainingConfig(),
                       torch.device("cpu"), 0)
    try:
        print("RESULT " + json.dumps(_measure(runner, ctx, children, steps, args)), flush=True)
    finally:
        runner.close()


def _mpiexec() -> str:
    return str(Path(sys.executable).parent / "mpiexec")


def _mpi(workers: int, args) -> dict[str, float]:
    cmd = [_mpiexec(), "-n", str(workers), sys.executable, "-m", "mpi4py", __file__, "--mpi-child",
           "--data", args.data, "--children", str(args.children), "--steps", str(args.steps),
           "--records", str(args.records), "--repeats", str(args.repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def scaling_table(args) -> list[dict]:
    """One row per (backend, workers) with throughputs and speed-ups over that backend's 1 worker and local."""
    rows = []
    for backend in args.backends:
        for w in ([1] if backend == "local" else args.workers):
            if backend == "ray":
                import ray

                ray.init(num_cpus=max(w, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
                try:
                    r = _in_process("ray", w, args)
                finally:
                    ray.shutdown()
            elif backend == "mpi":
                r = _mpi(w, args)
            else:
                r = _in_process("local", 1, args)
            rows.append({"backend": backend, "workers": w, **r})
            print(f"  measured {backend} x{w}: {r}", file=sys.stderr, flush=True)
    local = next((r for r in rows if r["backend"] == "local"), None)
    for r in rows:
        one = next(x for x in rows if x["backend"] == r["backend"] and x["workers"] == min(
            y["workers"] for y in rows if y["backend"] == r["backend"]))
        r["score_speedup"] = r["children_per_s"] / one["children_per_s"]
        r["train_speedup"] = r["steps_per_s"] / one["steps_per_s"]
        if local:
            r["score_vs_local"] = r["children_per_s"] / local["children_per_s"]
            r["train_vs_local"] = r["steps_per_s"] / local["steps_per_s"]
    return rows


def _print_table(rows) -> None:
    print(f"{'backend':8} {'workers':>7} {'children/s':>10} {'x 1 worker':>10} {'x local':>8} "
          f"{'steps/s':>8} {'x 1 worker':>10} {'x local':>8}")
    for r in rows:
        print(f"{r['backend']:8} {r['workers']:>7} {r['children_per_s']:>10.2f} {r['score_speedup']:>10.2f} "
              f"{r.get('score_vs_local', float('nan')):>8.2f} {r['steps_per_s']:>8.2f} {r['train_speedup']:>10.2f} "
              f"{r.get('train_vs_local', float('nan')):>8.2f}")


def time_to_f1(args) -> None:
    """The same small search under ``mpiexec -n 2`` in sync and async mode; seconds until a controller-phase
    child first reaches the target validation F1 (``--target-f1``, or 90% of the lower of the two best)."""
    fix = sum((["--fix", f"{k}={v}"] for k, v in FIXED.items()), [])
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("sync", "async"):
            out = Path(tmp) / mode
            cmd = [_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "n2nas.cli", "search",
                   "--backend", "mpi", "--mpi-mode", mode, "--data", args.data, "--preset", "default",
                   "--budget-epochs", str(args.epochs), "--device", "cpu", "--out", str(out), "--quiet",
                   "--no-power-sampler", *fix]
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            wall = time.perf_counter() - t
            trials = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()]
            curves[mode] = ([(t["elapsed_s"], t["reward"]) for t in trials
                             if t["phase"] == "controller" and t["reward"] is not None], wall)
    target = args.target_f1 or 0.9 * min(max(r for _, r in c) for c, _ in curves.values())
    print(f"\nsync vs async MPI (2 ranks, {args.epochs} epochs of the default preset), target validation F1 "
          f"{target:.3f}:")
    print(f"{'mode':6} {'seconds to target':>17} {'best F1':>8} {'search wall s':>13}")
    for mode, (curve, wall) in curves.items():
        hit = next((s for s, r in curve if r >= target), None)
        print(f"{mode:6} {('%.1f' % hit) if hit is not None else 'not reached':>17} "
              f"{max(r for _, r in curve):>8.3f} {wall:>13.1f}")


def main() -> None:
    """Parse options and print both tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="sample")
    p.add_argument("--backends", nargs="+", default=["local", "ray", "mpi"])
    p.add_argument("--workers", nargs="+", type=int, default=None,
                   help="worker counts (default 1 2, plus the core count when larger)")
    p.add_argument("--children", type=int, default=6)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--records", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="time-to-F1 search length")
    p.add_argument("--target-f1", type=float, default=None)
    p.add_argument("--skip-time-to-f1", action="store_true")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--mpi-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.mpi_child:
        _mpi_child(args)
        return
    cores = os.cpu_count() or 1
    args.workers = args.workers or sorted({1, 2} | ({cores} if cores > 2 else set()))
    if not args.skip_scaling:
        print(f"runner scaling on {cores} cores ({args.children} children x {args.records} records scored, "
              f"{args.steps} shared steps per call, median of {args.repeats})")
        _print_table(scaling_table(args))
    if not args.skip_time_to_f1:
        time_to_f1(args)


if __name__ == "__main__":
    main()
