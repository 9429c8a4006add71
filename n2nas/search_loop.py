"""The ENAS loop: shared-weight phase, controller phase, derive phase; run folder, resume and budget."""
from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.checkpoint import atomic_write_text, load_checkpoint, numpy_rng_state, restore_numpy_rng, save_checkpoint
from n2nas.data.record import Dataset
from n2nas.data.splits import Split, stratified_split
from n2nas.errors import ConfigError
from n2nas.measure import MeasureConfig
from n2nas.measure.run import RunMeasurement, preflight, start_measurement
from n2nas.reward import RewardConfig
from n2nas.runners import RunnerConfig, make_runner
from n2nas.runners.local import SharedTrainingConfig
from n2nas.space import Pipeline
from n2nas.trials import TrialLog


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how long. Budget: whichever of ``budget_minutes`` / ``budget_epochs`` ends first."""

    space: str = "ecg-small"
    controller: str = "enas"
    seed: int = 0
    budget_minutes: float | None = None
    budget_epochs: int | None = 10
    val_fraction: float = 0.2
    shared_steps: int = 20          # shared-weight steps (one sampled child per batch) per epoch
    controller_steps: int = 4       # controller updates per epoch
    children_per_step: int = 4      # children scored per controller update
    reward_records: int = 96        # validation records drawn for each controller-phase reward
    derive_children: int = 12       # children sampled and scored on the full validation split at the end
    top_k: int = 5
    shared: SharedTrainingConfig = SharedTrainingConfig()
    runner: RunnerConfig = RunnerConfig()      # backend (local | ray | mpi), workers, sync/async (n2nas.runners)
    reward: RewardConfig = RewardConfig()      # metric x cost terms, hard limits (see n2nas.reward)
    measure: MeasureConfig = MeasureConfig()   # latency timing, energy estimate, power sampling
    device: str = "auto"
    data_workers: int = 1
    fixed: dict[str, Any] = field(default_factory=dict)  # labels pinned to one value (not searched)

    @staticmethod
    def demo() -> "SearchConfig":
        """A few minutes on 2 CPU cores with the bundled sample."""
        return SearchConfig(budget_minutes=4.0, budget_epochs=None)

    @staticmethod
    def thorough() -> "SearchConfig":
        """Hours-scale search on a full data set (the N2NAS-sized space)."""
        return SearchConfig(space="ecg", budget_epochs=150, shared_steps=100, controller_steps=20,
                            children_per_step=5, reward_records=512, derive_children=100, top_k=10)


@dataclass
class SearchResult:
    """What a search leaves: the run folder, every trial, and the ranked derived pipelines."""

    run_dir: Path
    trials: list[dict[str, Any]]
    pipelines: list[Pipeline]

    def best(self, k: int = 1) -> list[Pipeline]:
        """The top ``k`` pipelines by full-validation score."""
        return self.pipelines[:k]


class _Budget:
    def __init__(self, config: SearchConfig, elapsed: float):
        self.config, self.start = config, time.monotonic() - elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def search_over(self, epoch: int) -> bool:
        """Stop searching with 15% of a time budget left for the derive phase."""
        c = self.config
        if c.budget_epochs is not None and epoch >= c.budget_epochs:
            return True
        return c.budget_minutes is not None and self.elapsed > 0.85 * 60 * c.budget_minutes

    def derive_over(self) -> bool:
        return self.config.budget_minutes is not None and self.elapsed > 60 * self.config.budget_minutes


def search(data: str | Dataset = "sample", config: SearchConfig = SearchConfig(), out: str | Path = "runs/search",
           resume: bool = False, progress: bool = False) -> SearchResult | None:
    """Run (or resume) a search and leave a complete run folder in ``out``.

    With the MPI backend every rank calls this; rank 0 runs the search and writes the run folder, the other
    ranks serve its runner and return None.
    """
    if config.runner.backend == "mpi":
        from n2nas.runners.mpi import serve_if_worker

        if serve_if_worker(data):
            return None
    preflight(config)  # fail before the run folder is created
    with ExitStack() as resources:  # the power sampler and energy meters stop even when the search fails
        return _search(data, config, out, resume, progress, resources)


def _search(data: str | Dataset, config: SearchConfig, out: str | Path, resume: bool, progress: bool,
            resources: ExitStack) -> SearchResult:
    from controllers import make_controller
    from search_spaces import get_space
    from n2nas.data.spec import default_cache_root, load_dataset
    from n2nas.training import pick_device

    run_dir = Path(out)
    state = _open_run_dir(run_dir, config, resume)
    dataset = load_dataset(data) if isinstance(data, str) else data
    split = _split(run_dir, dataset, config, resume)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    space_def = get_space(config.space)
    # The space builds its own data context: prepared ECG signals, or sparse EHR rows (same interface).
    ctx = space_def.make_context(dataset, np.array([index[i] for i in split.train]),
                                 np.array([index[i] for i in split.val]), default_cache_root() / "prepared",
                                 config.data_workers)
    space = space_def.space.pinned(config.fixed)
    torch.manual_seed(config.seed)  # dropout draws from torch's default generator; saved in checkpoints too
    runner = make_runner(config.runner, space_def, ctx, config.shared, pick_device(config.device), config.seed)
    resources.callback(runner.close)  # workers are released even when the search fails
    controller = make_controller(config.controller, space.tokens, seed=config.seed)
    rng = np.random.default_rng(config.seed + 1)
    log = TrialLog(run_dir / "trials.jsonl")
    epoch, step = 0, 0
    if state is not None:
        runner.load_state_dict(state["runner"])
        controller.load_state_dict(state["controller"])
        restore_numpy_rng(rng, state["rng"])
        torch.set_rng_state(state["torch_rng"])
        epoch, step = int(state["epoch"]), int(state["step"])
    budget = _Budget(config, float(state["elapsed_s"]) if state else 0.0)
    writer = _tensorboard(run_dir)
    bar = _progress(progress, config)
    measured = start_measurement(runner, space_def, space, dataset, config, run_dir, log, resources)

    def score_and_log(index_samples, records, phase):
        """Score children unless a resumed log already holds them; returns their rewards."""
        nonlocal step
        steps = list(range(step, step + len(index_samples)))
        samples = [space.decode(s) for s in index_samples]
        results = runner.score(samples, records) if any(log.get(s) is None for s in steps) else None
        rewards = []
        for i, (st, sample) in enumerate(zip(steps, samples)):
            logged = log.get(st) or log.append(_trial_line(st, phase, epoch, sample, results[i], budget.elapsed,
                                                           measured))
            rewards.append(logged["reward"])
        step += len(index_samples)
        return rewards

    while not budget.search_over(epoch):
        stats = runner.train_shared([space.decode(s) for s in controller.sample(config.shared_steps)])
        for _ in range(config.controller_steps):
            samples = controller.sample(config.children_per_step)
            records = rng.choice(ctx.val_idx, size=min(config.reward_records, len(ctx.val_idx)), replace=False)
            rewards = score_and_log(samples, records, "controller")
            stats.update({f"controller_{k}": v for k, v in controller.update(samples, _nan(rewards)).items()})
        epoch += 1
        _log_epoch(writer, bar, epoch, stats, log)
        save_checkpoint(run_dir / "checkpoint", {
            "epoch": epoch, "step": step, "elapsed_s": budget.elapsed, "runner": runner.state_dict(),
            "controller": controller.state_dict(), "rng": numpy_rng_state(rng), "torch_rng": torch.get_rng_state(),
            "config": json.dumps(_config_json(config))})

    # Derive: sample many, score each on the whole validation split, keep the best (ENAS's final phase).
    seen: set[str] = set()
    for index_sample in controller.sample(config.derive_children):
        key = json.dumps(index_sample, sort_keys=True)
        if key in seen:
            continue
        if seen and budget.derive_over():
            break
        seen.add(key)
        score_and_log([index_sample], ctx.val_idx, "derive")
    if bar is not None:
        bar.close()
    writer.close()
    pipelines = _rank(log.records, space, dataset, config)
    _write_best(run_dir, pipelines)
    from n2nas.report import write_report

    write_report(run_dir)
    return SearchResult(run_dir, list(log.records), pipelines)


def _trial_line(step: int, phase: str, epoch: int, sample: dict, result: dict, elapsed: float,
                measured: RunMeasurement) -> dict[str, Any]:
    """One ``trials.jsonl`` object: the runner's measurements, then the reward and every term of it."""
    from n2nas.reward import trial_reward_fields

    line = {"step": step, "phase": phase, "epoch": epoch, "sample": sample, "metrics": result["metrics"],
            "flops": result["flops"], "params": result["params"], "energy_j": result.get("energy_j"),
            "energy_source": result.get("energy_source", "unmeasured"), "latency_ms": result.get("latency_ms"),
            "records": result.get("records"), "worker": result["worker"], "elapsed_s": round(elapsed, 3)}
    line.update(trial_reward_fields(result, measured.reward))
    window = result.get("scored_at")
    line["sampled_energy_j"] = measured.sampler.joules(*window) if measured.sampler and window else None
    for key in ("error", "infeasible"):
        if key in result:
            line[key] = result[key]
    return line


def _nan(rewards: list[float | None]) -> list[float]:
    return [math.nan if r is None else float(r) for r in rewards]


def _config_json(config: SearchConfig) -> dict[str, Any]:
    return asdict(config)


def _open_run_dir(run_dir: Path, config: SearchConfig, resume: bool) -> dict[str, Any] | None:
    """A fresh run needs an empty folder; a resumed one needs the same configuration as before."""
    if resume:
        state = load_checkpoint(run_dir / "checkpoint")
        if state is None:
            if (run_dir / "trials.jsonl").exists():
                return None  # killed before the first checkpoint: replay from the start, reusing logged trials
            raise ConfigError(run_dir, "nothing to resume: no checkpoint in this run folder")
        before = json.loads(state["config"])
        now = _config_json(config)
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
    atomic_write_text(run_dir / "config.json", json.dumps(_config_json(config), indent=2))
    return None


def _split(run_dir: Path, dataset: Dataset, config: SearchConfig, resume: bool) -> Split:
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


def _rank(trials: list[dict], space, dataset: Dataset, config: SearchConfig) -> list[Pipeline]:
    """Derive-phase children ranked by full-validation reward (controller-phase ones if none were derived)."""
    ok = [t for t in trials if t["status"] == "ok" and t["reward"] is not None]
    pool = [t for t in ok if t["phase"] == "derive"] or ok
    pool.sort(key=lambda t: (-t["reward"], t["step"]))
    from search_spaces import get_space

    inputs = "n_leads" if hasattr(dataset, "records") else "n_inputs"  # EHR: feature columns
    data = {"classes": list(dataset.classes), "multilabel": dataset.multilabel,
            inputs: get_space(config.space).input_size(dataset), "source": dataset.source}
    out = []
    for t in pool[:config.top_k]:
        sample = Pipeline.from_json({"space": config.space, "sample": t["sample"]}, space).sample
        out.append(Pipeline(config.space, sample, data, {"reward": t["reward"], "step": t["step"],
                                                          "phase": t["phase"], "flops": t["flops"],
                                                          "params": t["params"], **t["metrics"]}))
    return out


def _write_best(run_dir: Path, pipelines: list[Pipeline]) -> None:
    if not pipelines:
        raise ConfigError(run_dir, "every child failed: no pipeline to export (see trials.jsonl)")
    best = pipelines[0].to_json()
    best["top_k"] = [p.to_json() for p in pipelines]
    atomic_write_text(run_dir / "best_pipeline.json", json.dumps(best, indent=2))


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))


def _progress(enabled: bool, config: SearchConfig):
    if not enabled:
        return None
    from tqdm import tqdm

    total = config.budget_epochs if config.budget_minutes is None else None
    return tqdm(total=total, unit="epoch", desc="search", dynamic_ncols=True)


def _log_epoch(writer, bar, epoch: int, stats: dict[str, float], log: TrialLog) -> None:
    for key, value in stats.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            writer.add_scalar(f"search/{key}", value, epoch)
    rewards = [t["reward"] for t in log.records if t["reward"] is not None]
    if rewards:
        writer.add_scalar("search/best_reward", max(rewards), epoch)
        writer.add_scalar("search/mean_recent_reward", float(np.mean(rewards[-20:])), epoch)
    writer.flush()
    if bar is not None:
        bar.update(1)
        bar.set_postfix(best=f"{max(rewards):.3f}" if rewards else "-", loss=f"{stats.get('shared_loss', math.nan):.3f}")
