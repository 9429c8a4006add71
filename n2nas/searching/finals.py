"""The finals: the search's last word comes from training, not from shared weights alone.

Shared-weight scores rank children only roughly (Kendall tau well below 1 even for well-trained supernets), and
the derive phase's best few are often within that noise of each other. So the best ``children`` derive-phase
children, plus the space's default architecture on the screened preprocessing (the reference the screen already
trained; a search must beat it to return anything else), are each trained from the supernet's *initial* weights for
the same number of steps on their own copy of the weights, and scored on the whole validation split (phase
``final`` in ``trials.jsonl``). The best of them is ``best_pipeline.json``. Early-training rank is a far better
guide to final rank than a shared-weight score (it is how successive halving and Hyperband pick).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.searching.screen import HalvingPlan, ScreenResult, steps_per_pass, successive_halving
from n2nas.space import sample_key
from n2nas.train.averaging import check_ema_decay


@dataclass(frozen=True)
class FinalsConfig:
    """``children`` best derive-phase children (plus the default architecture when ``reference``) trained from
    scratch for ``passes`` passes over the training records (at least ``min_steps`` steps) each; the best
    ``survivors`` then train on to ``growth`` times that and are scored again (0: one rung). ``children=0`` ranks
    by shared-weight score alone.

    Why a second rung: after three passes from scratch the finalists' scores spread widely, and such early scores
    favour small nets that converge fast over wider ones that end higher after a full retrain. Nine passes for the
    best two, at about the first rung's cost again, come closer to the retrain that follows
    (docs/search.md#the-finals). ``ema_decay`` (None: off) scores an exponential moving average of each
    candidate's weights, as the retrain does.

    Which finalist of the last rung is the result is decided by the noise rule (:mod:`n2nas.searching.noise`): the
    cheapest whose validation score is within the paired-bootstrap noise of the best.

    ``stretch``: with a time budget, the survivors' rung may train up to this many times its added steps to use
    what the reserve's safety margin (:data:`RESERVE_MARGIN`) left over (see :func:`successive_halving`).

    ``spread``: a token label (None: off); the finalists are first the best derived child of each value of that
    token, then the best of the rest. Why: shared weights can mis-rank whole families. In a 20-min diabetes130
    search the derived MLPs' top three were all *linear*, so the finals never trained a relu MLP, which trained
    alone beat the linear one (docs/ehr.md#the-ehr-cpu-preset).

    ``vary``: a token label (None: off), typically one the supernet cannot score and the search pins (dropout):
    the finals also train the best finalist with each other option of that token, so a decision that only
    training alone can judge is still made on validation. Why: the shared weights rank architectures, but their
    own optimizer makes them blind to regularisation; the finals train each candidate alone and can see it.

    ``carry_reference``: the reference trains in every rung whatever its first-rung rank, so a searched child is
    returned only when it beats the default architecture after the longest training the finals give. Why: on
    PTB-XL the finals' first rung (3 passes) spread as widely as the whole field, while the default network,
    resnet-12's, was the better net after a full retrain in four runs (docs/12-lead.md#the-12-lead-preset)."""

    children: int = 3
    passes: float = 3.0
    min_steps: int = 90
    reference: bool = True
    survivors: int = 2
    growth: float = 3.0
    ema_decay: float | None = 0.998
    stretch: float = 2.0
    spread: str | None = None
    vary: str | None = None
    carry_reference: bool = False

    def __post_init__(self):
        if self.children < 0 or self.passes <= 0 or self.min_steps < 1 or self.survivors < 0 or self.growth < 1:
            raise ConfigError("finals", "children >= 0, passes > 0, min_steps >= 1, survivors >= 0 and growth >= 1 "
                                        "required")
        if not self.stretch >= 1:
            raise ConfigError("finals.stretch", f"must be >= 1, got {self.stretch}")
        check_ema_decay("finals.ema_decay", self.ema_decay)

    def rungs(self, n: int) -> list[int]:
        """Candidates per rung for ``n`` finalists: all of them, then the survivors when fewer (the carried
        reference is not counted among them)."""
        return [n] + ([self.survivors] if 0 < self.survivors < n and self.growth > 1 else [])

    @staticmethod
    @preset()
    def off() -> "FinalsConfig":
        """No finals: the best derive-phase child by shared-weight score is the result."""
        return FinalsConfig(children=0, reference=False)


def finalists(trials: list[dict], reference: dict[str, Any] | None, n: int,
              spread: str | None = None) -> list[dict[str, Any]]:
    """The ``n`` best derive-phase samples by reward (with ``spread``, the best of each value of that token first),
    then ``reference`` (when given, not among them, and not known from the screen to break the reward's hard
    limits)."""
    derived = sorted((t for t in trials if t["phase"] == "derive" and t["status"] == "ok" and t["reward"] is not None),
                     key=lambda t: (-t["reward"], t["step"]))
    beyond = {sample_key(t["sample"]) for t in trials if t.get("limits_waived")}
    if reference and sample_key(reference) in beyond:
        reference = None  # training it would only end in an infeasible score
    samples = [t["sample"] for t in derived]
    if spread:  # the best of each value first (derived is best-first), in reward order, then the rest
        firsts = {}
        for sample in samples:
            firsts.setdefault(json.dumps(sample.get(spread), default=list), sample)
        samples = list(firsts.values()) + [s for s in samples if s not in firsts.values()]
    chosen, seen = [], set()
    for sample in samples[:n] + ([reference] if reference else []):
        key = sample_key(sample)
        if key not in seen:
            seen.add(key)
            chosen.append(sample)
    return chosen


def options_of(space, label: str) -> tuple:
    """The options of decision ``label`` of ``space`` (pinned or not)."""
    for d in space.flat:
        if d.label == label and hasattr(d, "options"):
            return tuple(d.options)
    raise ConfigError("finals.vary", f"{label!r} is not a choice of search space {space.name!r}")


def varied(candidates: list[dict[str, Any]], label: str, options: tuple) -> list[dict[str, Any]]:
    """``candidates`` and then the first (best) of them with each other option of ``label``, without duplicates."""
    keys = {sample_key(c) for c in candidates}
    out = list(candidates)
    for option in options:
        variant = {**candidates[0], label: option}
        key = sample_key(variant)
        if key not in keys:
            keys.add(key)
            out.append(variant)
    return out


def run_finals(config: FinalsConfig, runner, initial: dict[str, Any], candidates: list[dict[str, Any]],
               steps_per_pass: int, score: Callable[[dict[str, Any]], float | None], folder: Path,
               time_left: Callable[[], float | None], scale: list[float] | None = None,
               carried: int | None = None) -> ScreenResult | None:
    """Train every candidate from ``initial`` for the same number of passes over the data (``steps_per_pass`` at
    the reference batch size, times ``scale[i]``) and score it, then the survivors longer
    (:func:`successive_halving` over :meth:`FinalsConfig.rungs`, candidate ``carried`` in every rung); the
    runner's own state is restored afterwards. None with fewer than two candidates."""
    if len(candidates) < 2:
        return None
    saved = runner.state_dict()
    plan = HalvingPlan(sizes=config.rungs(len(candidates)), growth=config.growth, scale=scale,
                       first_steps=int(round(max(config.passes * steps_per_pass, config.min_steps))),
                       ema_decay=config.ema_decay, stretch=config.stretch, carried=carried)
    try:
        return successive_halving(runner, plan, {}, candidates, score, folder, time_left, initial=initial)
    finally:
        runner.load_state_dict(saved)


# The finals' reserve is their estimate times this: ``step_s`` is the mean step of sampled children, finalists are
# often wider, and on a shared machine one epoch's timing varies. Without it a 60-min benchmark search's finals
# needed more than their reserve and skipped the second rung (docs/search.md#the-finals). The derive phase may use
# the margin (it stops on the bare estimate), and the survivors' rung stretches into what is left of it.
RESERVE_MARGIN = 1.25


def finals_seconds(config: FinalsConfig, space_def, ctx, step_s: float | None, full_child_s: float | None) -> float:
    """Estimated wall seconds of a search's finals, without margin: each finalist's training steps at ``step_s``
    seconds per step and a full-validation scoring of ``full_child_s`` per rung (0 until a step has been timed)."""
    if not config.children or step_s is None:
        return 0.0
    steps = max(config.passes * steps_per_pass(space_def, space_def.space.default_sample(), ctx), config.min_steps)
    seconds, trained = 0.0, 0.0
    extra = len(options_of(space_def.space, config.vary)) - 1 if config.vary else 0
    for rung, size in enumerate(config.rungs(config.children + int(config.reference) + extra)):
        size += int(bool(rung) and config.reference and config.carry_reference)
        target = steps * config.growth ** rung
        seconds += size * ((target - trained) * step_s + (full_child_s or 0.0))
        trained = target
    return seconds


def run_search_finals(config: FinalsConfig, runner, initial: dict[str, Any], space_def, space, ctx,
                      trials: list[dict], score: Callable[[dict[str, Any]], float | None], folder: Path,
                      time_left: Callable[[], float | None],
                      feasible: Callable[[dict[str, Any]], bool] = lambda _sample: True) -> ScreenResult | None:
    """A search's finals: the best derive-phase children of ``trials`` and the (pinned) space's default sample,
    equal passes over the training records at each one's batch size; the candidate states in ``folder`` are
    removed afterwards (their scores are in the trial log). ``feasible`` says whether a sample keeps the reward's
    hard limits: the reference is only trained when it does, since a result beyond them is never returned."""
    import shutil

    reference = space.default_sample() if config.reference else None
    if reference is not None and not feasible(reference):
        reference = None
    candidates = finalists(trials, reference, config.children, config.spread) if config.children else []
    if config.vary and candidates:
        candidates = varied(candidates, config.vary, options_of(space, config.vary))
    if len(candidates) < 2:
        return None
    base = space.default_sample()
    batch = int(space_def.training_settings(base)["batch_size"])
    scale = [batch / int(space_def.training_settings(c)["batch_size"]) for c in candidates]
    keys = [sample_key(c) for c in candidates]
    carried = keys.index(sample_key(reference)) if (config.carry_reference and reference is not None
                                                     and sample_key(reference) in keys) else None
    result = run_finals(config, runner, initial, candidates, steps_per_pass(space_def, base, ctx), score, folder,
                        time_left, scale, carried)
    shutil.rmtree(folder, ignore_errors=True)
    return result
