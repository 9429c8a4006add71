"""``n2nas evaluate``: score a model folder on a data set; prints one JSON object."""
from __future__ import annotations

import argparse
import json

from n2nas.cli.options import DEVICE_HELP


def register(sub) -> None:
    """Add ``n2nas evaluate`` to the command tree."""
    from n2nas.data.spec import SPEC_HELP

    p = sub.add_parser("evaluate", help="score a trained model; prints one JSON object")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder written by `n2nas retrain`")
    p.add_argument("--data", required=True, help=f"data SPEC: {SPEC_HELP}")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--skip-bad", action="store_true", help="leave bad records out instead of failing")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from n2nas.data.spec import load_dataset
    from n2nas.models.evaluate import evaluate

    dataset = load_dataset(args.data, skip_bad=args.skip_bad)
    print(json.dumps(evaluate(args.model_dir, dataset, device=args.device)))
    return 0
