"""The ``n2nas`` command: ``main`` and ``build_parser`` here, one module per command beside it.

May import every layer below it (lazily, inside the command functions, so ``--help`` stays quick); nothing imports
it. Every error is one line naming the file or option at fault, with exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from n2nas.cli import (data_command, derive_command, evaluate_command, export_command, flops_command, grid_command,
                       report_command, retrain_command, search_command, space_command, tune_command)
from n2nas.cli.options import Parser
from n2nas.errors import N2NASError

# The command tree, in the order `n2nas --help` lists it; a new command is one module with `register(sub)`.
COMMANDS = (data_command, search_command, derive_command, tune_command, flops_command, report_command,
            retrain_command, export_command, evaluate_command, space_command, grid_command)


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (each subcommand has ``--help``)."""
    parser = Parser(prog="n2nas", description="Pipeline and architecture search for medical signals.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    from n2nas.train.numerics import flush_denormals

    flush_denormals()  # before torch's thread pool starts: its threads inherit the flag (n2nas.train.numerics)
    try:
        return int(args.func(args) or 0)
    except N2NASError as err:
        print(f"n2nas: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("n2nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `n2nas space show ecg | head`: the reader left; that is not an error, and Python must not complain
        # again when it flushes stdout at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
