"""The one controller interface: sample index-encoded children, learn from their rewards, save and restore."""
from __future__ import annotations

import abc
import contextlib
import math
from typing import Any, ClassVar, Iterator

import torch

from n2nas.space import Token


class Controller(abc.ABC):
    """Proposes children as ``{label: int}`` (choices) / ``{label: tuple of 0/1}`` (skips) over ``tokens``.

    A failed child's reward is ``nan`` (or None); every controller ignores it when learning.

    ``config_class`` is the frozen dataclass of the constructor's ``config`` argument; its ``@preset`` static
    methods (:mod:`n2nas.presets`) are the configurations ``--controller-preset`` may ask for, and the first is
    used when none is named. A controller without one takes no configuration.
    """

    config_class: ClassVar[type | None] = None

    def __init__(self, tokens: tuple[Token, ...]):
        self.tokens = tuple(tokens)

    @abc.abstractmethod
    def sample(self, n: int) -> list[dict[str, Any]]:
        """``n`` children."""

    @abc.abstractmethod
    def update(self, samples: list[dict[str, Any]], rewards: list[float]) -> dict[str, float]:
        """Learn from scored children; returns statistics worth logging."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact same sequence (``torch.load(weights_only=True)``-safe)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def finite(reward: float | None) -> bool:
    """True for a usable reward (not None, NaN or infinite)."""
    return reward is not None and math.isfinite(reward)


def random_index_sample(tokens: tuple[Token, ...], rng) -> dict[str, Any]:
    """One uniform random child drawn with a numpy Generator."""
    return {t.label: (tuple(int(b) for b in rng.integers(0, 2, t.n_inputs)) if t.is_skip
                      else int(rng.integers(t.n_choices))) for t in tokens}


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run a block with one intra-op thread, then restore the previous count.

    The controller's tensors are tiny; on a busy 2-core machine torch's thread pool made its steps many times
    slower by waiting for a second core it could not get (docs/search.md#controller-threads).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
