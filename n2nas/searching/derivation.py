"""The derive phase's helpers: the measured cost of scoring a child on the whole validation split, when the phase
stops, and which children it rescores."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from n2nas.searching.budget import Budget
from n2nas.space import Pipeline, sample_key

DERIVE_DRAW_ROUNDS = 8  # fresh controller draws of derive_children each, at most, to replace unscored children


def seconds_per_full_child(trials: list[dict], n_val: int) -> float | None:
    """Measured wall seconds to score one child on the whole validation split (from the latest scorings)."""
    timed = [t for t in trials if t.get("wall_s") and t.get("records")][-20:]
    if not timed:
        return None
    return float(np.median([t["wall_s"] * max(1.0, n_val / t["records"]) for t in timed]))


def derive_stops(budget: Budget, derived: int, full_child_s: float, after_s: float, finalists: int,
                 tried: int | None = None) -> bool:
    """Whether the derive phase stops before scoring another child, given ``derived`` children scored ok and
    ``tried`` scorings in all (ok or failed; default ``derived``). It leaves what follows it (the finals and the
    family, ``after_s`` seconds) their time once it has
    ``finalists`` children (at least one) to hand them; before that it stops only when one more scoring would
    overrun the budget: finals over too few children cannot choose. (An over-estimated finals reserve once cut a
    20-min search's derive phase after one child, and the finals then used a fraction of it:
    docs/search.md#the-derive-phase.)"""
    if derived >= max(1, finalists):
        return budget.derive_over(full_child_s + after_s)
    return (derived if tried is None else tried) > 0 and budget.derive_over(full_child_s)


def derive_candidates(trials: list[dict], controller, space, config) -> Iterator[dict[str, Any]]:
    """The best controller-phase children first, then fresh controller samples, without repeats.

    A generator that the derive phase stops once it has scored ``config.derive_children`` children: fresh samples
    are drawn ``derive_children`` at a time, for at most ``DERIVE_DRAW_ROUNDS`` rounds, so that children the hard
    limits leave unscored (infeasible, which costs only their memoised cost measurement) are made up for. Under a
    FLOPs limit that 80 % of the ``ecg`` space breaks, a fixed list of 12 gave the finals no feasible child at all.
    """
    seen: set[str] = set()

    def new(sample: dict[str, Any]) -> bool:
        key = sample_key(sample)
        if key in seen:
            return False
        seen.add(key)
        return True

    best = sorted((t for t in trials if t["phase"] == "controller" and t["status"] == "ok" and
                   t["reward"] is not None), key=lambda t: (-t["reward"], t["step"]))
    taken = 0
    for t in best:
        if taken >= min(config.derive_top, config.derive_children):
            break
        sample = Pipeline.from_json({"space": config.space, "sample": t["sample"]}, space).sample
        if new(sample):
            taken += 1
            yield sample
    for _ in range(DERIVE_DRAW_ROUNDS):
        for sample in [space.decode(s) for s in controller.sample(config.derive_children)]:
            if new(sample):
                yield sample
