"""The search's plan, apart from the loop itself: which labels are pinned, which preprocessing variants are
prepared up front, the fixed reward set, which children the derive phase rescores, and the scoreboard."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from n2nas.errors import ConfigError
from n2nas.searching.budget import Budget, minimum_budget_minutes
from n2nas.space import Pipeline, sample_key

DERIVE_DRAW_ROUNDS = 8  # fresh controller draws of derive_children each, at most, to replace unscored children


def pins(space_def, config) -> dict[str, Any]:
    """``config.fixed`` plus, with ``pin_unscored``, the space's defaults for tokens the supernet cannot score."""
    pins = dict(config.fixed)
    if config.pin_unscored:
        defaults = space_def.space.default_sample()
        for label in space_def.supernet_blind:
            pins.setdefault(label, defaults[label])
    return pins


def check_budget(config, n_records: int) -> None:
    """A time budget too small to score a single child stops the search before anything is written."""
    if config.budget_minutes is None:
        return
    least = minimum_budget_minutes(n_records)
    if config.budget_minutes < least:
        raise ConfigError("--budget-minutes", f"{config.budget_minutes:g} minutes cannot score a single child on "
                                              f"{n_records} records; give at least {least:g}")


def prepare_everything(ctx, space_def, space, progress, budget: Budget) -> None:
    """Prepare every preprocessing variant the (pinned) space can sample, up front and visibly, so that no
    training step ever waits for a whole-dataset preparation."""
    if not hasattr(ctx, "prepare_all"):
        return  # EHR rows need no preparation
    labels = [d.label for d in space.flat if getattr(d, "kind", "") == "preprocessing"]
    variants = list(dict.fromkeys(space_def.preprocess_config(s) for s in space.grid(labels)))

    def shown(done: int, total: int, label: str = "") -> None:
        progress.phase("preparing data", done, total)
        progress.elapsed(budget.elapsed)

    ctx.prepare_all(variants, progress=shown)


def reward_set(ctx, n: int | None, seed: int) -> np.ndarray:
    """A fixed, stratified subset of the validation records on which every controller-phase child is scored."""
    val = np.asarray(ctx.val_idx)
    if n is None or n >= len(val):
        return val
    from sklearn.model_selection import train_test_split

    y = ctx.targets[val]
    labels = y.argmax(1) if y.ndim == 2 else y
    try:
        chosen, _ = train_test_split(val, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # a class too rare to stratify (tiny or multi-label data): a seeded plain draw
        chosen = np.random.default_rng(seed).choice(val, size=n, replace=False)
    return np.sort(chosen)


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


def score_board(trials: list[dict]) -> tuple[int, int, float | None, float | None]:
    """(children scored ok, failed, best bare metric, FLOPs per 30 s record of that child) for the progress display.

    A screen probe scored beyond the hard limits counts as scored but is never shown as the best: it is no result.
    """
    ok = [t for t in trials if t["status"] == "ok" and t["reward"] is not None]
    failed = sum(1 for t in trials if t["status"] == "failed")
    results = [t for t in ok if "limits_waived" not in t]
    if not results:
        return len(ok), failed, None, None
    best = max(results, key=lambda t: (t["reward"], -t["step"]))
    return len(ok), failed, best.get("metric"), best.get("flops_per_record")
