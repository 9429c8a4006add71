"""Uniform random search: the baseline every learned controller must beat."""
from __future__ import annotations

import numpy as np

from controllers.base import Controller, random_index_sample
from n2nas.storage import numpy_rng_state, restore_numpy_rng


class RandomController(Controller):
    """Independent uniform draws (skip flags on with probability 1/2)."""

    def __init__(self, tokens, seed: int = 0):
        super().__init__(tokens)
        self.rng = np.random.default_rng(seed)

    def sample(self, n):
        """``n`` independent uniform children."""
        return [random_index_sample(self.tokens, self.rng) for _ in range(n)]

    def update(self, samples, rewards):
        """Random search learns nothing."""
        return {}

    def state_dict(self):
        """The generator state."""
        return {"rng": numpy_rng_state(self.rng)}

    def load_state_dict(self, state):
        """Restore the generator state."""
        restore_numpy_rng(self.rng, state["rng"])
