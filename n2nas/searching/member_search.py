"""A family member's search under its FLOPs limit: each decision's option ladder (its options by the FLOPs they
cost), the space's smallest child, children shrunk or grown one option step at a time to sit under the limit, and
the controller's search that scores them on the shared weights (:func:`search_member`)."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from n2nas.errors import ConfigError
from n2nas.measure.reward import limits_broken
from n2nas.searching.trials import nan_rewards
from n2nas.space import sample_key


def cost_decisions(space) -> list:
    """The searchable decisions that can change a child's cost (not training settings, not pinned)."""
    return [d for d in space.flat if getattr(d, "kind", "") != "training" and d.label not in space.fixed
            and hasattr(d, "options")]


def _cost_of(trial: dict[str, Any], costs) -> dict[str, Any] | None:
    """``costs.of(trial)``, or None when an option of ``trial`` is invalid with the others (e.g. too short)."""
    try:
        return costs.of(trial)
    except (ConfigError, ValueError, RuntimeError):
        return None


def smallest_child(space, costs) -> tuple[dict[str, Any], float]:
    """The cheapest child of the (pinned) ``space`` by FLOPs per record and those FLOPs: from the default sample,
    each decision in turn takes the cheapest option of its ladder (:func:`option_ladders`) that is valid and no
    dearer here (one pass; the FLOPs of these spaces grow with every width, kernel, depth and rate, so the pass
    reaches the minimum)."""
    sample = space.default_sample()
    least = float(costs.of(sample)["flops_per_record"])
    for label, ladder in option_ladders(space, costs).items():
        for option, _ in ladder:
            trial = {**sample, label: option}
            cost = _cost_of(trial, costs)
            if cost is not None and cost["flops_per_record"] <= least:
                sample, least = trial, float(cost["flops_per_record"])
                break
    return sample, least


def option_ladders(space, costs) -> dict[str, list[tuple[Any, float]]]:
    """Per cost decision, its options with the FLOPs per record of the default child taking each (cheapest first):
    the order in which :func:`shrink_to_limit` steps a decision down. One count per option, memoised by ``costs``,
    so that a shrink step costs one count instead of one per option."""
    base, ladders = space.default_sample(), {}
    for d in cost_decisions(space):
        valid = [(option, _cost_of({**base, d.label: option}, costs)) for option in d.options]
        ladders[d.label] = sorted(((option, float(cost["flops_per_record"])) for option, cost in valid
                                   if cost is not None), key=lambda pair: pair[1])
    return ladders


def _cheaper_options(sample: dict[str, Any], label: str, ladder: list[tuple[Any, float]]) -> list[Any]:
    """The options of decision ``label`` below ``sample``'s on its ladder, dearest first (none at the bottom, or for
    an option off the ladder)."""
    now = next((cost for option, cost in ladder if option == sample.get(label)), None)
    return [option for option, cost in reversed(ladder) if now is not None and cost < now]


def grow_to_limit(sample: dict[str, Any], space, costs, reward, rng: np.random.Generator,
                  ladders: dict[str, list[tuple[Any, float]]]) -> dict[str, Any]:
    """``sample`` made dearer one option step at a time (rounds over its decisions in random order, each moved to the
    next dearer option of its ladder that keeps ``reward``'s hard limits) until no step fits: a child as close to
    the limit as the steps allow. Why: the controller's draws under a loose limit are mostly far below it, so a
    member could otherwise end at a fraction of its budget without a dearer child ever being scored."""
    labels = list(ladders)
    cost = costs.of(sample)
    moved = True
    while moved:
        moved = False
        for i in rng.permutation(len(labels)):
            label, ladder = labels[i], ladders[labels[i]]
            now = next((c for option, c in ladder if option == sample.get(label)), None)
            for option, c in ladder:  # cheapest first: the next option up
                if now is None or c <= now:
                    continue
                trial = {**sample, label: option}
                trial_cost = _cost_of(trial, costs)
                if trial_cost is not None and trial_cost["flops_per_record"] > cost["flops_per_record"] \
                        and not limits_broken(reward, trial_cost):
                    sample, cost, moved = trial, trial_cost, True
                    break
    return sample


def _step_down(sample: dict[str, Any], cost: dict[str, Any], label: str, ladder, costs):
    """``(sample, cost)`` with decision ``label`` at the dearest option below its own that makes *this* child
    cheaper (the ladder's order holds for the default child; a step that does not pay here tries the next one
    down), or None when none does."""
    for option in _cheaper_options(sample, label, ladder):
        trial = {**sample, label: option}
        trial_cost = _cost_of(trial, costs)
        if trial_cost is not None and trial_cost["flops_per_record"] < cost["flops_per_record"]:
            return trial, trial_cost
    return None


def shrink_to_limit(sample: dict[str, Any], space, costs, reward, rng: np.random.Generator,
                    ladders: dict[str, list[tuple[Any, float]]] | None = None) -> dict[str, Any] | None:
    """A child beyond ``reward``'s hard limits made feasible one step at a time: rounds over its decisions in random
    order, each moved to its next cheaper option (:func:`option_ladders`), until it fits, so that it stays as close
    to the limit as the steps allow (OFA's search under a constraint likewise only keeps children that fit); None
    when no step is left and it still does not fit. Under a tight target most sampled children break the limit, and
    a controller that only saw their zero rewards would need thousands of draws to learn where the feasible
    children are."""
    ladders = ladders if ladders is not None else option_ladders(space, costs)
    labels = list(ladders)
    cost = costs.of(sample)
    while limits_broken(reward, cost):
        moved = False
        for i in rng.permutation(len(labels)):
            step = _step_down(sample, cost, labels[i], ladders[labels[i]], costs)
            if step is None:
                continue
            (sample, cost), moved = step, True
            if not limits_broken(reward, cost):
                return sample
        if not moved:
            return None
    return sample


def check_targets(targets, space, costs, space_name: str, option: str = "--flops-targets") -> None:
    """Refuse a target below the space's smallest child, naming that child's FLOPs (and ``option``)."""
    if not targets:
        return
    _, least = smallest_child(space, costs)
    low = [t for t in targets if t < least]
    if low:
        raise ConfigError(option, f"{', '.join(f'{t:.4g}' for t in low)} FLOPs is below the smallest "
                                             f"child of {space_name}, {least:.4g} FLOPs per 30 s record")


def in_band(samples: Sequence[dict[str, Any]], costs, low: float, high: float,
            fall_back: bool = True) -> list[dict[str, Any]]:
    """The ``samples`` whose FLOPs per record lie in ``[low, high]``, in their order; with ``fall_back``, those at
    most ``high`` when none reaches ``low`` (a member is then still cut, and its summary line says it is small)."""
    flops = [(_cost_of(s, costs) or {}).get("flops_per_record", math.inf) for s in samples]
    fits = [s for s, f in zip(samples, flops) if f <= high]
    band = [s for s, f in zip(samples, flops) if low <= f <= high]
    return band if band or not fall_back else fits


def search_member(target: float, family, controller, space, costs, reward,
                  score: Callable[[list[dict[str, Any]], str, Any], list[float | None]],
                  carried: Sequence[dict[str, Any]] = (), stats: dict[str, Any] | None = None,
                  pick: Callable[[int], int | None] | None = None,
                  out_of_time: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
    """The controller's search under the hard limit ``target`` (``family``: the search's ``FamilyConfig``).

    A child beyond the limit is shrunk until it fits (:func:`shrink_to_limit`) and the controller learns from the
    child it scored; a ``family.grow`` share of the children under half the target are grown towards it
    (:func:`grow_to_limit`), so the search explores up to its limit. ``score(samples, phase, reward)`` scores and
    logs feasible ones on the reward set (``phase="family"``) or the whole validation split (``"family-derive"``)
    and returns their rewards. The best ``family.rescored`` children costing at least ``family.floor`` times the
    target (all children when none does) are rescored on the whole split, with the members already chosen under
    smaller limits (``carried``) that fit and reach the floor, so a larger budget never gets a worse member than a
    smaller one. Returns the best rescored sample, or ``pick(n)``'s choice among the ``n`` just rescored (an index,
    or None to keep the best), or None when no feasible child was found; ``stats`` (when given) receives how many
    children were scored and the FLOPs of the dearest."""
    limited = replace(reward, max_flops=target)
    rng = np.random.default_rng(int(target) % (2 ** 32))
    ladders = option_ladders(space, costs)
    scored: list[tuple[float, int, dict[str, Any]]] = []
    draws = 0
    while len(scored) < family.children and draws < 4 * family.children and not (scored and out_of_time()):
        drawn = [space.decode(s) for s in controller.sample(family.children_per_step)]
        draws += len(drawn)
        samples = [s for s in (shrink_to_limit(s, space, costs, limited, rng, ladders) for s in drawn) if s is not None]
        samples = [grow_to_limit(s, space, costs, limited, rng, ladders)
                   if costs.of(s)["flops_per_record"] < 0.5 * target and rng.random() < family.grow else s
                   for s in samples]
        if not samples:
            continue
        rewards = score(samples, "family", limited)
        controller.update([space.encode(s) for s in samples], nan_rewards(rewards))
        scored += [(r, len(scored) + i, s) for i, (r, s) in enumerate(zip(rewards, samples)) if r is not None]
    if stats is not None:
        stats.update(children=len(scored), stopped_for_time=len(scored) < family.children and out_of_time(),
                     floor_flops=family.floor * target if family.floor else None,
                     dearest_scored_flops=max(
            (float(costs.of(s)["flops_per_record"]) for _, _, s in scored), default=None))
    unique: dict[str, dict[str, Any]] = {}
    for _, _, s in sorted(scored, key=lambda t: (-t[0], t[1])):
        unique.setdefault(sample_key(s), s)
    best = in_band(list(unique.values()), costs, family.floor * target, target)[:family.rescored]
    seen = {sample_key(s) for s in best}
    best += [s for s in in_band(carried, costs, family.floor * target, target, fall_back=False)
             if sample_key(s) not in seen]
    if not best:
        return None
    rewards = score(best, "family-derive", limited)
    ranked = sorted(((r, i) for i, r in enumerate(rewards) if r is not None), key=lambda t: (-t[0], t[1]))
    if not ranked:
        return None
    chosen = pick(len(best)) if pick is not None else None
    return best[ranked[0][1] if chosen is None else chosen]
