"""``n2nas search``: options (search size, reward and measurement, distributed backends) and the final summary."""
from __future__ import annotations

import argparse
import dataclasses
import json

from n2nas.cli.options import DEVICE_HELP, number, parse_fixed
from n2nas.errors import ConfigError

def register(sub) -> None:
    """Add ``n2nas search`` to the command tree."""
    from controllers import CONTROLLERS, controller_presets
    from n2nas.data.spec import SPEC_HELP
    from n2nas.presets import presets_of, summary
    from n2nas.runners import BACKENDS
    from n2nas.searching.loop import SearchConfig

    search_presets = list(presets_of(SearchConfig))

    p = sub.add_parser("search", help="search a pipeline (ENAS: weight-shared supernet + controller)",
                       description="Search a pipeline. Prints a summary at the end (best pipeline, its score and "
                                   "cost, children scored, where the time went, the retrain command); --json "
                                   "prints it as one JSON object. The run folder gets summary.json too.")
    p.add_argument("--space", default=None,
                   help="search space, see `n2nas space show` (default: the preset's; ecg-small, ecg for gpu)")
    p.add_argument("--controller", default=None, choices=list(CONTROLLERS),
                   help="what samples children (default: the preset's, enas: LSTM + REINFORCE)")
    p.add_argument("--controller-preset", default=None, metavar="NAME",
                   help="the controller's named configuration: " + "; ".join(
                       f"{name}: {', '.join(controller_presets(name))}" for name in CONTROLLERS
                       if controller_presets(name)) + " (default: the controller's first)")
    p.add_argument("--data", default="sample", help=f"data SPEC: {SPEC_HELP} (default: sample)")
    p.add_argument("--preset", default="demo", choices=search_presets,
                   help="search size, every option left unset keeps the preset's value: " + "; ".join(
                       f"{name} = {summary(SearchConfig, name)}" for name in search_presets) + " (default: demo)")
    p.add_argument("--budget-minutes", type=number(float), default=None, metavar="M",
                   help="end the whole search within M minutes of wall time, data preparation and derive phase "
                        "included: 30%% warm-up, then ENAS epochs, then a derive reserve of 5-25%% sized from the "
                        "measured scoring time (default: the preset's)")
    p.add_argument("--budget-epochs", type=number(int), default=None, metavar="E",
                   help="stop after E search epochs (one pass of shared training, then controller steps; the first "
                        "30%% are warm-up); with --budget-minutes, "
                        "whichever ends first (default: the preset's)")
    p.add_argument("--clock", default=None, choices=["wall", "cpu"],
                   help="what --budget-minutes counts: wall time, or the CPU time of the search's process (other "
                        "jobs on the machine then do not change what the budget buys; local backend only) "
                        "(default: the preset's, wall)")
    p.add_argument("--backend", default=None, choices=list(BACKENDS),
                   help="local (one process), ray (actors), mpi (launch with mpiexec -n N python -m mpi4py -m "
                        "n2nas.cli search --backend mpi ...) (default: the preset's, local)")
    p.add_argument("--workers", type=number(int), default=None, metavar="N",
                   help="Ray actors, or MPI ranks (default: 1; for mpi the number of ranks mpiexec started)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed of the split, controller and weights (default: the preset's, 0)")
    p.add_argument("--device", default=None,
                   help=DEVICE_HELP.replace("(default auto)", "(default: the preset's, auto)"))
    p.add_argument("--out", default="runs/search", metavar="RUN_DIR",
                   help="run folder, must be empty unless --resume (default runs/search)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="pin a decision instead of searching it, e.g. --fix window=crop:10 (repeatable; added to "
                        "the preset's pins; default: nothing more pinned)")
    p.add_argument("--screen", type=int, default=None, metavar="N",
                   help="stage one: N preprocessing candidates, each trained on its own weights, narrowed by "
                        "successive halving before weight sharing starts; 0 = off (default: the preset's, 9)")
    p.add_argument("--finals", type=int, default=None, metavar="N",
                   help="train the N best derived children and the space's default net from scratch to pick "
                        "best_pipeline.json; 0 = the shared weights pick (default: the preset's; cpu-3h: 0)")
    p.add_argument("--quiet", action="store_true", help="no live progress line on stderr (the summary still prints)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (run_dir, trials, best_reward, best_pipeline, best, "
                        "phase_seconds, next_command ...) instead of text")
    p.add_argument("--flops-targets", type=_flops_list, default=None, metavar="F1,F2,...",
                   help="train the supernet once, then cut one model per target (FLOPs per 30 s record, e.g. "
                        "0.05e9,0.1e9,0.33e9) with inherited weights into RUN/family/ (default: the preset's, none)")
    p.add_argument("--finetune-epochs", type=number(int, positive=False), default=None, metavar="E",
                   help="fine-tune each family member from its inherited weights for E epochs (passes over the "
                        "training records) with the one trainer; the inherited folder is kept beside it; 0 = off "
                        "(default: the preset's)")
    add_reward_options(p)
    add_runner_options(p)
    p.set_defaults(func=_cmd_search)


def _flops_list(text: str) -> tuple[float, ...]:
    """``0.05e9,0.1e9`` -> a tuple of positive floats."""
    parse = number(float)
    return tuple(parse(part) for part in text.split(",") if part.strip())


def search_config(args: argparse.Namespace):
    """The :class:`SearchConfig` the command line asks for: the ``--preset``, changed only where an option was
    given (an option left unset never replaces the preset's value)."""
    from n2nas.presets import named
    from n2nas.searching.loop import SearchConfig

    base = named(SearchConfig, args.preset)
    changes = {field: getattr(args, field) for field in ("space", "controller", "controller_preset", "seed", "device",
                                                     "clock")
               if getattr(args, field) is not None}
    if args.fix:
        changes["fixed"] = {**base.fixed, **parse_fixed(args.fix)}
    if args.screen is not None:
        if args.screen < 0:
            raise ConfigError("--screen", f"expected 0 (off) or a number of candidates, got {args.screen}")
        changes["screen"] = dataclasses.replace(base.screen, candidates=args.screen)
    if args.finals is not None:
        if args.finals < 0:
            raise ConfigError("--finals", f"expected 0 (off) or a number of children, got {args.finals}")
        changes["finals"] = dataclasses.replace(base.finals, children=args.finals, reference=args.finals > 0)
    if args.budget_minutes is not None:
        changes.update(budget_minutes=args.budget_minutes, budget_epochs=args.budget_epochs)
    elif args.budget_epochs is not None:
        changes.update(budget_epochs=args.budget_epochs, budget_minutes=None)
    if args.flops_targets is not None:
        changes["family"] = dataclasses.replace(changes.get("family", base.family), flops_targets=args.flops_targets)
    if args.finetune_epochs is not None:
        changes["family"] = dataclasses.replace(changes.get("family", base.family),
                                                finetune_epochs=args.finetune_epochs)
    reward, measure = reward_and_measure(args, base.reward, base.measure)
    return dataclasses.replace(base, **changes, reward=reward, measure=measure, runner=runner_config(args, base.runner))


def _cmd_search(args: argparse.Namespace) -> int:
    from n2nas.runners import guarded
    from n2nas.searching.loop import search

    config = search_config(args)
    with guarded(config.runner):
        result = search(args.data, config, out=args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a non-root MPI rank: rank 0 writes the run folder and reports
        return 0
    from n2nas.searching.run_summary import format_summary, load_summary

    summary = load_summary(result.run_dir) or _summary_of(result, args.data)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def _summary_of(result, data_spec: str) -> dict:
    """The summary rebuilt from a search result, for a search loop that did not write ``summary.json``."""
    from n2nas.searching.run_summary import build_summary

    best = json.loads((result.run_dir / "best_pipeline.json").read_text())
    return build_summary(result.run_dir, result.trials, best, {}, data_spec)


def add_reward_options(p: argparse.ArgumentParser) -> None:
    """Reward and measurement options of ``n2nas search``."""
    from n2nas.measure.reward import RewardConfig
    from n2nas.presets import presets_of

    g = p.add_argument_group("reward: metric x (FLOPs/target)^w x (energy/target)^v x (latency/target)^u")
    g.add_argument("--reward", default=None, choices=list(presets_of(RewardConfig)),
                   help="reward preset: mnas (w = -0.07 on FLOPs), accuracy (bare metric), mnas-latency (u = -0.07 "
                        "on latency); the options below override it (default: the search preset's: mnas, "
                        "accuracy for cpu-hour)")
    weight = number(float, positive=False, nonpositive=True)
    g.add_argument("--flops-weight", type=weight, default=None, metavar="W",
                   help="w (<= 0; 0 turns the term off) (default: the reward preset's, -0.07 for mnas)")
    g.add_argument("--flops-target", type=number(float), default=None, metavar="FLOPS",
                   help="FLOPs per 30 s record, every multi-crop window (default: the FLOPs of the space's "
                        "default child)")
    g.add_argument("--energy-weight", type=weight, default=None, metavar="V",
                   help="v; needs a measured energy counter (NVML or RAPL) or --joules-per-flop (default 0: off)")
    g.add_argument("--energy-target", type=number(float), default=None, metavar="J",
                   help="energy target in joules per record (default 1)")
    g.add_argument("--latency-weight", type=weight, default=None, metavar="U",
                   help="u (<= 0) (default: the --reward preset's, 0 except mnas-latency: -0.07)")
    g.add_argument("--latency-target", type=number(float), default=None, metavar="MS",
                   help="latency target in ms per record (default 10)")
    g.add_argument("--max-flops", type=number(float), default=None, metavar="FLOPS",
                   help="hard limit in FLOPs per 30 s record: larger children are infeasible (default: no limit)")
    g.add_argument("--max-params", type=number(int), default=None, metavar="N",
                   help="hard limit on parameters (default: no limit)")
    g.add_argument("--max-latency-ms", type=number(float), default=None, metavar="MS",
                   help="hard limit on latency in ms per record (default: no limit)")
    g.add_argument("--joules-per-flop", type=number(float), default=None, metavar="J",
                   help="estimate energy as FLOPs x J instead of measuring it, labelled estimate:flops (default: "
                        "measure)")
    g.add_argument("--latency-repeats", type=number(int), default=None, metavar="N",
                   help="timed passes per new architecture (median; default: the preset's, 5)")
    g.add_argument("--no-latency", action="store_true", help="do not time children (latency_ms is then null)")
    g.add_argument("--power-interval", type=number(float), default=None, metavar="S",
                   help="power sampler period in seconds (default 1; power.csv + TensorBoard)")
    g.add_argument("--no-power-sampler", action="store_true", help="no background power sampling")


def reward_and_measure(args: argparse.Namespace, reward=None, measure=None):
    """``(RewardConfig, MeasureConfig)``: ``reward`` and ``measure`` (default: the plain configs), replaced by the
    ``--reward`` preset when one is named, then changed by each reward or measurement option that was given."""
    from n2nas.measure import LatencyConfig, MeasureConfig
    from n2nas.measure.reward import RewardConfig
    from n2nas.presets import named

    reward = named(RewardConfig, args.reward, "--reward") if args.reward else (reward or RewardConfig())
    measure = measure or MeasureConfig()
    names = {"flops_weight": "flops_weight", "flops_target": "flops_target", "energy_weight": "energy_weight",
             "energy_target": "energy_target_j", "latency_weight": "latency_weight",
             "latency_target": "latency_target_ms", "max_flops": "max_flops", "max_params": "max_params",
             "max_latency_ms": "max_latency_ms"}
    reward = dataclasses.replace(reward, **{field: getattr(args, opt) for opt, field in names.items()
                                            if getattr(args, opt) is not None})
    latency = measure.latency
    if args.no_latency or args.latency_repeats is not None:
        latency = LatencyConfig(enabled=latency.enabled and not args.no_latency,
                                repeats=args.latency_repeats or latency.repeats)
    interval = None if args.no_power_sampler else (args.power_interval or measure.power_interval_s)
    joules = measure.joules_per_flop if args.joules_per_flop is None else args.joules_per_flop
    return reward, MeasureConfig(latency=latency, joules_per_flop=joules, power_interval_s=interval)


def add_runner_options(p: argparse.ArgumentParser) -> None:
    """Options of ``--backend ray|mpi`` (``--backend`` and ``--workers`` themselves are declared by the caller)."""
    g = p.add_argument_group("distributed backends (--backend ray|mpi)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join: auto, or HOST:PORT (default: start a local Ray)")
    g.add_argument("--cpus-per-worker", type=float, default=None,
                   help="Ray: CPU cores reserved per worker (default: the preset's, 1)")
    g.add_argument("--gpus-per-worker", type=float, default=None,
                   help="Ray: GPUs per worker, e.g. 1 or 0.5 (default: the preset's, 0)")
    g.add_argument("--mpi-mode", default=None, choices=["sync", "async"],
                   help="MPI: sync (gradients averaged every step) or async (rank 0 is a parameter server) "
                        "(default: the preset's, sync)")
    g.add_argument("--weighting", type=float, default=None, metavar="W",
                   help="MPI async: history weight; the server keeps W/(W+1) of its weights per update "
                        "(default: the preset's, 1)")
    g.add_argument("--staleness", type=int, default=None, metavar="K",
                   help="MPI async: updates computed from weights more than K versions old are dropped "
                        "(default: the preset's, 4)")


def runner_config(args: argparse.Namespace, base=None):
    """The RunnerConfig the command line asks for: ``base`` (default: the plain config) changed where an option was
    given. MPI's worker count is the job's rank count."""
    from n2nas.runners import RunnerConfig

    base = base or RunnerConfig()
    options = {"backend": "backend", "workers": "workers", "ray_address": "address",
               "cpus_per_worker": "cpus_per_worker", "gpus_per_worker": "gpus_per_worker", "mpi_mode": "mpi_mode",
               "weighting": "weighting", "staleness": "staleness"}
    changes = {field: getattr(args, opt) for opt, field in options.items() if getattr(args, opt) is not None}
    backend = changes.get("backend", base.backend)
    if backend == "mpi" and args.workers is None:
        from n2nas.runners.mpi import world

        changes["workers"] = world()[2]
    elif backend == "local" and args.workers is None:
        changes["workers"] = 1
    return dataclasses.replace(base, **changes)
