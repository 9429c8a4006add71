"""``n2nas derive``: a family member for a new FLOPs budget, cut from a finished search's trained supernet without
training it again (see :mod:`n2nas.searching.family`)."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from n2nas.errors import ConfigError, DataError


def derive_member(run_dir: str | Path, max_flops: float, out: str | Path, data: str | None = None) -> dict[str, Any]:
    """Search ``run_dir``'s trained supernet under ``max_flops`` FLOPs per 30 s record with the run's controller
    (shared-weight scores only), write the winner with inherited weights (fine-tuned when the run's family is) to
    ``out`` and record it in
    the run's family file; returns that entry. ``data``: the run's data SPEC when the run did not record it."""
    from n2nas.searching import phases
    from n2nas.train.lr_budget import clock_of
    from n2nas.searching.checkpoint import load_checkpoint
    from n2nas.searching.family import add_members, family_samples
    from n2nas.searching.member_search import check_targets
    from n2nas.searching.loop import SearchConfig, search_progress
    from n2nas.storage import dataclass_from_json

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "config.json").is_file():
        raise DataError(run_dir, "not a search run folder (config.json is missing)")
    state = load_checkpoint(run_dir / "checkpoint")
    if state is None or not (run_dir / "split.json").is_file():
        raise DataError(run_dir, "this run has no trained supernet to derive from (no checkpoint/search_state.pt or "
                                 "split.json: it was stopped before its first epoch ended)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(out, "model folder is not empty")
    try:
        config = dataclass_from_json(SearchConfig, json.loads((run_dir / "config.json").read_text()))
    except (ValueError, TypeError) as err:
        raise DataError(run_dir / "config.json", f"cannot read the run's configuration ({err})") from None
    data = data or state.get("data")
    if data is None:
        raise ConfigError("--data", "this run did not record its data SPEC; give the one it searched")
    with ExitStack() as resources:  # reopened as a resumed run: its configuration, split and supernet as they were
        search = phases.open_search(data, config, run_dir, True, search_progress(False, config), resources,
                                    clock_of(config.clock)())
        phases.screen(search)  # pins the screen's winner and restores the controller; nothing is trained
        check_targets([max_flops], search.space, search.costs, config.space, "--max-flops")
        search.step = max((t["step"] for t in search.log.records), default=-1) + 1  # after every logged trial
        entry, = add_members(search, [max_flops], [config.seed + 5000 + int(max_flops) % 100_000], [out],
                             carried=family_samples(run_dir), option="--max-flops")
        search.writer.close()
    return entry
