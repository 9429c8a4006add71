"""``n2nas export``: a model folder as an ONNX or TorchScript file, checked against PyTorch."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    """Add ``n2nas export`` to the command tree."""
    p = sub.add_parser("export", help="write a model folder as ONNX or TorchScript and check its outputs")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder written by `n2nas retrain`")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"],
                   help="onnx (onnxruntime checks it) or torchscript (int8 models: torchscript only)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the exported network; FILE.preprocessing.json describes the preprocessing step")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from n2nas.models.export import export_model

    print(json.dumps(export_model(args.model_dir, args.format, args.out)))
    return 0
