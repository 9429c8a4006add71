"""The state the phases of one search share (:class:`SearchState`): inputs, data and runner, the trial log, the clock
and budget, where the search has got to, and its scoring, which logs trial lines, keeps the predictions of compared
phases and picks between candidates within their noise."""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from n2nas.data.record import Dataset
from n2nas.measure.cost import ArchitectureCosts
from n2nas.measure.reward import limits_broken
from n2nas.measure.run_measurement import RunMeasurement
from n2nas.searching.budget import Budget, PhaseClock
from n2nas.searching.family import family_seconds
from n2nas.searching.finals import RESERVE_MARGIN, finals_seconds
from n2nas.searching.noise import (cheapest_within_noise, compare_trials, metric_scorer, record_comparison,
                                   save_predictions)
from n2nas.searching.progress import score_board
from n2nas.searching.run_folder import trial_line
from n2nas.searching.trials import TrialLog

# phase of a scored child -> the clock it is booked on (None: inside its phase's own clock)
_SCORING_CLOCK = {"derive": "derive", "screen": None, "final": None, "family": "family", "family-derive": "family"}
# phases whose children are compared with their noise (:mod:`n2nas.searching.noise`): their predictions are kept
COMPARED_PHASES = ("screen", "derive", "final", "family-derive")


@dataclass
class SearchState:
    """What the phases of one search share: its inputs, the data and runner, the trial log, the clock and budget,
    and where the search has got to (``epoch``, ``step``, the screen's winner, the controllers)."""

    config: Any                   # SearchConfig
    data: str | Dataset
    run_dir: Path
    progress: Any
    resources: ExitStack
    dataset: Dataset
    space_def: Any
    space: Any                    # the pinned SearchSpace (pinned again to the screen's winner)
    ctx: Any
    runner: Any
    costs: ArchitectureCosts
    initial: dict[str, Any]       # fresh weights: the finals train from them
    log: TrialLog
    clock: PhaseClock
    budget: Budget
    measured: RunMeasurement
    reward_idx: np.ndarray
    rng: np.random.Generator
    writer: Any
    resumed: dict[str, Any] | None
    epoch: int = 0
    step: int = 0
    warmup_done: bool = False
    winner: dict[str, Any] | None = None
    screen_s: float = 0.0
    controller: Any = None
    uniform: Any = None           # the warm-up's uniform sampler
    metric_name: str = "metric"   # the rewarded metric, named on the progress line
    step_s: float | None = None   # measured seconds per shared step, for the finals' reserve
    full_child_s: float | None = None

    def plan_derive(self) -> float:
        """Reserve the time of the derive phase and of what follows it, the finals and the family (each with a
        margin); returns the bare estimate of what follows."""
        finals_s = finals_seconds(self.config.finals, self.space_def, self.ctx, self.step_s, self.full_child_s)
        after_s = finals_s + self.family_s()
        # a family gets up to 60% of the budget: its members are what a train-once search is for
        most = 0.6 if self.config.family.flops_targets else 0.4
        self.budget.plan_derive(self.full_child_s or 0.0, self.config.derive_children, RESERVE_MARGIN * after_s,
                                most)
        return after_s

    def family_s(self) -> float:
        """Estimated seconds of the family phase (0 without a family or before a child was timed)."""
        from n2nas.searching.screen import steps_per_pass

        pass_s = None if self.step_s is None else self.step_s * steps_per_pass(
            self.space_def, self.space.default_sample(), self.ctx)
        return family_seconds(self.config.family, self.full_child_s, len(self.reward_idx) / len(self.ctx.val_idx),
                              pass_s)

    def score_family(self, samples: list[dict[str, Any]], phase: str, reward) -> list[float | None]:
        """A family search's scoring: on the reward set (``phase="family"``) or the whole validation split
        (``"family-derive"``), under ``reward`` (the search's, with the member's FLOPs limit)."""
        return self.score(samples, self.reward_idx if phase == "family" else self.ctx.val_idx, phase, reward)

    def score(self, samples: list[dict[str, Any]], records, phase: str, reward=None) -> list[float | None]:
        """Score children unless a resumed log already holds them, log each trial line; returns their rewards
        (under ``reward``, a RewardConfig, instead of the search's own when given)."""
        measured = self.measured if reward is None else replace(self.measured, reward=reward)
        steps = list(range(self.step, self.step + len(samples)))
        results = None
        if any(self.log.get(s) is None for s in steps):
            begun = time.monotonic()
            booked = _SCORING_CLOCK.get(phase, "scoring")
            with self.clock(booked) if booked else ExitStack():
                # the screen's probe (the default architecture) compares data representations; it is never a
                # result, so hard limits meant for the searched children must not leave it unscored
                results = self.runner.score(samples, records, limits=phase != "screen")
            if booked:
                self.clock.move(booked, "cost", sum(r.get("cost_s", 0.0) for r in results))
            for r in results:
                r["wall_s"] = (time.monotonic() - begun) / len(samples)
        rewards = []
        for i, (st, sample) in enumerate(zip(steps, samples)):
            probs = results[i].pop("probs", None) if results is not None else None
            if probs is not None and phase in COMPARED_PHASES and self.log.get(st) is None:
                save_predictions(self.run_dir, st, probs)
            logged = self.log.get(st) or self.log.append(trial_line(
                st, phase, self.epoch, sample, results[i], self.budget.elapsed, measured,
                waive_limits=phase == "screen"))
            rewards.append(logged["reward"])
        self.step += len(samples)
        self.progress.elapsed(self.budget.elapsed)
        self.progress.scored(*score_board(self.log.records), metric_name=self.metric_name)
        return rewards

    def noise_inputs(self, records) -> tuple[np.ndarray, Any]:
        """``(y, score)`` for comparing candidates on ``records``: their targets as the rewarded metric takes them,
        and that metric as :func:`n2nas.searching.noise.compare` calls it."""
        from n2nas.train.primitives import metric_inputs

        targets = self.ctx.targets[np.asarray(records)]
        _, y = metric_inputs(targets, targets, self.dataset.multilabel)
        return y, metric_scorer(self.metric_name, self.dataset.classes, self.dataset.multilabel)

    def pick_within_noise(self, trials: list[dict[str, Any]], records, section: str,
                          labels: dict[int, str] | None = None) -> dict[str, Any] | None:
        """Of scored ``trials`` (all on ``records``, predictions kept), the cheapest within the noise of the best
        (:func:`n2nas.searching.noise.cheapest_within_noise`), the comparison kept under ``section``; None when
        fewer than two can be compared."""
        y, score = self.noise_inputs(records)
        compared = compare_trials(self.run_dir, trials, y, score, seed=self.config.seed)
        if compared is None:
            return None
        picked = cheapest_within_noise(compared)
        record_comparison(self.run_dir, section, compared, picked.key, labels)
        return next(t for t in trials if t["step"] == picked.key)

    def feasible(self, sample: dict[str, Any]) -> bool:
        """Whether ``sample`` keeps the reward's hard limits on parameters and FLOPs."""
        return not limits_broken(self.config.reward, self.costs.of(sample))
