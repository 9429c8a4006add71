"""``n2nas grid``: train every cell of a hyperparameter grid from scratch; table, CSV and plot."""
from __future__ import annotations

import argparse
import json
import sys

from n2nas.cli.options import DEVICE_HELP, number, parse_fixed


def register(sub) -> None:
    """Add ``n2nas grid`` to the command tree."""
    from n2nas.data.spec import SPEC_HELP
    from n2nas.grid.cells import GridPreset
    from n2nas.presets import presets_of

    p = sub.add_parser("grid", help="train every cell of a hyperparameter grid from scratch; table + CSV + plot",
                       description="Presets: diagnosenet (--space ehr-mlp: DiagnoseNET Table 4, units x layers, "
                                   "Adam 0.001, <= 40 epochs), residual-lr-batch (--space ecg: Hannun residual "
                                   "net, lr {0.01, 0.001} x batch {16, 32, 64}). --grid LABEL=[...] adds an "
                                   "axis or replaces a preset's axis of that label.")
    p.add_argument("--space", default=None,
                   help="search space whose decisions the grid sets, e.g. ehr-mlp, ecg (default: the preset's)")
    p.add_argument("--preset", default=None,
                   help=f"a named grid: {' | '.join(presets_of(GridPreset))} (default: none, the --grid axes only)")
    p.add_argument("--grid", action="append", default=[], metavar="LABEL=[v1,v2,...]",
                   help="one axis of the grid, e.g. --grid 'lr=[0.01,0.001]' (repeatable; default: the preset's axes)")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="value every cell shares, e.g. --fix activation=tanh (repeatable; default: the preset's "
                        "values)")
    p.add_argument("--data", default=None, help=f"data SPEC: {SPEC_HELP} (default: the preset's, else sample)")
    p.add_argument("--epochs", type=number(int), default=None, metavar="E",
                   help="maximum training epochs per cell (default: the preset's, else 40)")
    p.add_argument("--patience", type=number(int), default=None, metavar="E",
                   help="stop a cell after E epochs without a better validation score (default: the preset's, "
                        "else 5)")
    p.add_argument("--max-minutes", type=number(float), default=None, metavar="M",
                   help="stop training a cell after M minutes of wall time (default: no limit)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split and of every cell (default 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", required=True, help="folder for grid.csv, grid.png, grid.txt and cells/ "
                                                "(finished cells are reused when the same grid runs again)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    p.set_defaults(func=_cmd_grid)


def _cmd_grid(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.grid.cells import GridConfig, get_preset, merge_axes, parse_grid, run_grid

    axes = parse_grid(args.grid)
    fixed = parse_fixed(args.fix)
    if args.preset:
        preset = get_preset(args.preset, args.space)
        axes = merge_axes(preset.axes, axes)
        space, base, config, data = preset.space, {**preset.base, **fixed}, preset.config, preset.data
        title = f"{preset.name}: {preset.about}"
    elif args.space:
        space, base, config, data, title = args.space, fixed, GridConfig(), "sample", ""
    else:
        from n2nas.errors import ConfigError

        raise ConfigError("--space", "name the space the grid is over (or give a --preset)")
    changes = {k: v for k, v in (("epochs", args.epochs), ("patience", args.patience),
                                 ("max_minutes", args.max_minutes)) if v is not None}
    config = dataclasses.replace(config, seed=args.seed, device=args.device, **changes)
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    result = run_grid(space, axes, args.data or data, args.out, config, base, log=log, title=title)
    print(result.table)
    print(json.dumps({"csv": str(result.csv), "plot": str(result.plot), "cells": len(result.rows)}))
    return 0
