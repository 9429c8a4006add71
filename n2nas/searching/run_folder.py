"""The run folder of a search: its configuration check on resume, the saved split, trial lines, the ranked
``best_pipeline.json`` and ``summary.json``."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from n2nas.data.record import Dataset
from n2nas.data.splits import Split, stratified_split
from n2nas.errors import ConfigError
from n2nas.runners import RunnerConfig
from n2nas.searching.checkpoint import load_checkpoint
from n2nas.space import Pipeline
from n2nas.storage import atomic_write_text


def trial_line(step: int, phase: str, epoch: int, sample: dict, result: dict, elapsed: float,
                measured, waive_limits: bool = False) -> dict[str, Any]:
    """One ``trials.jsonl`` object: the runner's measurements, then the metric, the reward and every term of it
    (:func:`~n2nas.measure.reward.trial_reward_fields`; ``waive_limits`` for the screen's probe)."""
    from n2nas.measure.reward import trial_reward_fields

    line = {"step": step, "phase": phase, "epoch": epoch, "sample": sample, "metrics": result["metrics"],
            "flops": result["flops"], "flops_per_record": result["flops_per_record"], "params": result["params"],
            "energy_j": result.get("energy_j"), "energy_source": result.get("energy_source", "unmeasured"),
            "latency_ms": result.get("latency_ms"), "records": result.get("records"), "worker": result["worker"],
            "elapsed_s": round(elapsed, 3), "wall_s": round(result["wall_s"], 4) if "wall_s" in result else None}
    line.update(trial_reward_fields(result, measured.reward, waive_limits))
    window = result.get("scored_at")
    line["sampled_energy_j"] = measured.sampler.joules(*window) if measured.sampler and window else None
    for key in ("error", "infeasible"):
        if key in result:
            line[key] = result[key]
    return line


def config_json(config) -> dict[str, Any]:
    """The search configuration as plain JSON-able data (``config.json``, resume check)."""
    return asdict(config)


def open_run_dir(run_dir: Path, config, resume: bool) -> dict[str, Any] | None:
    """A fresh run needs an empty folder; a resumed one needs the same configuration as before."""
    if resume:
        state = load_checkpoint(run_dir / "checkpoint")
        if state is None:
            if (run_dir / "trials.jsonl").exists():
                return None  # killed before the first checkpoint: replay from the start, reusing logged trials
            raise ConfigError(run_dir, "nothing to resume: no checkpoint in this run folder")
        before = json.loads(state["config"])
        now = json.loads(json.dumps(config_json(config)))  # as JSON, so tuples compare equal to the saved lists
        # runs from before the runner option ran locally; a Ray cluster may change address between runs
        before.setdefault("runner", asdict(RunnerConfig()))
        before["runner"]["address"] = now["runner"]["address"]
        changed = [k for k in now if k not in ("budget_minutes", "budget_epochs") and before.get(k) != now[k]]
        if changed:
            raise ConfigError(run_dir, f"--resume with a different configuration ({', '.join(changed)} changed)")
        return state
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(run_dir, "run folder is not empty (use --resume to continue it, or another --out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config_json(config), indent=2))
    return None


def load_or_make_split(run_dir: Path, dataset: Dataset, config, resume: bool) -> Split:
    """The saved split of a resumed run (checked against the data), else a new seeded stratified one."""
    path = run_dir / "split.json"
    if resume and path.exists():
        split = Split.load(path)
        missing = set(split.train + split.val) - set(dataset.ids)
        if missing:
            raise ConfigError(path, f"{len(missing)} records of the saved split are not in this data")
        return split
    split = stratified_split(dataset, val=config.val_fraction, seed=config.seed)
    split.save(path)
    return split


def _sample_key(trial: dict) -> str:
    return json.dumps(trial["sample"], sort_keys=True, default=list)


def rung_depth(trials: list[dict]) -> dict[str, int]:
    """How many final scorings (rungs) each finalist reached, by sample key."""
    depth: dict[str, int] = {}
    for t in trials:
        if t["phase"] == "final":
            depth[_sample_key(t)] = depth.get(_sample_key(t), 0) + 1
    return depth


def ranked_finals(trials: list[dict]) -> list[dict]:
    """Each finalist's last ``final`` trial, ranked by the rung it reached, then by that trial's reward: a later
    rung trained longer, so its score outranks any earlier one. A finalist whose last scoring failed is left out."""
    rungs: dict[str, list[dict]] = {}
    for t in sorted((t for t in trials if t["phase"] == "final"), key=lambda t: t["step"]):
        rungs.setdefault(_sample_key(t), []).append(t)
    last = [scores[-1] for scores in rungs.values()
            if scores[-1]["status"] == "ok" and scores[-1]["reward"] is not None]
    return sorted(last, key=lambda t: (-len(rungs[_sample_key(t)]), -t["reward"], t["step"]))


def rank(trials: list[dict], space, dataset: Dataset, config, first: dict | None = None) -> list[Pipeline]:
    """``first`` (the search's pick, when it made one), then the finalists (:func:`ranked_finals`), then the other
    derive-phase children by shared-weight reward (controller-phase ones if none were derived)."""
    ok = [t for t in trials if t["status"] == "ok" and t["reward"] is not None]

    def ranked(pool):
        return sorted(pool, key=lambda t: (-t["reward"], t["step"]))

    final = ranked_finals(trials)
    in_final = {_sample_key(t) for t in trials if t["phase"] == "final"}
    pool = final + ranked([t for t in ok if t["phase"] == "derive" and _sample_key(t) not in in_final])
    pool = pool or ranked([t for t in ok if "limits_waived" not in t])  # a probe beyond the limits is no result
    if first is not None:
        pool = [first] + [t for t in pool if t["step"] != first["step"]]
    from search_spaces import get_space

    from n2nas.models.folder import data_card

    data = data_card(dataset, get_space(config.space).input_size(dataset))
    out = []
    for t in pool[:config.top_k]:
        sample = Pipeline.from_json({"space": config.space, "sample": t["sample"]}, space).sample
        out.append(Pipeline(config.space, sample, data, {"reward": t["reward"], "metric": t.get("metric"),
                                                          "metric_name": t.get("metric_name"), "step": t["step"],
                                                          "phase": t["phase"], "flops": t["flops"],
                                                          "flops_per_record": t.get("flops_per_record"),
                                                          "latency_ms": t.get("latency_ms"),
                                                          "energy_per_record_j": t.get("energy_per_record_j"),
                                                          "energy_source": t.get("energy_source"),
                                                          "params": t["params"], **t["metrics"]}))
    return out


def write_best(run_dir: Path, pipelines: list[Pipeline]) -> None:
    """``best_pipeline.json``: the best pipeline, with the top k beside it."""
    if not pipelines:
        raise ConfigError(run_dir, "every child failed: no pipeline to export (see trials.jsonl)")
    best = pipelines[0].to_json()
    best["top_k"] = [p.to_json() for p in pipelines]
    atomic_write_text(run_dir / "best_pipeline.json", json.dumps(best, indent=2))


def write_run_summary(run_dir: Path, trials: list[dict], clock, data, config,
                   budget) -> None:
    """``summary.json``: the five-second summary the command prints (see :mod:`n2nas.searching.run_summary`)."""
    from n2nas.searching.run_summary import build_summary, write_summary

    best = json.loads((run_dir / "best_pipeline.json").read_text())
    spec = data if isinstance(data, str) else str(getattr(data, "source", "DATA"))
    summary = build_summary(run_dir, trials, best, clock.state(), spec, retrain_options=config.retrain_options)
    summary["elapsed_s"] = round(budget.elapsed, 1)
    summary["budget_minutes"] = config.budget_minutes
    write_summary(run_dir, summary)
