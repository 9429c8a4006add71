"""What a search settles before it trains: which labels are pinned, whether the time budget can score a child at
all, every preprocessing variant prepared up front, and the fixed reward set."""
from __future__ import annotations

from typing import Any

import numpy as np

from n2nas.data.record import SIGNALS
from n2nas.errors import ConfigError
from n2nas.searching.budget import Budget, minimum_budget_minutes


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
    if ctx.dataset.modality != SIGNALS:
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
