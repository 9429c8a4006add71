"""The ENAS loop: shared-weight phase, controller phase, derive phase; run folder, resume and budget."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.data.record import Dataset
from n2nas.errors import ConfigError
from n2nas.measure import MeasureConfig
from n2nas.metrics import reward_metric_name
from n2nas.measure.cost import ArchitectureCosts
from n2nas.measure.reward import RewardConfig
from n2nas.measure.run import preflight, start_measurement
from n2nas.runners import RunnerConfig, make_runner
from n2nas.runners.local import SharedTrainingConfig
from n2nas.searching.budget import Budget, PhaseClock
from n2nas.searching.checkpoint import save_checkpoint
from n2nas.searching.plan import (check_budget, derive_candidates, derive_stops, pins, prepare_everything,
                                  reward_set, score_board, seconds_per_full_child)
from n2nas.searching.finals import RESERVE_MARGIN, FinalsConfig, finals_seconds, run_search_finals
from n2nas.searching.screen import ScreenConfig, screen_search
from n2nas.searching.run_folder import (config_json, load_or_make_split, nan_rewards, open_run_dir, rank, trial_line,
                                        write_best, write_run_summary)
from n2nas.searching.trials import TrialLog
from n2nas.space import Pipeline
from n2nas.storage import numpy_rng_state, restore_numpy_rng


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how long. Budget: whichever of ``budget_minutes`` / ``budget_epochs`` ends first.

    Stage one (``screen``) picks the preprocessing by successive halving, each candidate training the space's
    default architecture on its own weights (:mod:`n2nas.searching.screen`); the winner's weights start the
    weight-shared stage. An epoch is one pass of shared-weight training over the training records (ENAS), one sampled child per
    batch, then ``controller_steps`` controller updates of ``children_per_step`` children each, scored on a
    fixed, stratified reward set of ``reward_records`` validation records. The first ``warmup`` share of the
    budget trains the supernet with uniformly sampled children (SPOS) before the controller acts. The derive
    phase rescores the ``derive_top`` best controller-phase children and fresh controller samples, up to
    ``derive_children`` in all, on the whole validation split; the ``finals`` train the best of them (and the
    default architecture) from scratch for a few passes and the best trained one is the result
    (:mod:`n2nas.searching.finals`).
    """

    space: str = "ecg-small"
    controller: str = "enas"
    enas_preset: str = "few_updates"  # ENASConfig preset (paper | enas_macro_script | few_updates)
    seed: int = 0
    budget_minutes: float | None = None
    budget_epochs: int | None = 10
    val_fraction: float = 0.2
    warmup: float = 0.3             # share of the budget (minutes or epochs) trained with uniform children
    warmup_scoring_every: int = 1   # one uniform child scored every this many warm-up epochs (a progress sign)
    shared_steps: int | None = None  # shared steps per epoch; None = one pass over the training records
    controller_steps: int = 2       # controller updates per epoch
    children_per_step: int = 5      # children scored per controller update
    reward_records: int | None = 400  # fixed stratified reward set drawn from validation; None = all of it
    derive_children: int = 12       # children scored on the full validation split at the end
    derive_top: int = 4             # of which the best controller-phase children (the rest sampled afresh)
    top_k: int = 5
    screen: ScreenConfig = ScreenConfig()      # stage one: preprocessing screened on own weights
    finals: FinalsConfig = FinalsConfig()      # the best derived children trained from scratch to pick the result
    shared: SharedTrainingConfig = SharedTrainingConfig()
    runner: RunnerConfig = RunnerConfig()      # backend (local | ray | mpi), workers, sync/async (n2nas.runners)
    reward: RewardConfig = RewardConfig()      # metric x cost terms, hard limits (see n2nas.measure.reward)
    measure: MeasureConfig = MeasureConfig()   # latency timing, energy estimate, power sampling
    device: str = "auto"
    data_workers: int = 0           # processes preparing data; 0 = one per CPU core
    fixed: dict[str, Any] = field(default_factory=dict)  # labels pinned to one value (not searched)
    # Training tokens the supernet cannot score (it trains with its own optimizer) are pinned to the space's
    # defaults unless ``fixed`` names them: searching them through shared weights would only add noise.
    pin_unscored: bool = True

    def __post_init__(self):
        if self.warmup_scoring_every < 1:
            raise ConfigError("warmup_scoring_every", f"must be >= 1, got {self.warmup_scoring_every}")

    @staticmethod
    def demo() -> "SearchConfig":
        """The bundled 300-record sample in 4 minutes on 2 CPU cores (the README's first command), ``ecg-cpu``."""
        return SearchConfig(space="ecg-cpu", budget_minutes=4.0, budget_epochs=None, reward_records=None,
                            derive_children=8, controller_steps=2, children_per_step=4)

    @staticmethod
    def cpu_hour() -> "SearchConfig":
        """A PhysioNet-2017-sized data set (~6000 records) in 60 minutes on 2 CPU cores, ``ecg-cpu`` (the decisions
        weight sharing can score in that time). 18 preprocessing candidates are screened (18 -> 6 -> 2). Accuracy
        first: no FLOPs term (FLOPs are still measured and reported; ``--flops-weight`` adds one). With -0.02 the
        controller settled on width 0.5 (4x cheaper than the plain CNN) and the retrained result lost 0.085 CinC
        F1 to it: at this size the cheapest nets are not yet accurate enough to trade.

        Two controller updates of one child each per pass over the data, as ENAS updates on one child a step, and
        one warm-up child scored every fourth warm-up epoch. The screen keeps the best sixth of its first rung
        (18 -> 3) and stops there. Why: with 2 x 3 children and 18 -> 6 -> 2, a 60-min search spent 15.9% on
        scoring and 18.6% on the screen, and shared-weight training got 51.8%; the screen's extra rung only
        re-ranked the same winner (its 3-pass and 9-pass orders agreed), and each child costs 1.6 s to score."""
        return SearchConfig(space="ecg-cpu", budget_minutes=60.0, budget_epochs=None, reward_records=400,
                            controller_steps=2, children_per_step=1, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=18, keep=1 / 6),
                            reward=RewardConfig.accuracy_only())

    @staticmethod
    def twelve_lead() -> "SearchConfig":
        """12-lead, multi-label records of PTB-XL size (~1,600 records at 100 Hz) in 30 minutes on 2 CPU cores,
        ``ecg-12lead``: the lead set (12, 6, 3, 2, 1), rate, filter, normalisation and crop length are screened
        on own weights (15 candidates, best third goes on), then the architecture is searched through shared
        weights. The reward is macro AUROC over the whole validation split (``reward_records=None``); accuracy
        first, no FLOPs term (``--flops-weight`` adds one to trade leads and size against AUROC)."""
        return SearchConfig(space="ecg-12lead", budget_minutes=30.0, budget_epochs=None, reward_records=None,
                            controller_steps=2, children_per_step=1, warmup_scoring_every=4, derive_children=12,
                            derive_top=4, screen=ScreenConfig(candidates=15, keep=1 / 3),
                            reward=RewardConfig.accuracy_only())

    @staticmethod
    def gpu() -> "SearchConfig":
        """The N2NAS-sized ``ecg`` space on a full data set, 60 minutes on one GPU."""
        return SearchConfig(space="ecg", budget_minutes=60.0, budget_epochs=None, reward_records=None,
                            controller_steps=4, children_per_step=8, derive_children=24, derive_top=6, top_k=10)

    @staticmethod
    def named(name: str) -> "SearchConfig":
        """The preset called ``name`` (demo, default, cpu-hour, gpu; ``thorough`` is gpu's old name)."""
        presets = {"demo": SearchConfig.demo, "default": SearchConfig, "cpu-hour": SearchConfig.cpu_hour,
                   "12-lead": SearchConfig.twelve_lead, "gpu": SearchConfig.gpu, "thorough": SearchConfig.gpu}
        if name not in presets:
            raise ConfigError("--preset", f"unknown preset {name!r} (known: {', '.join(presets)})")
        return presets[name]()


PRESETS = ("demo", "default", "cpu-hour", "12-lead", "gpu")


@dataclass
class SearchResult:
    """What a search leaves: the run folder, every trial, and the ranked derived pipelines."""

    run_dir: Path
    trials: list[dict[str, Any]]
    pipelines: list[Pipeline]

    def best(self, k: int = 1) -> list[Pipeline]:
        """The top ``k`` pipelines by full-validation score."""
        return self.pipelines[:k]


def search(data: str | Dataset = "sample", config: SearchConfig = SearchConfig(), out: str | Path = "runs/search",
           resume: bool = False, progress: Any = False) -> SearchResult | None:
    """Run (or resume) a search and leave a complete run folder in ``out``.

    ``progress``: True shows a live display on stderr (:class:`n2nas.searching.progress.SearchProgress`), a string
    does too with that label leading each line, or pass one.
    With the MPI backend every rank calls this; rank 0 runs the search and writes the run folder, the other
    ranks serve its runner and return None.
    """
    started = time.monotonic()  # the budget counts from here: reading and preparing data included
    if config.runner.backend == "mpi":
        from n2nas.runners.mpi import serve_if_worker

        if serve_if_worker(data):
            return None
    preflight(config)  # fail before the run folder is created
    with ExitStack() as resources:  # the power sampler and energy meters stop even when the search fails
        shown = _progress(progress, config)
        resources.callback(shown.close)
        return _search(data, config, out, resume, shown, resources, started)


def _search(data: str | Dataset, config: SearchConfig, out: str | Path, resume: bool, progress,
            resources: ExitStack, started: float) -> SearchResult:
    from controllers import make_controller
    from controllers.random import RandomController
    from n2nas.data.spec import default_cache_root, load_dataset
    from n2nas.train.primitives import pick_device
    from search_spaces import get_space

    run_dir = Path(out)
    clock = PhaseClock()
    progress.phase("preparing data")
    with clock("data"):
        dataset = load_dataset(data) if isinstance(data, str) else data
    check_budget(config, len(dataset))
    state = open_run_dir(run_dir, config, resume)
    if state is not None:  # the resumed run's phases, plus this run's reading of the data
        read_s, clock = clock.seconds["data"], PhaseClock(state.get("phase_seconds"))
        clock.add("data", read_s)
    budget = Budget(config.budget_minutes, config.budget_epochs, config.warmup,
                    float(state["elapsed_s"]) if state else 0.0, started)
    split = load_or_make_split(run_dir, dataset, config, resume)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    space_def = get_space(config.space)
    space = space_def.space.pinned(pins(space_def, config))
    with clock("data"):
        # The space builds its own data context: prepared ECG signals, or sparse EHR rows (same interface).
        ctx = space_def.make_context(dataset, np.array([index[i] for i in split.train]),
                                     np.array([index[i] for i in split.val]), default_cache_root() / "prepared",
                                     config.data_workers or os.cpu_count() or 1)
        prepare_everything(ctx, space_def, space, progress, budget)
    torch.manual_seed(config.seed)  # dropout draws from torch's default generator; saved in checkpoints too
    runner = make_runner(config.runner, space_def, ctx, config.shared, pick_device(config.device), config.seed)
    # the rewarded metric, named on the progress line (every backend scores with the shared config's metric)
    metric_name = reward_metric_name(config.shared.reward_metric, dataset.classes, dataset.multilabel)
    resources.callback(runner.close)  # workers are released even when the search fails
    # the driver's own cost memo (a Ray or MPI runner measures on its workers): hard limits checked before training
    costs = getattr(runner, "costs", None) or ArchitectureCosts(space_def, ctx)
    initial = runner.state_dict()  # fresh weights, the same on resume (seeded): the finals start from them
    rng = np.random.default_rng(config.seed + 1)
    log = TrialLog(run_dir / "trials.jsonl")
    epoch, step, warmup_done = 0, 0, False
    if state is not None:
        runner.load_state_dict(state["runner"])
        epoch, step, warmup_done = int(state["epoch"]), int(state["step"]), bool(state["warmup_done"])
    writer = _tensorboard(run_dir)
    measured = start_measurement(runner, space, costs, config, run_dir, log, resources)
    reward_idx = reward_set(ctx, config.reward_records, config.seed)
    full_child_s = seconds_per_full_child(log.records, len(ctx.val_idx))
    step_s = None  # measured seconds per shared step, for the finals' reserve

    def plan_derive() -> float:
        """Reserve the derive and finals time (the finals with a margin); returns the finals' bare estimate."""
        finals_s = finals_seconds(config.finals, space_def, ctx, step_s, full_child_s)
        budget.plan_derive(full_child_s or 0.0, config.derive_children, RESERVE_MARGIN * finals_s)
        return finals_s

    plan_derive()

    def score_and_log(samples, records, phase):
        """Score children unless a resumed log already holds them; returns their rewards."""
        nonlocal step
        steps = list(range(step, step + len(samples)))
        results = None
        if any(log.get(s) is None for s in steps):
            begun = time.monotonic()
            # screen scorings are inside the screen's own clock
            booked = {"derive": "derive", "screen": None, "final": None}.get(phase, "scoring")
            with clock(booked) if booked else ExitStack():
                # the screen's probe (the default architecture) compares data representations; it is never a
                # result, so hard limits meant for the searched children must not leave it unscored
                results = runner.score(samples, records, limits=phase != "screen")
            if booked:
                clock.move(booked, "cost", sum(r.get("cost_s", 0.0) for r in results))
            for r in results:
                r["wall_s"] = (time.monotonic() - begun) / len(samples)
        rewards = []
        for i, (st, sample) in enumerate(zip(steps, samples)):
            logged = log.get(st) or log.append(trial_line(st, phase, epoch, sample, results[i], budget.elapsed,
                                                           measured, waive_limits=phase == "screen"))
            rewards.append(logged["reward"])
        step += len(samples)
        progress.elapsed(budget.elapsed)
        progress.scored(*score_board(log.records), metric_name=metric_name)
        return rewards

    # Stage one: the preprocessing, screened on separate weights; then the space is pinned to the winner.
    winner = state.get("screen_winner") if state is not None else None
    screen_s = float(state.get("screen_s", 0.0)) if state is not None else 0.0
    if winner is None and state is None:
        with clock("screen"):
            screened = screen_search(config.screen, runner, space, space_def, ctx, budget, config.seed, progress,
                                     run_dir / "checkpoint" / "screen",
                                     lambda sample: score_and_log([sample], reward_idx, "screen")[0])
        if screened is not None:
            winner, screen_s = screened.winner, budget.elapsed
            runner.load_state_dict(screened.state)
    if winner:
        space = space.pinned(winner)
    budget.start_warmup_at(screen_s)
    controller = make_controller(config.controller, space.tokens, seed=config.seed, enas_preset=config.enas_preset)
    uniform = RandomController(space.tokens, seed=config.seed + 2)  # the warm-up's sampler
    if state is not None:
        controller.load_state_dict(state["controller"])
        uniform.load_state_dict(state["uniform"])
        restore_numpy_rng(rng, state["rng"])
        torch.set_rng_state(state["torch_rng"])

    while not budget.search_over(epoch):
        warm = budget.in_warmup(epoch, warmup_done)
        if not warm:
            warmup_done = True
        progress.phase("warm-up" if warm else "shared training")
        begun = time.monotonic()
        stats = _shared_epoch(runner, uniform if warm else controller, space, space_def, ctx, config, budget,
                              epoch, clock, "warmup" if warm else "shared", progress)
        step_s = (time.monotonic() - begun) / max(1, stats["shared_steps"])
        if warm and epoch % config.warmup_scoring_every == 0 and not budget.search_over(epoch):
            # one uniformly drawn child scored every warmup_scoring_every-th warm-up epoch (the first at once): the
            # log shows whether the shared weights have left the class prior yet
            score_and_log([space.decode(uniform.sample(1)[0])], reward_idx, "warmup")
        for _ in range(0 if warm else config.controller_steps):
            if budget.search_over(epoch):
                break
            progress.phase("controller")
            with clock("controller"):
                samples = [space.decode(s) for s in controller.sample(config.children_per_step)]
            rewards = score_and_log(samples, reward_idx, "controller")
            with clock("controller"):
                update = controller.update([space.encode(s) for s in samples], nan_rewards(rewards))
            stats.update({f"controller_{k}": v for k, v in update.items()})
            full_child_s = seconds_per_full_child(log.records, len(ctx.val_idx)) or full_child_s
            plan_derive()
        epoch += 1
        _log_epoch(writer, epoch, stats, log)
        save_checkpoint(run_dir / "checkpoint", {
            "epoch": epoch, "step": step, "elapsed_s": budget.elapsed, "runner": runner.state_dict(),
            "controller": controller.state_dict(), "uniform": uniform.state_dict(), "warmup_done": warmup_done,
            "rng": numpy_rng_state(rng), "torch_rng": torch.get_rng_state(), "phase_seconds": clock.state(),
            "config": json.dumps(config_json(config)), "screen_winner": winner or {}, "screen_s": screen_s})
        shutil.rmtree(run_dir / "checkpoint" / "screen", ignore_errors=True)  # the checkpoint now holds the winner

    # Derive: the best controller-phase children and fresh samples, each scored on the whole validation split.
    progress.phase("derive")
    finals_s = plan_derive()
    for sample in derive_candidates(log.records, controller, space, config):
        # only children scored ok count: an infeasible or failed one gives the finals nothing to train
        statuses = [t["status"] for t in log.records if t["phase"] == "derive"]
        derived = statuses.count("ok")
        if derived >= config.derive_children or (
                log.get(step) is None and derive_stops(budget, derived, full_child_s or 0.0, finals_s,
                                                       config.finals.children, derived + statuses.count("failed"))):
            break
        score_and_log([sample], ctx.val_idx, "derive")
    # Finals: the best derived children and the default architecture, trained from scratch, decide the result.
    progress.phase("finals")
    with clock("final"):
        run_search_finals(config.finals, runner, initial, space_def, space, ctx, log.records,
                          lambda sample: score_and_log([sample], ctx.val_idx, "final")[0], run_dir / "checkpoint" / "final",
                          lambda: budget.total_s and budget.total_s - budget.elapsed,
                          feasible=lambda sample: not costs.limits_broken(config.reward, sample))
    writer.close()
    pipelines = rank(log.records, space, dataset, config)
    write_best(run_dir, pipelines)
    from n2nas.searching.report import write_report

    write_report(run_dir)
    write_run_summary(run_dir, log.records, clock, data, config, budget)
    return SearchResult(run_dir, list(log.records), pipelines)


def _shared_epoch(runner, sampler, space, space_def, ctx, config: SearchConfig, budget: Budget, epoch: int,
                  clock: PhaseClock, phase: str, progress) -> dict[str, float]:
    """One pass of shared-weight training over the training records (or ``config.shared_steps`` steps), one
    sampled child per batch, in chunks so a time budget is honoured within the epoch."""
    chunk, steps, consumed, losses, failed = 8, 0, 0, [], 0
    n_train = len(ctx.train_idx)
    while True:
        if config.shared_steps is not None:
            if steps >= config.shared_steps:
                break
            n = min(chunk, config.shared_steps - steps)
        else:
            if consumed >= n_train:
                break
            n = chunk
        if steps and budget.search_over(epoch):
            break
        samples = [space.decode(s) for s in sampler.sample(n)]
        with clock(phase):
            out = runner.train_shared(samples)
        if math.isfinite(out.get("shared_loss", math.nan)):
            losses.append(out["shared_loss"])
        failed += int(out.get("shared_failed", 0))
        consumed += sum(int(space_def.training_settings(s)["batch_size"]) for s in samples)
        steps += n
        progress.elapsed(budget.elapsed)
    return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed,
            "shared_steps": steps}


def _progress(progress: Any, config: SearchConfig):
    """The live display: ``progress`` itself when it is one, else a (possibly silent) ``SearchProgress``; a
    string is the label that starts its lines."""
    if hasattr(progress, "phase"):
        return progress
    from n2nas.searching.progress import SearchProgress

    budget_s = None if config.budget_minutes is None else 60.0 * config.budget_minutes
    label = progress if isinstance(progress, str) else "search"
    return SearchProgress(budget_s, enabled=bool(progress), label=label)


def _log_epoch(writer, epoch: int, stats: dict[str, float], log: TrialLog) -> None:
    """Epoch statistics and the reward so far to TensorBoard."""
    for key, value in stats.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            writer.add_scalar(f"search/{key}", value, epoch)
    rewards = [t["reward"] for t in log.records if t["reward"] is not None]
    if rewards:
        writer.add_scalar("search/best_reward", max(rewards), epoch)
        writer.add_scalar("search/mean_recent_reward", float(np.mean(rewards[-20:])), epoch)
    writer.flush()


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))
