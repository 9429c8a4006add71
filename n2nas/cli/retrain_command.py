"""``n2nas retrain``: train a pipeline file from scratch into a model folder (DDP, pruning, int8 QAT)."""
from __future__ import annotations

import argparse
import json
import sys

from n2nas.cli.options import DEVICE_HELP, number


def register(sub) -> None:
    """Add ``n2nas retrain`` to the command tree."""
    from n2nas.data.spec import SPEC_HELP

    p = sub.add_parser("retrain", help="train an exported pipeline from scratch")
    p.add_argument("pipeline", metavar="PIPELINE.json",
                   help="a pipeline file, e.g. RUN_DIR/best_pipeline.json from `n2nas search`")
    p.add_argument("--data", required=True, help=f"data SPEC: {SPEC_HELP}")
    p.add_argument("--epochs", type=number(int), default=40, metavar="E",
                   help="maximum training epochs; under --schedule plateau, and for EHR pipelines, early stopping "
                        "after 8 epochs without a better validation score may end sooner (default 40)")
    p.add_argument("--max-minutes", type=number(float), default=None, metavar="M",
                   help="stop training after M minutes of wall time (default: no limit)")
    p.add_argument("--schedule", default="budget", choices=["plateau", "budget"],
                   help="lr schedule: plateau (cut by 0.3 after 3 epochs without a better validation score, stop "
                        "after 8) or budget (linear decay to zero over --epochs or --max-minutes, whichever ends "
                        "first; no early stop, except for EHR pipelines) (default budget)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, weights and batches (default 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--skip-bad", action="store_true", help="leave bad records out instead of failing")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    p.add_argument("--workers", type=number(int), default=1, metavar="N",
                   help="data-parallel processes (DDP: gloo on CPU, NCCL on GPUs); same global batch as 1 worker "
                        "(default 1)")
    p.add_argument("--global-batch", type=number(int), default=None, metavar="G",
                   help="global batch size in windows; the learning rate is scaled by G / the pipeline's batch "
                        "(default: the pipeline's batch_size)")
    p.add_argument("--norm", default="batch", choices=["batch", "none"],
                   help="none: batch norm replaced by identity, so N workers equal 1 worker up to rounding "
                        "(default batch)")
    p.add_argument("--prune", default="none", metavar="{none,50,70,adaptive}",
                   help="magnitude pruning of conv/linear weights, 10%% -> N%% over the first half of the epochs; "
                        "adaptive: 70%% overall, more in layers with more output channels (default none)")
    p.add_argument("--ema-decay", type=float, default=0.998, metavar="D",
                   help="score and keep an exponential moving average of the weights with decay D; 0 keeps the last "
                        "step's weights; not combined with --prune / --qat (default 0.998)")
    p.add_argument("--class-weight", type=float, default=0.0, metavar="P",
                   help="EHR pipelines: weight the loss by balanced class weights raised to P (0 off, 0.5 their "
                        "square root, 1 balanced); rare classes then get more of the gradient (default 0)")
    p.add_argument("--qat", action="store_true", help="quantization-aware training; saves the int8 model (CPU)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model folder: model.pt, pipeline.json, metrics.json")
    p.set_defaults(func=_cmd_retrain)


def _cmd_retrain(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.models.folder import load_pipeline
    from n2nas.compress.prune import prune_option
    from n2nas.compress.quantize import QATConfig
    from n2nas.data.spec import load_dataset
    from n2nas.models.retrain import RetrainConfig, retrain

    pipeline = load_pipeline(args.pipeline)
    dataset = load_dataset(args.data, skip_bad=args.skip_bad)
    config = dataclasses.replace(RetrainConfig(), epochs=args.epochs, seed=args.seed, device=args.device,
                                 max_minutes=args.max_minutes, schedule=args.schedule, workers=args.workers,
                                 global_batch=args.global_batch,
                                 norm=args.norm, ema_decay=args.ema_decay or None, prune=prune_option(args.prune),
                                 qat=QATConfig.default() if args.qat else None, class_weight=args.class_weight)
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    summary = retrain(pipeline, dataset, args.out, config, log=log)
    print(json.dumps({"model_dir": args.out, **summary}))
    return 0
