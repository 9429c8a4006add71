"""Command-line pieces of the distributed backends: runner options of ``n2nas search`` and ``n2nas tune``."""
from __future__ import annotations

import argparse
import contextlib
import json


def add_runner_options(p: argparse.ArgumentParser) -> None:
    """Options of ``--backend ray|mpi`` (``--backend`` and ``--workers`` themselves are declared by the caller)."""
    g = p.add_argument_group("distributed backends (--backend ray|mpi)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join: auto, or HOST:PORT (default: start a local Ray)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPU cores reserved per worker (default 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per worker, e.g. 1 or 0.5 (default 0)")
    g.add_argument("--mpi-mode", default="sync", choices=["sync", "async"],
                   help="MPI: sync (gradients averaged every step) or async (rank 0 is a parameter server) "
                        "(default sync)")
    g.add_argument("--weighting", type=float, default=1.0, metavar="W",
                   help="MPI async: history weight; the server keeps W/(W+1) of its weights per update "
                        "(default 1)")
    g.add_argument("--staleness", type=int, default=4, metavar="K",
                   help="MPI async: updates computed from weights more than K versions old are dropped "
                        "(default 4)")


def runner_config(args: argparse.Namespace):
    """The RunnerConfig the command line asks for. MPI's worker count is the job's rank count."""
    from n2nas.runners import RunnerConfig

    workers = args.workers
    if args.backend == "mpi" and workers is None:
        from n2nas.runners.mpi import world

        workers = world()[2]
    return RunnerConfig(backend=args.backend, workers=workers or 1, address=args.ray_address,
                        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                        mpi_mode=args.mpi_mode, weighting=args.weighting, staleness=args.staleness)


def guarded(config):
    """Under MPI, any error aborts every rank (a rank left waiting in a collective would hang the job)."""
    if config.backend != "mpi":
        return contextlib.nullcontext()
    from n2nas.runners.mpi import abort_on_error

    return abort_on_error()


def _cmd_tune(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.tune import TuneConfig, results_table, tune_search

    base = TuneConfig.smoke() if args.preset == "smoke" else TuneConfig()
    changes = {"controller": args.controller, "seed": args.seed, "device": args.device}
    for name in ("trials", "epochs", "steps_per_epoch", "concurrent", "space"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.fix:
        from n2nas.cli import _parse_fixed

        changes["fixed"] = _parse_fixed(args.fix)
    config = dataclasses.replace(base, **changes, cpus_per_trial=args.cpus_per_trial,
                                 gpus_per_trial=args.gpus_per_trial)
    grid = tune_search(args.data, config, args.out, resume=args.resume, address=args.ray_address)
    table = results_table(grid)
    import sys

    print(table.drop(columns=["sample"], errors="ignore").to_string(index=False), file=sys.stderr)
    best = table.iloc[0]
    print(json.dumps({"out": args.out, "trials": len(table), "best_reward": float(best["reward"]),
                      "results": f"{args.out}/results.csv", "best_pipeline": f"{args.out}/best_pipeline.json"}))
    return 0


def add_tune_parser(sub, positive) -> None:
    """``n2nas tune``: multi-trial search on Ray Tune, no weight sharing, resumable from ``--out``."""
    from n2nas.data.spec import SPEC_HELP

    p = sub.add_parser("tune", help="multi-trial search on Ray Tune: each child trained alone (no weight sharing)")
    p.add_argument("--data", default="sample", help=f"data SPEC: {SPEC_HELP} (default: sample)")
    p.add_argument("--space", default=None, help="search space, see `n2nas space show` (default ecg-small)")
    p.add_argument("--controller", default="random", choices=["random", "grid", "evolution", "enas"],
                   help="what proposes the next trial, through an ask/tell Tune searcher (default random)")
    p.add_argument("--preset", default="default", choices=["default", "smoke"],
                   help="default: 8 trials x 3 epochs x 20 steps; smoke: 2 trials of 1 epoch x 2 steps, to try the "
                        "command out (default: default)")
    p.add_argument("--trials", type=positive(int), default=None, metavar="N",
                   help="children to train (default: the preset's, 8)")
    p.add_argument("--epochs", type=positive(int), default=None, metavar="E",
                   help="epochs (reports and checkpoints) per trial (default: the preset's, 3)")
    p.add_argument("--steps-per-epoch", type=positive(int), default=None, metavar="N",
                   help="training batches per epoch (default: the preset's, 20)")
    p.add_argument("--concurrent", type=positive(int), default=None, metavar="N",
                   help="trials running at once (default 2)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPU cores Ray reserves per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, e.g. 1 or 0.5 (default 0)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="auto or HOST:PORT (default: local Ray)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, searcher and trials (default 0)")
    p.add_argument("--device", default="auto",
                   help="auto (the GPU if there is one), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="pin a decision instead of searching it (repeatable; default: nothing pinned)")
    p.add_argument("--out", default="runs/tune", help="results folder; Tune's storage is OUT/tune (default runs/tune)")
    p.add_argument("--resume", action="store_true", help="continue the experiment in --out")
    p.set_defaults(func=_cmd_tune)
