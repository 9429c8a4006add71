"""``n2nas tune``: multi-trial search on Ray Tune, each child trained alone (no weight sharing)."""
from __future__ import annotations

import argparse
import json

from n2nas.cli.options import DEVICE_HELP, number, parse_fixed


def register(sub) -> None:
    """Add ``n2nas tune`` (resumable from ``--out``) to the command tree."""
    from controllers import CONTROLLERS
    from n2nas.data.spec import SPEC_HELP

    p = sub.add_parser("tune", help="multi-trial search on Ray Tune: each child trained alone (no weight sharing)")
    p.add_argument("--data", default="sample", help=f"data SPEC: {SPEC_HELP} (default: sample)")
    p.add_argument("--space", default=None, help="search space, see `n2nas space show` (default ecg-small)")
    p.add_argument("--controller", default="random", choices=list(CONTROLLERS),
                   help="what proposes the next trial, through an ask/tell Tune searcher (default random)")
    # TuneConfig's presets, written out: importing n2nas.searching.tune imports Ray, too slow for every command
    p.add_argument("--preset", default="default", choices=["default", "smoke"],
                   help="default: 8 trials x 3 epochs x 20 steps; smoke: 2 trials of 1 epoch x 2 steps, to try the "
                        "command out (default: default)")
    p.add_argument("--trials", type=number(int), default=None, metavar="N",
                   help="children to train (default: the preset's, 8)")
    p.add_argument("--epochs", type=number(int), default=None, metavar="E",
                   help="epochs (reports and checkpoints) per trial (default: the preset's, 3)")
    p.add_argument("--steps-per-epoch", type=number(int), default=None, metavar="N",
                   help="training batches per epoch (default: the preset's, 20)")
    p.add_argument("--concurrent", type=number(int), default=None, metavar="N",
                   help="trials running at once (default 2)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPU cores Ray reserves per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial, e.g. 1 or 0.5 (default 0)")
    p.add_argument("--ray-address", default=None, metavar="ADDR", help="auto or HOST:PORT (default: local Ray)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, searcher and trials (default 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="pin a decision instead of searching it (repeatable; default: nothing pinned)")
    p.add_argument("--out", default="runs/tune", help="results folder; Tune's storage is OUT/tune (default runs/tune)")
    p.add_argument("--resume", action="store_true", help="continue the experiment in --out")
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.presets import named
    from n2nas.searching.tune import TuneConfig, results_table, tune_search

    base = named(TuneConfig, args.preset)
    changes = {"controller": args.controller, "seed": args.seed, "device": args.device}
    for name in ("trials", "epochs", "steps_per_epoch", "concurrent", "space"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.fix:
        changes["fixed"] = parse_fixed(args.fix)
    config = dataclasses.replace(base, **changes, cpus_per_trial=args.cpus_per_trial,
                                 gpus_per_trial=args.gpus_per_trial)
    grid = tune_search(args.data, config, args.out, resume=args.resume, address=args.ray_address)
    table = results_table(grid)
    import sys

    print(table.drop(columns=["sample"], errors="ignore").to_string(index=False), file=sys.stderr)
    best = table.iloc[0]
    print(json.dumps({"out": args.out, "trials": len(table), "best_metric": float(best["metric"]),
                      "metric_name": best.get("metric_name"),
                      "results": f"{args.out}/results.csv", "best_pipeline": f"{args.out}/best_pipeline.json"}))
    return 0

