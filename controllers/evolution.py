"""Regularized (aging) evolution, Real et al. 2019: tournament selection, one mutation, the oldest dies."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from controllers.base import Controller, finite, random_index_sample
from n2nas.presets import preset
from n2nas.storage import numpy_rng_state, restore_numpy_rng


@dataclass(frozen=True)
class EvolutionConfig:
    """Population size P and tournament size S."""

    population: int = 50
    sample_size: int = 10

    @staticmethod
    @preset()
    def small() -> "EvolutionConfig":
        """For budgets of a few hundred children (the default)."""
        return EvolutionConfig(population=20, sample_size=5)

    @staticmethod
    @preset()
    def real2019() -> "EvolutionConfig":
        """The paper's large-scale setting (P=100, S=25)."""
        return EvolutionConfig(population=100, sample_size=25)


class EvolutionController(Controller):
    """Children are random until the population is full, then mutants of tournament winners."""

    config_class = EvolutionConfig

    def __init__(self, tokens, seed: int = 0, config: EvolutionConfig = EvolutionConfig.small()):
        super().__init__(tokens)
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.population: deque = deque()  # (sample, reward), oldest first
        self.proposed = 0

    def _mutate(self, parent: dict) -> dict:
        child = dict(parent)
        mutable = [t for t in self.tokens if (t.n_inputs if t.is_skip else t.n_choices - 1) > 0]
        if not mutable:
            return child
        t = mutable[int(self.rng.integers(len(mutable)))]
        if t.is_skip:
            flags = list(child[t.label])
            flags[int(self.rng.integers(t.n_inputs))] ^= 1
            child[t.label] = tuple(flags)
        else:
            other = int(self.rng.integers(t.n_choices - 1))
            child[t.label] = other if other < child[t.label] else other + 1
        return child

    def sample(self, n):
        """Random children while the initial population is incomplete, then mutated tournament winners."""
        out = []
        for _ in range(n):
            alive = [m for m in self.population if finite(m[1])]
            if self.proposed < self.config.population or not alive:
                out.append(random_index_sample(self.tokens, self.rng))
            else:
                picks = self.rng.choice(len(alive), size=min(self.config.sample_size, len(alive)), replace=False)
                parent = max((alive[i] for i in picks), key=lambda m: m[1])[0]
                out.append(self._mutate(parent))
            self.proposed += 1
        return out

    def update(self, samples, rewards):
        """Add scored children (failed ones too, so they age out) and retire the oldest."""
        for s, r in zip(samples, rewards):
            self.population.append((dict(s), float(r) if finite(r) else float("nan")))
            while len(self.population) > self.config.population:
                self.population.popleft()
        good = [r for _, r in self.population if finite(r)]
        return {"population_best": max(good) if good else float("nan"), "population_size": len(self.population)}

    def state_dict(self):
        """Population, counters and generator state."""
        return {"population": [[s, r] for s, r in self.population], "proposed": self.proposed,
                "rng": numpy_rng_state(self.rng)}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`."""
        self.population = deque((dict(s), float(r)) for s, r in state["population"])
        self.proposed = int(state["proposed"])
        restore_numpy_rng(self.rng, state["rng"])
