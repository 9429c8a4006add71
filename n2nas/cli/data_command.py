"""``n2nas data summary``: one JSON object describing a data source."""
from __future__ import annotations

import argparse
import json

from n2nas.cli.options import Parser


def register(sub) -> None:
    """Add ``n2nas data`` and its ``summary`` subcommand to the command tree."""
    from n2nas.data.spec import SPEC_HELP

    data = sub.add_parser("data", help="inspect data sources")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    p = data_sub.add_parser("summary", help="print one JSON object describing a data source")
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--skip-bad", action="store_true", help="leave bad files out and list them instead of failing")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="records shorter than this many seconds are bad input (default 1.0)")
    p.set_defaults(func=_cmd_data_summary)


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from n2nas.data.spec import load_dataset
    from n2nas.data.summary import summarize

    ds = load_dataset(args.spec, skip_bad=args.skip_bad, min_seconds=args.min_seconds)
    print(json.dumps(summarize(ds)))
    return 0
