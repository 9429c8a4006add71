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


def _cmd_search(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.search_loop import SearchConfig, search

    base = SearchConfig.demo() if args.preset == "demo" else (
        SearchConfig.thorough() if args.preset == "thorough" else SearchConfig())
    changes = {"controller": args.controller, "seed": args.seed, "device": args.device,
               "fixed": _parse_fixed(args.fix)}
    if args.space:
        changes["space"] = args.space
    if args.budget_minutes is not None:
        changes.update(budget_minutes=args.budget_minutes, budget_epochs=args.budget_epochs)
    elif args.budget_epochs is not None:
        changes.update(budget_epochs=args.budget_epochs, budget_minutes=None)
    config = dataclasses.replace(base, **changes)
    if args.backend != "local" or args.workers != 1:
        from n2nas.errors import ConfigError

        raise ConfigError("--backend", "only the local backend is available in this version")
    result = search(args.data, config, out=args.out, resume=args.resume, progress=not args.quiet)
    best = result.best(1)[0]
    print(json.dumps({"run_dir": str(result.run_dir), "trials": len(result.trials),
                      "best_reward": best.scores.get("reward"), "best_pipeline": str(result.run_dir /
                                                                                    "best_pipeline.json")}))
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    import dataclasses

    from n2nas.data.spec import load_dataset
    from n2nas.export import load_pipeline
    from n2nas.retrain import RetrainConfig, retrain

    pipeline = load_pipeline(args.pipeline)
    dataset = load_dataset(args.data, skip_bad=args.skip_bad)
    config = dataclasses.replace(RetrainConfig(), epochs=args.epochs, seed=args.seed, device=args.device,
                                 max_minutes=args.max_minutes)
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

    p = sub.add_parser("search", help="search a pipeline (ENAS: weight-shared supernet + controller)")
    p.add_argument("--space", default=None, help="search space (see `n2nas space show`); default ecg-small")
    p.add_argument("--controller", default="enas", choices=["enas", "random", "evolution", "grid"])
    p.add_argument("--data", default="sample", help=SPEC_HELP)
    p.add_argument("--preset", default="demo", choices=["demo", "default", "thorough"],
                   help="search sizes: demo (minutes on 2 CPU cores), default, thorough (hours)")
    p.add_argument("--budget-minutes", type=_positive(float), default=None)
    p.add_argument("--budget-epochs", type=_positive(int), default=None)
    p.add_argument("--backend", default="local", choices=["local", "ray", "mpi"])
    p.add_argument("--workers", type=_positive(int), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--out", default="runs/search", help="run folder (must be empty unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="pin a decision instead of searching it, e.g. --fix window=crop:10 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("retrain", help="train an exported pipeline from scratch")
    p.add_argument("pipeline", metavar="PIPELINE.json")
    p.add_argument("--data", required=True, help=SPEC_HELP)
    p.add_argument("--epochs", type=_positive(int), default=40)
    p.add_argument("--max-minutes", type=_positive(float), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-bad", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, metavar="MODEL_DIR")
    p.set_defaults(func=_cmd_retrain)

    p = sub.add_parser("evaluate", help="score a trained model; prints one JSON object")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--data", required=True, help=SPEC_HELP)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-bad", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    space = sub.add_parser("space", help="inspect search spaces")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    p = space_sub.add_parser("show", help="print every decision of a search space and its size")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_space_show)
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
