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
                   help="records shorter than this many seconds are bad input (default 1.0)")


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from n2nas.data.spec import load_dataset
    from n2nas.data.summary import summarize

    ds = load_dataset(args.spec, skip_bad=args.skip_bad, min_seconds=args.min_seconds)
    print(json.dumps(ds.summary() if hasattr(ds, "summary") else summarize(ds)))  # EHR data summarise themselves
    return 0


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _parse_fixed(items: list[str]) -> dict:
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


# --preset names -> SearchConfig static methods ("thorough" is the old name of "gpu").
PRESET_HELP = ("search size: demo = the bundled sample, 4 minutes on 2 CPU cores; cpu-hour = a full "
               "PhysioNet-2017-sized data set (~6000 records), 60 minutes on 2 CPU cores; gpu = a full data set on "
               "one GPU, the larger `ecg` space, 60 minutes; default = no time budget, 10 epochs "
               "(default: demo)")


def search_preset(name: str):
    """The :class:`SearchConfig` of a ``--preset`` name (demo, default, cpu-hour, gpu; thorough = gpu)."""
    from n2nas.search_loop import SearchConfig

    return SearchConfig.named(name)


def _cmd_search(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.search_loop import search

    base = search_preset(args.preset)
    from n2nas.measure.cli import reward_and_measure

    reward, measure = reward_and_measure(args)
    changes = {"controller": args.controller, "seed": args.seed, "device": args.device,
               "fixed": _parse_fixed(args.fix), "reward": reward, "measure": measure}
    if args.space:
        changes["space"] = args.space
    if args.budget_minutes is not None:
        changes.update(budget_minutes=args.budget_minutes, budget_epochs=args.budget_epochs)
    elif args.budget_epochs is not None:
        changes.update(budget_epochs=args.budget_epochs, budget_minutes=None)
    from n2nas.runners.cli import guarded, runner_config

    config = dataclasses.replace(base, **changes, runner=runner_config(args))
    with guarded(config.runner):
        result = search(args.data, config, out=args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a non-root MPI rank: rank 0 writes the run folder and reports
        return 0
    from n2nas.summary import format_summary, load_summary

    summary = load_summary(result.run_dir) or _summary_of(result, args.data)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def _summary_of(result, data_spec: str) -> dict:
    """The summary rebuilt from a search result, for a search loop that did not write ``summary.json``."""
    from n2nas.summary import build_summary

    best = json.loads((result.run_dir / "best_pipeline.json").read_text())
    return build_summary(result.run_dir, result.trials, best, {}, data_spec)


def _cmd_retrain(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.data.spec import load_dataset
    from n2nas.export import load_pipeline
    from n2nas.retrain import RetrainConfig, retrain

    pipeline = load_pipeline(args.pipeline)
    dataset = load_dataset(args.data, skip_bad=args.skip_bad)
    from n2nas.prune import PruneConfig
    from n2nas.quantize import QATConfig

    config = dataclasses.replace(RetrainConfig(), epochs=args.epochs, seed=args.seed, device=args.device,
                                 max_minutes=args.max_minutes, workers=args.workers, global_batch=args.global_batch,
                                 norm=args.norm, prune=PruneConfig.named(args.prune),
                                 qat=QATConfig.default() if args.qat else None)
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    summary = retrain(pipeline, dataset, args.out, config, log=log)
    print(json.dumps({"model_dir": args.out, **summary}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from n2nas.data.spec import load_dataset
    from n2nas.retrain import evaluate

    dataset = load_dataset(args.data, skip_bad=args.skip_bad)
    print(json.dumps(evaluate(args.model_dir, dataset, device=args.device)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from n2nas.deploy import export_model

    print(json.dumps(export_model(args.model_dir, args.format, args.out)))
    return 0


def _cmd_space_show(args: argparse.Namespace) -> int:
    from search_spaces import get_space

    print(get_space(args.name).space.describe())
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

    from n2nas.data.spec import SPEC_HELP

    p = sub.add_parser("search", help="search a pipeline (ENAS: weight-shared supernet + controller)",
                       description="Search a pipeline. Prints a summary at the end (best pipeline, its score and "
                                   "cost, children scored, where the time went, the retrain command); --json "
                                   "prints it as one JSON object. The run folder gets summary.json too.")
    p.add_argument("--space", default=None,
                   help="search space, see `n2nas space show` (default: the preset's; ecg-small, ecg for gpu)")
    p.add_argument("--controller", default="enas", choices=["enas", "random", "evolution", "grid"],
                   help="what samples children: enas (LSTM + REINFORCE), random, evolution, grid (default enas)")
    p.add_argument("--data", default="sample", help=f"data SPEC: {SPEC_HELP} (default: sample)")
    p.add_argument("--preset", default="demo", choices=["demo", "default", "cpu-hour", "gpu", "thorough"],
                   metavar="{demo,default,cpu-hour,gpu}", help=PRESET_HELP)
    p.add_argument("--budget-minutes", type=_positive(float), default=None, metavar="M",
                   help="end the whole search within M minutes of wall time, data preparation and derive phase "
                        "included: 30%% warm-up, then ENAS epochs, then a derive reserve of 5-25%% sized from the "
                        "measured scoring time (default: the preset's)")
    p.add_argument("--budget-epochs", type=_positive(int), default=None, metavar="E",
                   help="stop after E search epochs (one pass of shared training, then controller steps; the first "
                        "30%% are warm-up); with --budget-minutes, "
                        "whichever ends first (default: the preset's)")
    p.add_argument("--backend", default="local", choices=["local", "ray", "mpi"],
                   help="local (one process), ray (actors), mpi (launch with mpiexec -n N python -m mpi4py -m "
                        "n2nas.cli search --backend mpi ...) (default local)")
    p.add_argument("--workers", type=_positive(int), default=None, metavar="N",
                   help="Ray actors, or MPI ranks (default: 1; for mpi the number of ranks mpiexec started)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, controller and weights (default 0)")
    p.add_argument("--device", default="auto",
                   help="auto (the GPU if there is one), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--out", default="runs/search", metavar="RUN_DIR",
                   help="run folder, must be empty unless --resume (default runs/search)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="pin a decision instead of searching it, e.g. --fix window=crop:10 (repeatable; "
                        "default: nothing pinned)")
    p.add_argument("--quiet", action="store_true", help="no live progress line on stderr (the summary still prints)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (run_dir, trials, best_reward, best_pipeline, best, "
                        "phase_seconds, next_command ...) instead of text")
    from n2nas.measure.cli import add_cost_commands, add_reward_options

    add_reward_options(p)
    from n2nas.runners.cli import add_runner_options, add_tune_parser

    add_runner_options(p)
    p.set_defaults(func=_cmd_search)
    add_tune_parser(sub, _positive)
    add_cost_commands(sub)

    p = sub.add_parser("retrain", help="train an exported pipeline from scratch")
    p.add_argument("pipeline", metavar="PIPELINE.json",
                   help="a pipeline file, e.g. RUN_DIR/best_pipeline.json from `n2nas search`")
    p.add_argument("--data", required=True, help=f"data SPEC: {SPEC_HELP}")
    p.add_argument("--epochs", type=_positive(int), default=40, metavar="E",
                   help="maximum training epochs; early stopping may end sooner (default 40)")
    p.add_argument("--max-minutes", type=_positive(float), default=None, metavar="M",
                   help="stop training after M minutes of wall time (default: no limit)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, weights and batches (default 0)")
    p.add_argument("--device", default="auto",
                   help="auto (the GPU if there is one), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--skip-bad", action="store_true", help="leave bad records out instead of failing")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    p.add_argument("--workers", type=_positive(int), default=1, metavar="N",
                   help="data-parallel processes (DDP: gloo on CPU, NCCL on GPUs); same global batch as 1 worker "
                        "(default 1)")
    p.add_argument("--global-batch", type=_positive(int), default=None, metavar="G",
                   help="global batch size in windows; the learning rate is scaled by G / the pipeline's batch "
                        "(default: the pipeline's batch_size)")
    p.add_argument("--norm", default="batch", choices=["batch", "none"],
                   help="none: batch norm replaced by identity, so N workers equal 1 worker up to rounding "
                        "(default batch)")
    p.add_argument("--prune", default="none", metavar="{none,50,70,adaptive}",
                   help="magnitude pruning of conv/linear weights, 10%% -> N%% over the first half of the epochs; "
                        "adaptive: 70%% overall, more in layers with more output channels (default none)")
    p.add_argument("--qat", action="store_true", help="quantization-aware training; saves the int8 model (CPU)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR",
                   help="model folder: model.pt, pipeline.json, metrics.json")
    p.set_defaults(func=_cmd_retrain)

    p = sub.add_parser("export", help="write a model folder as ONNX or TorchScript and check its outputs")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder written by `n2nas retrain`")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"],
                   help="onnx (onnxruntime checks it) or torchscript (int8 models: torchscript only)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the exported network; FILE.preprocessing.json describes the preprocessing step")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("evaluate", help="score a trained model; prints one JSON object")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder written by `n2nas retrain`")
    p.add_argument("--data", required=True, help=f"data SPEC: {SPEC_HELP}")
    p.add_argument("--device", default="auto",
                   help="auto (the GPU if there is one), cpu, cuda, cuda:1 ... (default auto)")
    p.add_argument("--skip-bad", action="store_true", help="leave bad records out instead of failing")
    p.set_defaults(func=_cmd_evaluate)

    space = sub.add_parser("space", help="inspect search spaces")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    p = space_sub.add_parser("show", help="print every decision of a search space and its size")
    p.add_argument("name", metavar="NAME", help="a search space: ecg-small, ecg, ecg-hannun, ehr-mlp, ehr-mlp-small")
    p.set_defaults(func=_cmd_space_show)

    from n2nas.grid_cli import add_grid_parser, add_params_parser

    add_params_parser(space_sub)
    add_grid_parser(sub, _positive)
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
    except BrokenPipeError:
        # `n2nas space show ecg | head`: the reader left; that is not an error, and Python must not complain
        # again when it flushes stdout at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
