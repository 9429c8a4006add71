"""``n2nas space show`` (every decision of a search space and its size) and ``n2nas space params`` (the
parameter count of every units x layers cell of an MLP space, nothing trained)."""
from __future__ import annotations

import argparse

from n2nas.cli.options import Parser
from n2nas.errors import ConfigError


def register(sub) -> None:
    """Add ``n2nas space`` and its ``show`` and ``params`` subcommands to the command tree."""
    from search_spaces import known_spaces

    space = sub.add_parser("space", help="inspect search spaces")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=Parser)
    p = space_sub.add_parser("show", help="print every decision of a search space and its size")
    p.add_argument("name", metavar="NAME", help="a search space: " + ", ".join(known_spaces()))
    p.set_defaults(func=_cmd_space_show)

    p = space_sub.add_parser("params", help="parameter count of every units x layers cell (nothing is trained)")
    p.add_argument("name", metavar="NAME", help="an MLP space, e.g. ehr-mlp")
    p.add_argument("--input", type=int, required=True, metavar="N", help="input features, e.g. 14637")
    p.add_argument("--output", type=int, required=True, metavar="N", help="output classes, e.g. 14")
    p.add_argument("--exact", action="store_true", help="whole parameter counts instead of millions")
    p.set_defaults(func=_cmd_space_params)


def _cmd_space_show(args: argparse.Namespace) -> int:
    from search_spaces import get_space

    print(get_space(args.name).space.describe())
    return 0


def _cmd_space_params(args: argparse.Namespace) -> int:
    from search_spaces import get_space
    from search_spaces.protocol import TabulatesParams

    if args.input < 1 or args.output < 1:
        raise ConfigError("--input/--output", "must be positive")
    space_def = get_space(args.name)
    if not isinstance(space_def, TabulatesParams):
        raise ConfigError(args.name, "has no units x layers parameter grid (only MLP spaces do)")
    rows = space_def.param_table(args.input, args.output)
    units = list(dict.fromkeys(r["units"] for r in rows))
    layers = list(dict.fromkeys(r["layers"] for r in rows))
    count = {(r["layers"], r["units"]): r["params"] for r in rows}
    show = (lambda n: str(n)) if args.exact else (lambda n: f"{n / 1e6:.2f}")
    unit = "parameters" if args.exact else "parameters, millions"
    print(f"{args.name}: {unit}, {args.input} inputs, {args.output} outputs (rows: hidden layers, "
          "columns: units per layer)")
    table = [["layers\\units", *map(str, units)]] + [[str(d), *(show(count[(d, u)]) for u in units)]
                                                      for d in layers]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    return 0
