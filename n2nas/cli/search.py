"""``n2nas search``: options (search size, reward and measurement, distributed backends) and the final summary."""
from __future__ import annotations

import argparse
import dataclasses
import json

from n2nas.cli.options import DEVICE_HELP, number, parse_fixed, positive
from n2nas.errors import ConfigError

# --preset names -> SearchConfig static methods ("thorough" is the old name of "gpu").
PRESET_HELP = ("search size: demo = the bundled sample, 4 minutes on 2 CPU cores; cpu-hour = a full "
               "PhysioNet-2017-sized data set (~6000 records), 60 minutes on 2 CPU cores; 12-lead = 12-lead "
               "multi-label records of PTB-XL size (~1600), lead set searched, 30 minutes on 2 CPU cores; gpu = a "
               "full data set on one GPU, the larger `ecg` space, 60 minutes; default = no time budget, 10 epochs "
               "(default: demo)")


def register(sub) -> None:
    """Add ``n2nas search`` to the command tree."""
    from controllers import CONTROLLERS
    from n2nas.data.spec import SPEC_HELP
    from n2nas.runners import BACKENDS

    p = sub.add_parser("search", help="search a pipeline (ENAS: weight-shared supernet + controller)",
                       description="Search a pipeline. Prints a summary at the end (best pipeline, its score and "
                                   "cost, children scored, where the time went, the retrain command); --json "
                                   "prints it as one JSON object. The run folder gets summary.json too.")
    p.add_argument("--space", default=None,
                   help="search space, see `n2nas space show` (default: the preset's; ecg-small, ecg for gpu)")
    p.add_argument("--controller", default="enas", choices=list(CONTROLLERS),
                   help="what samples children: enas (LSTM + REINFORCE), random, evolution, grid (default enas)")
    p.add_argument("--data", default="sample", help=f"data SPEC: {SPEC_HELP} (default: sample)")
    p.add_argument("--preset", default="demo", choices=["demo", "default", "cpu-hour", "12-lead", "gpu", "thorough"],
                   metavar="{demo,default,cpu-hour,12-lead,gpu}", help=PRESET_HELP)
    p.add_argument("--budget-minutes", type=positive(float), default=None, metavar="M",
                   help="end the whole search within M minutes of wall time, data preparation and derive phase "
                        "included: 30%% warm-up, then ENAS epochs, then a derive reserve of 5-25%% sized from the "
                        "measured scoring time (default: the preset's)")
    p.add_argument("--budget-epochs", type=positive(int), default=None, metavar="E",
                   help="stop after E search epochs (one pass of shared training, then controller steps; the first "
                        "30%% are warm-up); with --budget-minutes, "
                        "whichever ends first (default: the preset's)")
    p.add_argument("--backend", default="local", choices=list(BACKENDS),
                   help="local (one process), ray (actors), mpi (launch with mpiexec -n N python -m mpi4py -m "
                        "n2nas.cli search --backend mpi ...) (default local)")
    p.add_argument("--workers", type=positive(int), default=None, metavar="N",
                   help="Ray actors, or MPI ranks (default: 1; for mpi the number of ranks mpiexec started)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, controller and weights (default 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--out", default="runs/search", metavar="RUN_DIR",
                   help="run folder, must be empty unless --resume (default runs/search)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its checkpoint")
    p.add_argument("--fix", action="append", default=[], metavar="LABEL=VALUE",
                   help="pin a decision instead of searching it, e.g. --fix window=crop:10 (repeatable; "
                        "default: nothing pinned)")
    p.add_argument("--screen", type=int, default=None, metavar="N",
                   help="stage one: N preprocessing candidates, each trained on its own weights, narrowed by "
                        "successive halving before weight sharing starts; 0 = off (default: the preset's, 9)")
    p.add_argument("--quiet", action="store_true", help="no live progress line on stderr (the summary still prints)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (run_dir, trials, best_reward, best_pipeline, best, "
                        "phase_seconds, next_command ...) instead of text")
    add_reward_options(p)
    add_runner_options(p)
    p.set_defaults(func=_cmd_search)


def search_preset(name: str):
    """The :class:`SearchConfig` of a ``--preset`` name (demo, default, cpu-hour, gpu; thorough = gpu)."""
    from n2nas.searching.loop import SearchConfig

    return SearchConfig.named(name)


def _cmd_search(args: argparse.Namespace) -> int:
    from n2nas.runners import guarded
    from n2nas.searching.loop import search

    base = search_preset(args.preset)
    reward, measure = reward_and_measure(args)
    changes = {"controller": args.controller, "seed": args.seed, "device": args.device,
               "fixed": parse_fixed(args.fix), "reward": reward, "measure": measure}
    if args.space:
        changes["space"] = args.space
    if args.screen is not None:
        if args.screen < 0:
            raise ConfigError("--screen", f"expected 0 (off) or a number of candidates, got {args.screen}")
        changes["screen"] = dataclasses.replace(base.screen, candidates=args.screen)
    if args.budget_minutes is not None:
        changes.update(budget_minutes=args.budget_minutes, budget_epochs=args.budget_epochs)
    elif args.budget_epochs is not None:
        changes.update(budget_epochs=args.budget_epochs, budget_minutes=None)
    config = dataclasses.replace(base, **changes, runner=runner_config(args))
    with guarded(config.runner):
        result = search(args.data, config, out=args.out, resume=args.resume, progress=not args.quiet)
    if result is None:  # a non-root MPI rank: rank 0 writes the run folder and reports
        return 0
    from n2nas.searching.summary import format_summary, load_summary

    summary = load_summary(result.run_dir) or _summary_of(result, args.data)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def _summary_of(result, data_spec: str) -> dict:
    """The summary rebuilt from a search result, for a search loop that did not write ``summary.json``."""
    from n2nas.searching.summary import build_summary

    best = json.loads((result.run_dir / "best_pipeline.json").read_text())
    return build_summary(result.run_dir, result.trials, best, {}, data_spec)


def add_reward_options(p: argparse.ArgumentParser) -> None:
    """Reward and measurement options of ``n2nas search``."""
    g = p.add_argument_group("reward: metric x (FLOPs/target)^w x (energy/target)^v x (latency/target)^u")
    g.add_argument("--reward", default="mnas", choices=["mnas", "accuracy", "mnas-latency"],
                   help="preset: mnas (w = -0.07 on FLOPs, the default), accuracy (bare metric), "
                        "mnas-latency (u = -0.07 on latency); the options below override it")
    weight = number(float, positive=False, nonpositive=True)
    g.add_argument("--flops-weight", type=weight, default=None, metavar="W",
                   help="w (<= 0; 0 turns the term off) (default: the --reward preset's, -0.07 for mnas)")
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
                   help="timed passes per new architecture (median; default 5)")
    g.add_argument("--no-latency", action="store_true", help="do not time children (latency_ms is then null)")
    g.add_argument("--power-interval", type=number(float), default=None, metavar="S",
                   help="power sampler period in seconds (default 1; power.csv + TensorBoard)")
    g.add_argument("--no-power-sampler", action="store_true", help="no background power sampling")


def reward_and_measure(args: argparse.Namespace):
    """``(RewardConfig, MeasureConfig)`` from the parsed options."""
    from n2nas.measure import LatencyConfig, MeasureConfig
    from n2nas.measure.reward import RewardConfig

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


def add_runner_options(p: argparse.ArgumentParser) -> None:
    """Options of ``--backend ray|mpi`` (``--backend`` and ``--workers`` themselves are declared by the caller)."""
    g = p.add_argument_group("distributed backends (--backend ray|mpi)")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join: auto, or HOST:PORT (default: start a local Ray)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPU cores reserved per worker (default 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per worker, e.g. 1 or 0.5 (default 0)")
    g.add_argument("--mpi-mode", default="sync", choices=["sync", "async"],
                   help="MPI: sync (gradients averaged every step) or async (rank 0 is a parameter server) "
                        "(default sync)")
    g.add_argument("--weighting", type=float, default=1.0, metavar="W",
                   help="MPI async: history weight; the server keeps W/(W+1) of its weights per update "
                        "(default 1)")
    g.add_argument("--staleness", type=int, default=4, metavar="K",
                   help="MPI async: updates computed from weights more than K versions old are dropped "
                        "(default 4)")


def runner_config(args: argparse.Namespace):
    """The RunnerConfig the command line asks for. MPI's worker count is the job's rank count."""
    from n2nas.runners import RunnerConfig

    workers = args.workers
    if args.backend == "mpi" and workers is None:
        from n2nas.runners.mpi import world

        workers = world()[2]
    return RunnerConfig(backend=args.backend, workers=workers or 1, address=args.ray_address,
                        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                        mpi_mode=args.mpi_mode, weighting=args.weighting, staleness=args.staleness)
