"""Command-line pieces for cost-aware search: the reward/measurement options of ``n2nas search`` and the
``n2nas flops`` and ``n2nas report`` commands (wired into :mod:`n2nas.cli`)."""
from __future__ import annotations

import argparse
import dataclasses
import json


def _number(kind, positive: bool = True, nonpositive: bool = False):
    def parse(text: str):
        try:
            value = kind(float(text)) if kind is int else kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        if nonpositive and value > 0:
            raise argparse.ArgumentTypeError(f"must be <= 0 (a positive weight rewards cost), got {text}")
        return value
    return parse


def add_reward_options(p: argparse.ArgumentParser) -> None:
    """Reward and measurement options of ``n2nas search``."""
    g = p.add_argument_group("reward: metric x (FLOPs/target)^w x (energy/target)^v x (latency/target)^u")
    g.add_argument("--reward", default="mnas", choices=["mnas", "accuracy", "mnas-latency"],
                   help="preset: mnas (w = -0.07 on FLOPs, the default), accuracy (bare metric), "
                        "mnas-latency (u = -0.07 on latency); the options below override it")
    weight = _number(float, positive=False, nonpositive=True)
    g.add_argument("--flops-weight", type=weight, default=None, metavar="W",
                   help="w (<= 0; 0 turns the term off) (default: the --reward preset's, -0.07 for mnas)")
    g.add_argument("--flops-target", type=_number(float), default=None, metavar="FLOPS",
                   help="FLOPs per 30 s record, every multi-crop window (default: the FLOPs of the space's "
                        "default child)")
    g.add_argument("--energy-weight", type=weight, default=None, metavar="V",
                   help="v; needs a measured energy counter (NVML or RAPL) or --joules-per-flop (default 0: off)")
    g.add_argument("--energy-target", type=_number(float), default=None, metavar="J",
                   help="energy target in joules per record (default 1)")
    g.add_argument("--latency-weight", type=weight, default=None, metavar="U",
                   help="u (<= 0) (default: the --reward preset's, 0 except mnas-latency: -0.07)")
    g.add_argument("--latency-target", type=_number(float), default=None, metavar="MS",
                   help="latency target in ms per record (default 10)")
    g.add_argument("--max-flops", type=_number(float), default=None, metavar="FLOPS",
                   help="hard limit in FLOPs per 30 s record: larger children are infeasible (default: no limit)")
    g.add_argument("--max-params", type=_number(int), default=None, metavar="N",
                   help="hard limit on parameters (default: no limit)")
    g.add_argument("--max-latency-ms", type=_number(float), default=None, metavar="MS",
                   help="hard limit on latency in ms per record (default: no limit)")
    g.add_argument("--joules-per-flop", type=_number(float), default=None, metavar="J",
                   help="estimate energy as FLOPs x J instead of measuring it, labelled estimate:flops (default: "
                        "measure)")
    g.add_argument("--latency-repeats", type=_number(int), default=None, metavar="N",
                   help="timed passes per new architecture (median; default 5)")
    g.add_argument("--no-latency", action="store_true", help="do not time children (latency_ms is then null)")
    g.add_argument("--power-interval", type=_number(float), default=None, metavar="S",
                   help="power sampler period in seconds (default 1; power.csv + TensorBoard)")
    g.add_argument("--no-power-sampler", action="store_true", help="no background power sampling")


def reward_and_measure(args: argparse.Namespace):
    """``(RewardConfig, MeasureConfig)`` from the parsed options."""
    from n2nas.measure import LatencyConfig, MeasureConfig
    from n2nas.reward import RewardConfig

    base = {"mnas": RewardConfig.mnas, "accuracy": RewardConfig.accuracy_only,
            "mnas-latency": RewardConfig.mnas_latency}[args.reward]()
    names = {"flops_weight": "flops_weight", "flops_target": "flops_target", "energy_weight": "energy_weight",
             "energy_target": "energy_target_j", "latency_weight": "latency_weight",
             "latency_target": "latency_target_ms", "max_flops": "max_flops", "max_params": "max_params",
             "max_latency_ms": "max_latency_ms"}
    reward = dataclasses.replace(base, **{field: getattr(args, opt) for opt, field in names.items()
                                          if getattr(args, opt) is not None})
    latency = LatencyConfig(enabled=not args.no_latency, repeats=args.latency_repeats or LatencyConfig.repeats)
    interval = None if args.no_power_sampler else (args.power_interval or MeasureConfig.power_interval_s)
    return reward, MeasureConfig(latency=latency, joules_per_flop=args.joules_per_flop, power_interval_s=interval)


def _cmd_flops(args: argparse.Namespace) -> int:
    from pathlib import Path

    from n2nas.export import load_pipeline
    from n2nas.measure.cost import pipeline_cost

    path = Path(args.pipeline)
    if path.is_dir():
        path = path / "pipeline.json"  # a model folder written by `n2nas retrain`
    cost = pipeline_cost(load_pipeline(path), args.record_seconds, args.n_leads, args.n_classes)
    print(json.dumps({"pipeline": str(path), **cost}))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from n2nas.report import format_table, pareto_front, write_report

    png = write_report(args.run_dir)
    print(format_table(pareto_front(args.run_dir), show_all=args.all))
    print(f"plot: {png}")
    return 0


def add_cost_commands(sub) -> None:
    """``n2nas flops`` and ``n2nas report``."""
    p = sub.add_parser("flops", help="parameters and FLOPs of a pipeline (per input, per record, per second)")
    p.add_argument("pipeline", metavar="PIPELINE.json", help="a pipeline JSON file, or a retrained MODEL_DIR")
    p.add_argument("--record-seconds", type=_number(float), default=30.0, metavar="S",
                   help="record length in seconds for FLOPs per record (multi-crop windows) (default 30)")
    p.add_argument("--n-leads", type=_number(int), default=None, metavar="N",
                   help="input leads, when the pipeline file does not say (default: the file's)")
    p.add_argument("--n-classes", type=_number(int), default=None, metavar="N",
                   help="output classes, when the pipeline file does not say (default: the file's)")
    p.set_defaults(func=_cmd_flops)

    p = sub.add_parser("report", help="Pareto front table of a run folder; redraws its report.png")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `n2nas search`")
    p.add_argument("--all", action="store_true", help="list every scored trial, not only the front")
    p.set_defaults(func=_cmd_report)
