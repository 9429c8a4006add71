"""Stage one of a search: screen the preprocessing before weight sharing starts.

Weights do not share well across data representations: on PhysioNet 2017 a supernet whose only free decision
is the sampling rate or the normalisation stays near the class prior when the same supernet with nothing free
learns (``benchmarks/sharing_factors.py``). So the representation tokens (sampling rate, filter,
normalisation, window) are chosen first, each candidate on its *own* copy of the weights (the few-shot limit
of weight sharing), by successive halving (Jamieson & Talwalkar 2016): every candidate trains the space's
default architecture for ``first_passes`` passes over the training records (at least ``min_steps`` steps) and
is scored on the reward set, the best ``keep`` share trains ``growth`` times longer, and so on until the next
rung would hold one candidate. The best of the last rung wins, and its weights (a trained default child) start
the weight-shared stage, as Once-for-All starts from its largest network.

Candidates form a balanced design: every option of every screened token appears about equally often, so no
option is judged on luck of the draw. Augmentation is not screened (it pays off late in training, so a
short screen would always drop it); it stays a token of the shared stage.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.searching.checkpoint import load_checkpoint, save_checkpoint
from n2nas.train.averaging import StateAverage, check_ema_decay

NOT_SCREENED = ("augment",)


@dataclass(frozen=True)
class ScreenConfig:
    """Successive halving over preprocessing variants: ``candidates`` enter, the best ``keep`` share of each
    rung goes on with ``growth`` times the steps, until the next rung would hold one. ``max_share`` caps the
    screen's part of a time budget (a rung that would not fit is not started). ``candidates=0``: no screen.
    ``ema_decay`` (None: off): candidates are scored with an exponential moving average of their weights, as the
    retrain is (see :func:`successive_halving`). ``default_candidate``: the space's default preprocessing is the
    first candidate (and wins ties), as the finals' reference is the default network; the other
    ``candidates - 1`` are the balanced draw; it is carried to every rung (see :attr:`HalvingPlan.carried`), down
    to a last rung where the best other candidate meets it alone. Why: in a 30-min PTB-XL search the default (12
    leads) lost to 3 leads after three passes by less than one pass moves a score, and won after nine
    (docs/12-lead.md#the-12-lead-preset)."""

    candidates: int = 9
    keep: float = 1 / 3
    first_passes: float = 1.0
    min_steps: int = 30  # first-rung steps on small data sets, where a pass is only a few batches
    growth: float = 3.0
    max_share: float = 0.35
    ema_decay: float | None = 0.998
    default_candidate: bool = False

    def __post_init__(self):
        if self.candidates < 0 or not 0 < self.keep < 1 or self.first_passes <= 0 or self.growth < 1 \
                or self.min_steps < 1:
            raise ConfigError("screen", "candidates >= 0, 0 < keep < 1, first_passes > 0, min_steps >= 1 and "
                                        "growth >= 1 required")
        if not 0 < self.max_share < 1:
            raise ConfigError("screen.max_share", "must lie between 0 and 1")
        check_ema_decay("screen.ema_decay", self.ema_decay)

    @staticmethod
    @preset()
    def off() -> "ScreenConfig":
        """No screen: preprocessing is searched through shared weights like every other token."""
        return ScreenConfig(candidates=0)


def screened_labels(space) -> list[str]:
    """The free preprocessing choices a screen decides (every preprocessing token but augmentation)."""
    return [d.label for d in space.flat if getattr(d, "kind", "") == "preprocessing"
            and d.label not in space.fixed and d.label not in NOT_SCREENED and hasattr(d, "options")]


def balanced_candidates(space, labels: list[str], n: int, rng: np.random.Generator,
                        tries: int = 100) -> list[dict[str, Any]]:
    """Up to ``n`` distinct preprocessing settings in which every option of every label appears about equally
    often, or the whole grid when it is smaller. Each label's column is its options repeated to length ``n`` and
    shuffled on its own: cycling every label through its options in step would pair labels with the same number
    of options the same way in every candidate (fs 100 Hz always with no filter, say), so their effects could
    never be told apart. A design with a repeated setting is redrawn (up to ``tries`` times), then its repeats are
    replaced by random distinct settings."""
    options = {d.label: list(d.options) for d in space.flat if d.label in labels}
    size = math.prod(len(o) for o in options.values())
    if size <= n:
        return [{k: s[k] for k in labels} for s in space.grid(labels)]
    for _ in range(tries):
        # options in a random order (which get one extra appearance when n is not a multiple), rows shuffled
        columns = {k: [o[j] for j in rng.permutation(len(o))[rng.permutation(n) % len(o)]]
                   for k, o in options.items()}
        chosen = [{k: columns[k][j] for k in labels} for j in range(n)]
        if len({tuple(map(str, c.values())) for c in chosen}) == n:
            return chosen
    seen: set[tuple] = set()
    for j, pick in enumerate(chosen):
        while tuple(map(str, pick.values())) in seen:  # still repeated: a random distinct setting
            pick = {k: options[k][rng.integers(len(options[k]))] for k in labels}
        seen.add(tuple(map(str, pick.values())))
        chosen[j] = pick
    return chosen


def screen_candidates(config: ScreenConfig, space, labels: list[str], base: dict[str, Any],
                      rng: np.random.Generator) -> list[dict[str, Any]]:
    """The screen's candidates: :func:`balanced_candidates`, led by ``base``'s preprocessing (the space's
    default) when ``config.default_candidate``. Why: on PTB-XL a 9-candidate screen drew 12 leads once, at a
    one-pass score inside the noise of one pass, and picked 6 limb leads; the default setting (12 leads, the
    hand references' preprocessing) should always be measured, as the finals always train the default
    network."""
    if not config.default_candidate:
        return balanced_candidates(space, labels, config.candidates, rng)
    default = {k: base[k] for k in labels}
    drawn = balanced_candidates(space, labels, config.candidates - 1, rng)
    return [default] + [c for c in drawn if c != default]


def rung_sizes(n: int, keep: float) -> list[int]:
    """Candidates per rung: ``n``, then ``ceil(keep * previous)``, down to one."""
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(max(1, math.ceil(keep * sizes[-1])))
    return sizes


@dataclass(frozen=True)
class HalvingPlan:
    """How :func:`successive_halving` trains: rung ``r`` keeps the best ``sizes[r]`` candidates and trains each to
    ``first_steps * growth**r`` steps (times ``scale[i]`` for candidate ``i``); ``ema_decay`` scores an average
    of the weights, ``stretch`` lets the last rung use the time left (see :func:`successive_halving`)."""

    sizes: list[int]
    first_steps: int
    growth: float
    scale: list[float] | None = None
    ema_decay: float | None = None
    stretch: float = 1.0
    # index of a candidate that trains in every rung whatever its rank (None: none), as a reference the others
    # must beat after the longest training, not after the first rung's few passes
    carried: int | None = None


@dataclass
class ScreenResult:
    """The winning preprocessing, the runner state trained with it, and what each rung measured."""

    winner: dict[str, Any]
    state: dict[str, Any]
    rungs: list[list[dict[str, Any]]]
    seconds: float


def run_screen(config: ScreenConfig, runner, base: dict[str, Any], candidates: list[dict[str, Any]],
               steps_per_pass: int, score: Callable[[dict[str, Any]], float | None], folder: Path,
               time_left: Callable[[], float | None], pick=None) -> ScreenResult:
    """The screen of :class:`ScreenConfig` over ``candidates`` (preprocessing dicts laid over the sample ``base``);
    the rung that would hold one candidate is left to the weight-shared stage. See :func:`successive_halving`."""
    sizes = rung_sizes(len(candidates), config.keep)
    # the rung that would hold one candidate is the shared stage's, unless the carried default makes it a duel
    plan = HalvingPlan(sizes=sizes if config.default_candidate else sizes[:-1] or [1],
                       first_steps=int(round(max(config.first_passes * steps_per_pass, config.min_steps))),
                       growth=config.growth, ema_decay=config.ema_decay,
                       carried=0 if config.default_candidate else None)
    return successive_halving(runner, plan, base, candidates, score, folder, time_left, pick=pick)


def successive_halving(runner, plan: HalvingPlan, base: dict[str, Any], candidates: list[dict[str, Any]],
                       score: Callable[[dict[str, Any]], float | None], folder: Path,
                       time_left: Callable[[], float | None], initial: dict[str, Any] | None = None,
                       pick: Callable[[list[dict[str, Any]]], int | None] | None = None) -> ScreenResult:
    """Train each of ``candidates`` (dicts laid over the sample ``base``) on its own copy of the runner's weights,
    starting from ``initial`` (default: the runner's state now): rung ``r`` keeps the best ``plan.sizes[r]`` and
    trains each to ``plan.first_steps * plan.growth**r`` steps (times ``plan.scale[i]`` for candidate ``i``, e.g.
    to equalise passes over the data between batch sizes), then scores it once.

    ``score(sample)`` scores and logs one child and returns its reward (None when it failed). Each candidate's
    runner state is saved in ``folder`` after it trains, so a killed run resumes where it stopped (scores
    come back from the trial log through ``score``). ``time_left()`` is the remaining seconds (None: no time
    limit); a later rung whose measured cost would not fit is skipped and the best so far wins, and within a rung
    a candidate that would not fit at the step times measured so far is not started (the rung ranks those
    trained). Why: a 4-min demo search on a loaded machine started every finalist of its first rung and overran
    its budget (docs/search.md#the-screen).

    With ``plan.ema_decay``, a candidate is scored with an exponential moving average of its weights
    (:class:`~n2nas.train.averaging.StateAverage`, folded in every 8 steps) and trains on from its raw weights. Why:
    a few passes at the shared stage's learning rate leave the raw weights in a noisy place (consecutive epochs of
    one net differ by more than the candidates of a rung do; docs/search.md#the-screen).

    ``plan.stretch`` > 1 lets the last rung (when there are several) use the time left: its survivors train up to
    ``stretch`` times the steps the rung adds, all by the same factor, as far as 90% of ``time_left()`` covers at
    each survivor's own measured step time (survivors can differ several-fold in FLOPs, and a step time averaged
    over the rung let a search overrun). Why: a reserve estimated with a safety margin otherwise ends the search
    early (docs/search.md#the-screen).

    ``pick(last_rung)`` (optional) chooses the winner among the last rung's results (each with its ``candidate``
    index and ``sample``), or returns None to keep the best reward; the search passes the noise rule.
    """
    folder.mkdir(parents=True, exist_ok=True)
    initial = runner.state_dict() if initial is None else initial
    sizes, growth, first_steps, scale, ema_decay, stretch = (plan.sizes, plan.growth, plan.first_steps, plan.scale,
                                                             plan.ema_decay, plan.stretch)
    carried = plan.carried if plan.carried is not None and 0 <= plan.carried < len(candidates) else None
    states: dict[int, dict[str, Any]] = {}
    averages: dict[int, StateAverage] = {}
    steps_done = {i: 0 for i in range(len(candidates))}
    step_s: dict[int, float] = {}  # seconds per training step of each candidate, as measured when it trained

    def seconds_to(targets: dict[int, int]) -> float | None:
        """Measured time to train every candidate to its target (a candidate not timed yet, e.g. one resumed
        from its checkpoint, at the mean step time of those that were); None before any step was timed."""
        if not step_s:
            return None
        mean = sum(step_s.values()) / len(step_s)
        return sum(max(0, t - steps_done[i]) * step_s.get(i, mean) for i, t in targets.items())

    def load(i: int) -> dict[str, Any] | None:
        if i in states:
            return states[i]
        saved = load_checkpoint(folder, name=f"candidate{i}.pt")
        if saved is not None:
            steps_done[i] = int(saved["steps"])
            states[i] = saved["runner"]
            if ema_decay is not None:
                average = saved.get("average")
                averages[i] = StateAverage(ema_decay, average or states[i]["supernet"],
                                           steps=int(saved.get("average_steps", steps_done[i])))
            return states[i]
        return None

    def train(i: int, target: int) -> None:
        state = load(i)
        state = state if state is not None else initial
        runner.load_state_dict(state)
        if ema_decay is not None and i not in averages:
            averages[i] = StateAverage(ema_decay, state["supernet"])
        steps = target - steps_done[i]
        sample = {**base, **candidates[i]}
        latest = None  # the state after the last chunk, when the average already took it
        begun = time.monotonic()
        for start in range(0, max(0, steps), 8):
            chunk = min(8, steps - start)
            # uniform: a candidate trains its own child alone (a sandwich would also train other children, ~4x cost)
            runner.train_shared([sample] * chunk, rule="uniform")
            if i in averages:
                latest = runner.state_dict()
                averages[i].update(latest["supernet"], chunk)
        states[i] = latest if latest is not None else runner.state_dict()
        if steps > 0:
            step_s[i] = (time.monotonic() - begun) / steps
        steps_done[i] = target
        extra = {"average": averages[i].state, "average_steps": averages[i].steps} if i in averages else {}
        save_checkpoint(folder, {"steps": target, "runner": states[i], **extra}, name=f"candidate{i}.pt")

    def score_candidate(i: int) -> float | None:
        """Score candidate ``i`` with its averaged (or else its own) weights loaded."""
        if i in averages:
            runner.load_state_dict({**states[i], "supernet": averages[i].state})
        elif i in states:
            runner.load_state_dict(states[i])
        return score({**base, **candidates[i]})

    started, alive, rungs = time.monotonic(), list(range(len(candidates))), []
    for rung, size in enumerate(sizes):
        alive = alive[:size]
        if carried is not None:  # first, so that a rung cut short by the time left still trains the reference
            alive = [carried] + [i for i in alive if i != carried]
        if carried is not None and rung and len(alive) < 2:
            break  # the carried candidate leads alone: nothing left to compare
        for i in alive:
            load(i)
        targets = {i: max(1, int(round(growth ** rung * first_steps * (scale[i] if scale else 1.0)))) for i in alive}
        need, left = seconds_to(targets), time_left()
        if rung and left is not None and need is not None and need > left:
            break  # this rung cannot finish inside the screen's share: the previous rung's best wins
        if stretch > 1 and rung and rung == len(sizes) - 1 and left is not None and need:
            factor = min(stretch, 0.9 * left / need)  # 10% kept for the scorings and timing spread
            if factor > 1:
                targets = {i: steps_done[i] + int((t - steps_done[i]) * factor) if t > steps_done[i] else t
                           for i, t in targets.items()}
        results = []
        for i in alive:
            left = time_left()
            if results and left is not None and (left <= 0 or (seconds_to({i: targets[i]}) or 0.0) > left):
                break  # this candidate would overrun at the step times measured so far: rank what was trained
            if steps_done[i] < targets[i]:
                train(i, targets[i])
            reward = score_candidate(i)
            results.append({"candidate": i, "preprocessing": candidates[i], "steps": targets[i], "reward": reward})
        rungs.append(results)
        ranked = sorted(results, key=lambda r: (-(r["reward"] if r["reward"] is not None and
                                                    math.isfinite(r["reward"]) else -math.inf), r["candidate"]))
        alive = [r["candidate"] for r in ranked]
    best = alive[0]
    if pick is not None and rungs:  # the last rung's winner by a rule of the caller's (the noise rule)
        chosen = pick([{**r, "sample": {**base, **candidates[r["candidate"]]}} for r in rungs[-1]])
        best = best if chosen is None else chosen
    state = load(best)
    return ScreenResult(winner=dict(candidates[best]), state=state if state is not None else initial, rungs=rungs,
                        seconds=time.monotonic() - started)


def steps_per_pass(space_def, sample: dict[str, Any], ctx) -> int:
    """Training steps of one pass over the training records at ``sample``'s batch size."""
    return max(1, len(ctx.train_idx) // int(space_def.training_settings(sample)["batch_size"]))


def screen_search(config: ScreenConfig, runner, space, space_def, ctx, budget, seed: int, progress, folder: Path,
                  score: Callable[[dict[str, Any]], float | None], pick=None) -> ScreenResult | None:
    """A search's stage one: the winning preprocessing and its trained runner state, or None when nothing is
    screened (screen off, preprocessing pinned, or a space without preprocessing). ``budget`` caps it at
    ``max_share`` of a time budget."""
    labels = screened_labels(space)
    if config.candidates < 2 or not labels:
        return None
    base = space.default_sample()
    candidates = screen_candidates(config, space, labels, base, np.random.default_rng(seed + 3))
    if len(candidates) < 2:
        return None
    total = budget.total_s

    def time_left() -> float | None:
        return None if total is None else config.max_share * total - budget.elapsed

    progress.phase("preprocessing screen")
    return run_screen(config, runner, base, candidates, steps_per_pass(space_def, base, ctx), score, folder,
                      time_left, pick)
