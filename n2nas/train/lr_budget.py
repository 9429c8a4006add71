"""The "budget" learning-rate schedule: decay linearly to zero over whichever ends first, the steps or the minutes
(budgeted training, Li et al., ICLR 2020). Used by the one trainer (:mod:`n2nas.train.trainer`)."""
from __future__ import annotations

import time
from typing import Callable

from n2nas.errors import ConfigError

# what a time budget counts: wall time, or the CPU time of this process (every thread of it), which other jobs on
# a shared machine do not change
CLOCKS = {"wall": time.monotonic, "cpu": time.process_time}


def clock_of(name: str) -> Callable[[], float]:
    """The clock a budget named ``name`` counts (:data:`CLOCKS`); ConfigError naming ``--clock`` otherwise."""
    if name not in CLOCKS:
        raise ConfigError("--clock", f"expected one of {', '.join(CLOCKS)}, got {name!r}")
    return CLOCKS[name]


class BudgetProgress:
    """How much of a training budget is spent, 0..1: the larger of the share of ``total_steps`` done and the share
    of ``max_minutes`` used, the wall-time share read at epoch ends only (:meth:`epoch_end`).

    Why at epoch ends: read at every step, the wall-time share made the first step's lr depend on how long that step
    took (the step share is still 0 there), so a seeded retrain with ``--max-minutes`` far from binding was not
    reproducible (docs/12-lead.md has the run that showed it). Read at the end of epoch ``e``, the time share
    exceeds the next epoch's step shares only when ``e`` epochs' time extrapolated to all of them overruns the
    budget, i.e. when the time budget really binds. ``mean`` turns one worker's value into the mean
    over data-parallel workers, so that every replica sets the same lr."""

    def __init__(self, total_steps: int, max_minutes: float | None, mean: Callable[[float], float] = float,
                 clock: Callable[[], float] = time.monotonic):
        self.total_steps, self.max_minutes, self.mean, self.clock = max(1, total_steps), max_minutes, mean, clock
        self.start = clock()
        self.time_share = 0.0

    def epoch_end(self) -> None:
        """Read the wall-time share (the mean over workers); it applies from the next step on."""
        if self.max_minutes is not None:
            self.time_share = self.mean((self.clock() - self.start) / (60.0 * self.max_minutes))

    def spent(self, steps_done: int) -> float:
        """The share of the budget spent after ``steps_done`` steps, 0..1; the lr is its initial value times one
        minus this."""
        return min(1.0, max(0.0, steps_done / self.total_steps, self.time_share))
