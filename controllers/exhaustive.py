"""Exhaustive grid over the choice tokens, in a fixed order (skip flags off unless asked for)."""
from __future__ import annotations

import itertools
import math

from controllers.base import Controller
from n2nas.errors import ConfigError


class GridController(Controller):
    """Walks the Cartesian product; after the last combination it starts again and sets ``exhausted``."""

    def __init__(self, tokens, seed: int = 0, include_skips: bool = False, max_size: int = 100_000):
        super().__init__(tokens)
        self.include_skips = include_skips
        axes = []
        for t in self.tokens:
            if t.is_skip:
                axes.append(list(itertools.product((0, 1), repeat=t.n_inputs)) if include_skips
                            else [(0,) * t.n_inputs])
            else:
                axes.append(list(range(t.n_choices)))
        size = math.prod(len(a) for a in axes)
        if size > max_size:
            raise ConfigError("--controller grid", f"the grid has {size:.3g} combinations, more than max_size "
                                                   f"{max_size}; pin decisions with --fix or use another controller")
        self._axes = axes
        self.size = size
        self.position = 0
        self.exhausted = False

    def _combo(self, k: int) -> dict:
        out = {}
        for t, axis in zip(reversed(self.tokens), reversed(self._axes)):
            k, r = divmod(k, len(axis))
            out[t.label] = axis[r]
        return {t.label: out[t.label] for t in self.tokens}

    def sample(self, n):
        """The next ``n`` combinations."""
        out = []
        for _ in range(n):
            out.append(self._combo(self.position))
            self.position += 1
            if self.position >= self.size:
                self.position, self.exhausted = 0, True
        return out

    def update(self, samples, rewards):
        """A grid does not adapt."""
        return {"grid_position": float(self.position)}

    def state_dict(self):
        """Where the walk is."""
        return {"position": self.position, "exhausted": self.exhausted}

    def load_state_dict(self, state):
        """Continue the walk."""
        self.position, self.exhausted = int(state["position"]), bool(state["exhausted"])
