"""Pieces every command shares: the one-line-error parser, number checks and ``--fix LABEL=VALUE`` parsing.

The lowest module of the command line: it imports nothing from the other command modules.
"""
from __future__ import annotations

import argparse
import json


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not usage + message) and still exits 2."""

    def error(self, message: str):
        """Print ``message`` as one line and exit 2 (argparse calls this on every usage error)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def number(kind, positive: bool = True, nonpositive: bool = False):
    """An argparse ``type`` for numbers written any way (``1e6`` for an int too), optionally > 0 or <= 0.

    An int option refuses a fraction (``2.5``) rather than truncating it to a value the user did not write.
    """
    def parse(text: str):
        try:
            value = float(text) if kind is int else kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if kind is int:
            if not float(value).is_integer():
                raise argparse.ArgumentTypeError(f"must be a whole number, got {text}")
            value = int(value)
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        if nonpositive and value > 0:
            raise argparse.ArgumentTypeError(f"must be <= 0 (a positive weight rewards cost), got {text}")
        return value
    return parse


def parse_fixed(items: list[str]) -> dict:
    """``LABEL=VALUE`` pairs; VALUE is read as JSON when it can be (numbers, true/false, null, lists)."""
    from n2nas.errors import ConfigError

    fixed = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label:
            raise ConfigError("--fix", f"expected LABEL=VALUE, got {item!r}")
        try:
            fixed[label] = json.loads(value)
        except ValueError:
            fixed[label] = value
    return fixed


# the --device option of every command that trains or scores
DEVICE_HELP = "auto (the GPU if there is one), cpu, cuda, cuda:1 ... (default auto)"
