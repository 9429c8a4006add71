"""``n2nas flops``: parameters and FLOPs of a pipeline file or a retrained model folder."""
from __future__ import annotations

import argparse
import json

from n2nas.cli.options import number


def register(sub) -> None:
    """Add ``n2nas flops`` to the command tree."""
    p = sub.add_parser("flops", help="parameters and FLOPs of a pipeline (per input, per record, per second)")
    p.add_argument("pipeline", metavar="PIPELINE.json", help="a pipeline JSON file, or a retrained MODEL_DIR")
    p.add_argument("--record-seconds", type=number(float), default=30.0, metavar="S",
                   help="record length in seconds for FLOPs per record (multi-crop windows) (default 30)")
    p.add_argument("--n-leads", type=number(int), default=None, metavar="N",
                   help="input leads, when the pipeline file does not say (default: the file's)")
    p.add_argument("--n-classes", type=number(int), default=None, metavar="N",
                   help="output classes, when the pipeline file does not say (default: the file's)")
    p.set_defaults(func=_cmd_flops)


def _cmd_flops(args: argparse.Namespace) -> int:
    from pathlib import Path

    from n2nas.models.folder import load_pipeline
    from n2nas.measure.cost import pipeline_cost

    path = Path(args.pipeline)
    if path.is_dir():
        path = path / "pipeline.json"  # a model folder written by `n2nas retrain`
    cost = pipeline_cost(load_pipeline(path), args.record_seconds, args.n_leads, args.n_classes)
    print(json.dumps({"pipeline": str(path), **cost}))
    return 0
