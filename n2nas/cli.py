"""The ``n2nas`` command. Every error is one line naming the file or option at fault, with exit code 2."""
from __future__ import annotations

import argparse
import json
import sys

from n2nas.errors import N2NASError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not usage + message) and still exits 2."""

    def error(self, message: str):  # noqa: D401 - argparse hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    from n2nas.data.spec import SPEC_HELP

    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--skip-bad", action="store_true", help="leave bad files out and list them instead of failing")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="records shorter than this window are bad input (default 1.0)")


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from n2nas.data.spec import load_dataset
    from n2nas.data.summary import summarize

    ds = load_dataset(args.spec, skip_bad=args.skip_bad, min_seconds=args.min_seconds)
    print(json.dumps(summarize(ds)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (each subcommand has ``--help``)."""
    parser = _Parser(prog="n2nas", description="Pipeline and architecture search for medical signals.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    data = sub.add_parser("data", help="inspect data sources")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    summary = data_sub.add_parser("summary", help="print one JSON object describing a data source")
    _add_data_options(summary)
    summary.set_defaults(func=_cmd_data_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except N2NASError as err:
        print(f"n2nas: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("n2nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
