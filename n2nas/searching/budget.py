"""Where a search's wall time goes and when each phase must end: the phase clock and the budget.

The budget clock starts when ``n2nas.search`` is called, so reading records and preparing data count against
it, and it survives ``--resume`` (the elapsed time is checkpointed). It counts wall time, or with ``clock="cpu"``
the CPU time of the search's own process (every thread of it), so that other jobs on a shared machine do not
change what a budget buys. A time budget is split into a warm-up
(uniform single-path training before the controller acts), the ENAS epochs, and a reserve for the derive phase
sized from the measured cost of scoring a child.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from n2nas.train.lr_budget import clock_of

PHASES = ("data", "screen", "warmup", "shared", "scoring", "cost", "controller", "derive", "final", "family")


class PhaseClock:
    """Wall seconds spent per phase (``PHASES``); resumable through :meth:`state`."""

    def __init__(self, seconds: dict[str, float] | None = None):
        self.seconds = {p: float((seconds or {}).get(p, 0.0)) for p in PHASES}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Add the block's wall time to ``phase``."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[phase] += time.monotonic() - start

    def add(self, phase: str, seconds: float) -> None:
        """Book ``seconds`` to ``phase`` (for time measured elsewhere)."""
        self.seconds[phase] += max(0.0, float(seconds))

    def move(self, src: str, dst: str, seconds: float) -> None:
        """Re-book up to ``seconds`` from ``src`` to ``dst`` (cost measurement happens inside scoring calls)."""
        moved = min(max(0.0, float(seconds)), self.seconds[src])
        self.seconds[src] -= moved
        self.seconds[dst] += moved

    def percent(self) -> dict[str, float]:
        """Share of the booked time per phase, in percent (phases with no time left out)."""
        total = sum(self.seconds.values())
        return {p: round(100 * s / total, 1) for p, s in self.seconds.items() if s > 0} if total > 0 else {}

    def state(self) -> dict[str, float]:
        """Seconds per phase, rounded for the checkpoint and ``summary.json``."""
        return {p: round(s, 3) for p, s in self.seconds.items()}


def minimum_budget_minutes(n_records: int) -> float:
    """The smallest time budget that still prepares the data, warms the supernet up and scores one child:
    one minute, plus a quarter of a minute per thousand records (cold preparation and a pass over them)."""
    return round(1.0 + 0.25 * n_records / 1000, 2)


class Budget:
    """Time and epoch limits of a search. Epochs count warm-up and ENAS epochs alike; time is read from ``clock``
    (:data:`n2nas.train.lr_budget.CLOCKS`)."""

    def __init__(self, minutes: float | None, epochs: int | None, warmup: float, elapsed: float = 0.0,
                 started: float | None = None, clock: str = "wall"):
        self.minutes, self.epochs, self.warmup = minutes, epochs, warmup
        self.clock = clock_of(clock)
        self.warmup_from_s = 0.0  # the warm-up's share counts from the end of the preprocessing screen
        self.start = (self.clock() if started is None else started) - elapsed
        # until a child has been scored and timed, keep 15% of a time budget for the derive phase
        self.derive_reserve_s = 0.15 * self.total_s if self.total_s is not None else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds on the budget's clock since the search started (across resumes)."""
        return self.clock() - self.start

    @property
    def total_s(self) -> float | None:
        """The time budget in seconds (None without one)."""
        return None if self.minutes is None else 60.0 * self.minutes

    def warmup_epochs(self) -> int | None:
        """With an epoch budget: the number of warm-up epochs (at least one when warm-up is on)."""
        if self.epochs is None or self.warmup <= 0:
            return None if self.epochs is None else 0
        return max(1, min(self.epochs - 1, round(self.warmup * self.epochs))) if self.epochs > 1 else 0

    def in_warmup(self, epoch: int, warmup_done: bool) -> bool:
        """Whether epoch ``epoch`` still trains with uniformly sampled children."""
        if warmup_done or self.warmup <= 0:
            return False
        if self.total_s is not None:
            return self.elapsed < self.warmup_from_s + self.warmup * (self.total_s - self.warmup_from_s)
        return epoch < (self.warmup_epochs() or 0)

    def start_warmup_at(self, seconds: float) -> None:
        """The warm-up's share of a time budget is taken of what is left after ``seconds`` (the screen)."""
        self.warmup_from_s = max(0.0, float(seconds))

    def search_over(self, epoch: int) -> bool:
        """No further shared training or controller step: the epoch budget is spent, or what is left of the time
        budget is the derive reserve."""
        if self.epochs is not None and epoch >= self.epochs:
            return True
        return self.total_s is not None and self.elapsed >= self.total_s - self.derive_reserve_s

    def plan_derive(self, seconds_per_child: float, children: int, finals_s: float = 0.0,
                    most: float = 0.4) -> None:
        """Reserve time for the derive phase (``children`` scorings of ``seconds_per_child``) and what follows it
        (``finals_s``: the finals, the family): between 5% of the budget and ``most`` of it."""
        if self.total_s is not None and seconds_per_child > 0:
            self.derive_reserve_s = min(max(seconds_per_child * children + finals_s, 0.05 * self.total_s),
                                        most * self.total_s)

    def left(self) -> float | None:
        """Seconds left of the time budget (None without one)."""
        return None if self.total_s is None else self.total_s - self.elapsed

    def derive_over(self, seconds_per_child: float) -> bool:
        """True when scoring one more child on the whole validation split would overrun the time budget."""
        return self.total_s is not None and self.elapsed + seconds_per_child > self.total_s
