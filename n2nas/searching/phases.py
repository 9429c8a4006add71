"""The phases of a search, each a function over one :class:`~n2nas.searching.state.SearchState`: open (data, run folder, runner), screen,
epochs (warm-up, then shared training and controller updates), derive, finals, finish. ``loop.search`` calls
them in that order; everything a phase hands the next lives in the state, and everything a resumed search needs
is in its checkpoint."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.data.record import SIGNALS, Dataset
from n2nas.measure.cost import ArchitectureCosts
from n2nas.measure.run_measurement import start_measurement
from n2nas.metrics import reward_metric_name
from n2nas.runners import make_runner
from n2nas.searching.budget import Budget, PhaseClock
from n2nas.searching.checkpoint import save_checkpoint
from n2nas.searching.finals import run_search_finals
from n2nas.searching.derivation import derive_candidates, derive_stops, seconds_per_full_child
from n2nas.searching.preparation import check_budget, pins, prepare_everything, reward_set
from n2nas.searching.run_folder import (config_json, load_or_make_split, open_run_dir, rank, ranked_finals, rung_depth,
                                        write_best, write_run_summary)
from n2nas.searching.screen import screen_search
from n2nas.searching.state import SearchState
from n2nas.searching.trials import TrialLog, nan_rewards
from n2nas.space import Pipeline, sample_key
from n2nas.storage import numpy_rng_state, restore_numpy_rng

def open_search(data: str | Dataset, config, run_dir: Path, resume: bool, progress, resources: ExitStack,
                started: float) -> SearchState:
    """Read the data, open (or reopen) the run folder and its split, prepare every preprocessing variant, and
    build the runner, cost memo, trial log and measurement; a resumed search gets its checkpointed state back."""
    from n2nas.data.spec import default_cache_root, load_dataset
    from n2nas.data.table import fit_on_training
    from n2nas.train.primitives import pick_device
    from search_spaces import get_space

    clock = PhaseClock()
    progress.phase("preparing data")
    with clock("data"):
        dataset = load_dataset(data) if isinstance(data, str) else data
    # the floor is sized for ECG recordings (filter, window, a pass); a sparse EHR row costs ~1/20 of one
    check_budget(config, len(dataset) if dataset.modality == SIGNALS else len(dataset) // 20)
    space_def = get_space(config.space)
    space = space_def.space.pinned(pins(space_def, config))
    if not resume:  # before the run folder is written: a target no child can meet stops the search at once
        from types import SimpleNamespace

        from n2nas.searching.family import check_family

        check_family(config, space, ArchitectureCosts(space_def, SimpleNamespace(dataset=dataset)))
    resumed = open_run_dir(run_dir, config, resume)
    if resumed is not None:  # the resumed run's phases, plus this run's reading of the data
        read_s, clock = clock.seconds["data"], PhaseClock(resumed.get("phase_seconds"))
        clock.add("data", read_s)
    budget = Budget(config.budget_minutes, config.budget_epochs, config.warmup,
                    float(resumed["elapsed_s"]) if resumed else 0.0, started, clock=config.clock)
    split = load_or_make_split(run_dir, dataset, config, resume)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    # a clinical table's encoder is refitted on the training rows only (no-op for other data)
    dataset = fit_on_training(dataset, np.array([index[i] for i in split.train]))
    with clock("data"):
        # The space builds its own data context: prepared ECG signals, or sparse EHR rows (same interface).
        ctx = space_def.make_context(dataset, np.array([index[i] for i in split.train]),
                                     np.array([index[i] for i in split.val]), default_cache_root() / "prepared",
                                     config.data_workers or os.cpu_count() or 1)
        prepare_everything(ctx, space_def, space, progress, budget)
    torch.manual_seed(config.seed)  # dropout draws from torch's default generator; saved in checkpoints too
    runner = make_runner(config.runner, space_def, ctx, config.shared, pick_device(config.device), config.seed)
    resources.callback(runner.close)  # workers are released even when the search fails
    # the driver's own cost memo (a Ray or MPI runner measures on its workers): hard limits checked before training
    costs = runner.costs or ArchitectureCosts(space_def, ctx)
    initial = runner.state_dict()  # fresh weights, the same on resume (seeded): the finals start from them
    log = TrialLog(run_dir / "trials.jsonl")
    state = SearchState(config=config, data=data, run_dir=run_dir, progress=progress, resources=resources,
                        dataset=dataset, space_def=space_def, space=space, ctx=ctx, runner=runner, costs=costs,
                        initial=initial, log=log, clock=clock, budget=budget,
                        measured=start_measurement(runner, space, costs, config, run_dir, log, resources),
                        reward_idx=reward_set(ctx, config.reward_records, config.seed),
                        rng=np.random.default_rng(config.seed + 1), writer=_tensorboard(run_dir), resumed=resumed,
                        full_child_s=seconds_per_full_child(log.records, len(ctx.val_idx)),
                        # every backend scores with the shared config's metric
                        metric_name=reward_metric_name(config.shared.reward_metric, dataset.classes,
                                                       dataset.multilabel))
    if resumed is not None:
        runner.load_state_dict(resumed["runner"])
        state.epoch, state.step = int(resumed["epoch"]), int(resumed["step"])
        state.warmup_done = bool(resumed["warmup_done"])
        state.winner = resumed.get("screen_winner")
        state.screen_s = float(resumed.get("screen_s", 0.0))
    state.plan_derive()
    return state


def screen(state: SearchState) -> None:
    """Stage one: the preprocessing, screened on separate weights (skipped on resume); the space is then pinned to
    the winner and the controllers that sample it are built (or restored)."""
    from controllers import make_controller
    from controllers.random import RandomController

    config = state.config
    if state.winner is None and state.resumed is None:
        scored: dict[str, int] = {}  # each screened sample's latest trial step

        def score(sample):
            scored[sample_key(sample)] = state.step
            return state.score([sample], state.reward_idx, "screen")[0]

        def pick(last_rung) -> int | None:
            trials = [state.log.get(scored[sample_key(r["sample"])]) for r in last_rung]
            ok = [t for t in trials if t is not None and t["status"] == "ok" and t["reward"] is not None]
            default = sample_key(state.space.default_sample())
            picked = state.pick_within_noise(ok, state.reward_idx, "screen",
                                             {t["step"]: "default" for t in ok if sample_key(t["sample"]) == default})
            if picked is None:
                return None
            return next(r["candidate"] for r in last_rung if sample_key(r["sample"]) == sample_key(picked["sample"]))

        with state.clock("screen"):
            screened = screen_search(config.screen, state.runner, state.space, state.space_def, state.ctx,
                                     state.budget, config.seed, state.progress,
                                     state.run_dir / "checkpoint" / "screen", score, pick)
        if screened is not None:
            state.winner, state.screen_s = screened.winner, state.budget.elapsed
            state.runner.load_state_dict(screened.state)
    if state.winner:
        state.space = state.space.pinned(state.winner)
    state.budget.start_warmup_at(state.screen_s)
    state.controller = make_controller(config.controller, state.space.tokens, seed=config.seed,
                                       preset=config.controller_preset)
    state.uniform = RandomController(state.space.tokens, seed=config.seed + 2)
    if state.resumed is not None:
        state.controller.load_state_dict(state.resumed["controller"])
        state.uniform.load_state_dict(state.resumed["uniform"])
        restore_numpy_rng(state.rng, state.resumed["rng"])
        torch.set_rng_state(state.resumed["torch_rng"])


def search_epoch(state: SearchState) -> None:
    """One epoch: a pass of shared-weight training with uniform (warm-up) or controller-sampled children, then
    (after the warm-up) the controller's updates on scored children; ends with a checkpoint."""
    config, budget = state.config, state.budget
    warm = budget.in_warmup(state.epoch, state.warmup_done)
    state.warmup_done = state.warmup_done or not warm
    state.progress.phase("warm-up" if warm else "shared training")
    begun = time.monotonic()
    stats = shared_pass(state, state.uniform if warm else state.controller, "warmup" if warm else "shared")
    state.step_s = (time.monotonic() - begun) / max(1, stats["shared_steps"])
    if warm and state.epoch % config.warmup_scoring_every == 0 and not budget.search_over(state.epoch):
        # one uniformly drawn child scored every warmup_scoring_every-th warm-up epoch (the first at once): the log
        # shows whether the shared weights have left the class prior yet
        state.score([state.space.decode(state.uniform.sample(1)[0])], state.reward_idx, "warmup")
    for _ in range(0 if warm else config.controller_steps):
        if budget.search_over(state.epoch):
            break
        state.progress.phase("controller")
        with state.clock("controller"):
            samples = [state.space.decode(s) for s in state.controller.sample(config.children_per_step)]
        rewards = state.score(samples, state.reward_idx, "controller")
        with state.clock("controller"):
            update = state.controller.update([state.space.encode(s) for s in samples], nan_rewards(rewards))
        stats.update({f"controller_{k}": v for k, v in update.items()})
        state.full_child_s = seconds_per_full_child(state.log.records, len(state.ctx.val_idx)) or state.full_child_s
        state.plan_derive()
    state.epoch += 1
    _log_epoch(state.writer, state.epoch, stats, state.log)
    save_checkpoint(state.run_dir / "checkpoint", {
        "epoch": state.epoch, "step": state.step, "elapsed_s": budget.elapsed, "runner": state.runner.state_dict(),
        "controller": state.controller.state_dict(), "uniform": state.uniform.state_dict(),
        "warmup_done": state.warmup_done, "rng": numpy_rng_state(state.rng), "torch_rng": torch.get_rng_state(),
        "phase_seconds": state.clock.state(), "config": json.dumps(config_json(config)),
        "data": state.data if isinstance(state.data, str) else None,
        "screen_winner": state.winner or {}, "screen_s": state.screen_s})
    shutil.rmtree(state.run_dir / "checkpoint" / "screen", ignore_errors=True)  # the checkpoint holds the winner


def shared_pass(state: SearchState, sampler, phase: str) -> dict[str, float]:
    """One pass of shared-weight training over the training records (or ``config.shared_steps`` steps), one
    sampled child per batch, in chunks so a time budget is honoured within the epoch."""
    config, space = state.config, state.space
    chunk, steps, consumed, losses, failed = 8, 0, 0, [], 0
    n_train = len(state.ctx.train_idx)
    while True:
        if config.shared_steps is not None:
            if steps >= config.shared_steps:
                break
            n = min(chunk, config.shared_steps - steps)
        else:
            if consumed >= n_train:
                break
            n = chunk
        if steps and state.budget.search_over(state.epoch):
            break
        samples = [space.decode(s) for s in sampler.sample(n)]
        with state.clock(phase):
            out = state.runner.train_shared(samples)
        if math.isfinite(out.get("shared_loss", math.nan)):
            losses.append(out["shared_loss"])
        failed += int(out.get("shared_failed", 0))
        consumed += sum(int(state.space_def.training_settings(s)["batch_size"]) for s in samples)
        steps += n
        state.progress.elapsed(state.budget.elapsed)
    return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed,
            "shared_steps": steps}


def derive(state: SearchState) -> None:
    """The best controller-phase children and fresh samples, each scored on the whole validation split, until
    ``derive_children`` were scored ok or the budget leaves only the time of the finals and the family."""
    config = state.config
    state.progress.phase("derive")
    after_s = state.plan_derive()  # the finals' and the family's time
    for sample in derive_candidates(state.log.records, state.controller, state.space, config):
        # only children scored ok count: an infeasible or failed one gives the finals nothing to train
        statuses = [t["status"] for t in state.log.records if t["phase"] == "derive"]
        derived = statuses.count("ok")
        if derived >= config.derive_children or (
                state.log.get(state.step) is None and
                derive_stops(state.budget, derived, state.full_child_s or 0.0, after_s, config.finals.children,
                             derived + statuses.count("failed"))):
            break
        state.score([sample], state.ctx.val_idx, "derive")
    reference = state.space.default_sample()
    derived = {sample_key(t["sample"]) for t in state.log.records if t["phase"] == "derive"}
    if not config.finals.children and sample_key(reference) not in derived and state.feasible(reference):
        # without finals the pick is made among the derived children: the reference the search starts from is
        # always one of them, so a search never returns something worse and dearer than it without saying so
        state.score([reference], state.ctx.val_idx, "derive")


def finals(state: SearchState) -> None:
    """The best derived children and the default architecture, trained from scratch, decide the result."""
    state.progress.phase("finals")
    budget = state.budget
    with state.clock("final"):
        run_search_finals(state.config.finals, state.runner, state.initial, state.space_def, state.space, state.ctx,
                          state.log.records, lambda sample: state.score([sample], state.ctx.val_idx, "final")[0],
                          state.run_dir / "checkpoint" / "final",
                          lambda: budget.total_s and budget.total_s - budget.elapsed - state.family_s(),
                          feasible=state.feasible)


def family(state: SearchState) -> None:
    """Train once, deploy many: for each of ``config.family.flops_targets`` (smallest first) the controller searches
    again under that FLOPs limit on the shared weights alone, and the winner is written to ``RUN/family/``
    (:func:`n2nas.searching.family.add_members`). Members a resumed run already wrote are kept."""
    from n2nas.searching.family import FAMILY_DIR, add_members, member_name, read_family

    config = state.config
    targets = sorted(config.family.flops_targets)
    # a controller of its own per target, seeded by its position: a resumed search replays it from the log
    add_members(state, targets, [config.seed + 1000 + i for i in range(len(targets))],
                [state.run_dir / FAMILY_DIR / member_name(t) for t in targets],
                keep=[m["name"] for m in read_family(state.run_dir)])


def finish(state: SearchState) -> list[Pipeline]:
    """Rank the scored children and write ``best_pipeline.json``, ``report.png`` and ``summary.json``."""
    from n2nas.searching.report import write_report

    pipelines = rank(state.log.records, state.space, state.dataset, state.config, first=final_pick(state))
    write_best(state.run_dir, pipelines)
    write_report(state.run_dir)
    write_run_summary(state.run_dir, state.log.records, state.clock, state.data, state.config, state.budget)
    state.writer.close()
    return pipelines


def final_pick(state: SearchState) -> dict[str, Any] | None:
    """The search's result by the noise rule (:mod:`n2nas.searching.noise`): among the finalists of the finals' last
    rung (or, without finals, every derived child), the cheapest whose validation score is within the noise of
    the best; the space's default architecture is labelled ``reference``. None when nothing can be compared."""
    trials = state.log.records
    finals = ranked_finals(trials)
    if finals:
        depth = rung_depth(trials)
        top = depth[sample_key(finals[0]["sample"])]
        candidates = [t for t in finals if depth[sample_key(t["sample"])] == top]
    else:
        candidates = [t for t in trials if t["phase"] == "derive" and t["status"] == "ok" and t["reward"] is not None]
    reference = sample_key(state.space.default_sample())
    labels = {t["step"]: "reference" for t in candidates if sample_key(t["sample"]) == reference}
    return state.pick_within_noise(candidates, state.ctx.val_idx, "pick", labels)


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
