"""The one interface every runner (local, Ray, MPI) offers the search loop."""
from __future__ import annotations

import abc
from typing import Any

import numpy as np


class Runner(abc.ABC):
    """Trains the shared weights and scores children; knows nothing of controllers or run folders."""

    # the runner's own memo of params and FLOPs per architecture (``ArchitectureCosts``), or None when it measures
    # them on other processes (the driver then keeps its own)
    costs = None

    def local_replica(self) -> "Runner":
        """The in-process runner whose supernet mirrors the shared weights (itself here; Ray and MPI drivers keep an
        in-sync replica): family members are cut from it."""
        return self

    @abc.abstractmethod
    def set_measurement(self, measure, reward=None, meter=None) -> None:
        """Measure latency and energy per scored child (``MeasureConfig``); with a ``RewardConfig``, children
        breaking its hard limits are reported infeasible without being scored."""

    @abc.abstractmethod
    def train_shared(self, samples: list[dict[str, Any]], rule: str | None = None) -> dict[str, float]:
        """One shared-weight step per sample (one sampled child per batch); returns loss statistics. ``rule``
        overrides the configured shared-training rule for these steps (``"uniform"``: each child trains alone,
        as a screen candidate or a finalist on its own weights should)."""

    @abc.abstractmethod
    def score(self, samples: list[dict[str, Any]], records: np.ndarray, limits: bool = True) -> list[dict[str, Any]]:
        """Score each child on the given validation records; one result dict per sample.

        A result holds ``status`` ("ok", "failed" or "infeasible"), ``reward`` (None unless ok), ``metrics``,
        ``params``, ``flops`` (per input window) and ``worker``. ``limits=False`` scores children that break the
        reward's hard limits too, instead of reporting them infeasible unscored.
        """

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Shared weights, optimizer and RNG state for exact resume."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def close(self) -> None:
        """Release workers (no-op for in-process runners)."""
