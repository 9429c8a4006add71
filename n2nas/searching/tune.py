"""Multi-trial search on Ray Tune, without weight sharing: each trial trains one child from scratch.

Our controllers (random, grid, evolution; ENAS too) drive Tune through :class:`ControllerSearcher`, an ask/tell
adapter: Tune asks for a configuration, the controller samples one child; a finished trial's metric goes back
to the controller. A trial is a function trainable that trains its child alone with the one trainer
(:func:`n2nas.train.trainer.fit`, the child's own learning rate and weight decay) for ``epochs`` epochs of
``steps_per_epoch`` batches, reporting the validation score and a checkpoint (the trainer's state) after each. Everything lives under ``out/tune`` (Tune's storage
path): ``resume=True`` restores the experiment there, finished trials are kept, unfinished and errored ones continue
from their last checkpoint, and the controller continues from its saved state. Results come back as a table
(``results.csv``) and the best child as ``best_pipeline.json``, the same file a weight-sharing search writes.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.errors import ConfigError
from n2nas.presets import preset

try:  # Ray is an optional extra; without it only importing this module's names fails, never n2nas itself
    from ray.tune.search import Searcher as _Searcher
except ImportError:  # pragma: no cover - exercised only without the ray extra
    _Searcher = object


@dataclass(frozen=True)
class TuneConfig:
    """What a multi-trial search tries and how each trial trains."""

    space: str = "ecg-small"
    controller: str = "random"        # random | grid | evolution | enas
    trials: int = 8
    epochs: int = 3                   # reports (and checkpoints) per trial
    steps_per_epoch: int = 20         # training batches per epoch
    concurrent: int = 2               # trials running at once
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    fixed: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    @preset()
    def default() -> "TuneConfig":
        """8 trials x 3 epochs x 20 steps."""
        return TuneConfig()

    @staticmethod
    @preset()
    def smoke() -> "TuneConfig":
        """Seconds per trial: for tests and trying the command out."""
        return TuneConfig(trials=2, epochs=1, steps_per_epoch=2, concurrent=2)


class ControllerSearcher(_Searcher):
    """Tune searcher backed by an n2nas controller (one child per suggestion, its metric told back as the reward:
    a Tune trial has no cost terms)."""

    def __init__(self, controller: str, tokens, seed: int, metric: str = "metric", mode: str = "max"):
        super().__init__(metric=metric, mode=mode)
        from controllers import make_controller

        self.name, self.tokens, self.seed = controller, tuple(tokens), seed
        self.controller = make_controller(controller, self.tokens, seed=seed)
        self.pending: dict[str, dict] = {}

    def suggest(self, trial_id: str) -> dict[str, Any]:
        """The next child's token indices."""
        sample = self.controller.sample(1)[0]
        self.pending[trial_id] = sample
        return {"index_sample": sample}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the controller the child's metric (NaN for a failed trial, so evolution ages it out)."""
        sample = self.pending.pop(trial_id, None)
        if sample is None:
            return
        reward = math.nan if error or not result else float(result.get("metric", math.nan))
        self.controller.update([sample], [reward])

    def save(self, checkpoint_path: str) -> None:
        """Controller state and the children still in flight (tensors and plain values only)."""
        torch.save({"controller": self.controller.state_dict(), "pending": self.pending}, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Inverse of :meth:`save`."""
        state = torch.load(checkpoint_path, weights_only=True)
        self.controller.load_state_dict(state["controller"])
        self.pending = dict(state["pending"])


def train_trial(trial_config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Tune function trainable: train one child from scratch with the one trainer (:func:`n2nas.train.trainer.fit`),
    ``steps_per_epoch`` batches an epoch, reporting the validation score and a resumable checkpoint after each."""
    from ray import tune
    from ray.tune import Checkpoint

    from n2nas.measure.cost import ArchitectureCosts
    from n2nas.metrics import reward_metric_name
    from n2nas.train.primitives import WindowBatches, loss_weights, pick_device, record_scores
    from n2nas.train.numerics import use_cpu_threads
    from n2nas.train.trainer import FitConfig, fit

    use_cpu_threads(int(setup["cpus"]))
    space_def, seed, dataset = setup["space_def"], setup["seed"], setup["dataset"]
    sample = space_def.space.pinned(setup["fixed"]).decode(trial_config["index_sample"])
    settings = space_def.training_settings(sample)
    device = pick_device(setup["device"])
    ctx = space_def.make_context(dataset, setup["train_idx"], setup["val_idx"], setup["cache_dir"], 1)
    data = ctx.pipeline_data(space_def.preprocess_config(sample), space_def.window_config(sample))
    metric = reward_metric_name("auto", dataset.classes, dataset.multilabel)
    cost = ArchitectureCosts(space_def, ctx).of(sample)
    last: dict[str, Any] = {}

    def validate(model) -> float:
        score, scores = record_scores(model, data, ctx.val_idx, metric, dataset.classes, dataset.multilabel, device)
        last.update(scores)
        return score

    def report(entry: dict[str, Any], training) -> None:
        score = entry[f"val_{metric}"]
        ok = math.isfinite(score)
        metrics = {k: v for k, v in last.items() if isinstance(v, (int, float))}
        with tempfile.TemporaryDirectory() as folder:
            torch.save(training.state(), Path(folder) / "trial.pt")
            tune.report({**metrics, "metric": score if ok else math.nan, "metric_name": metric,
                         "epoch": entry["epoch"], "status": "ok" if ok else "failed", "train_loss": entry["loss"],
                         "params": cost["params"], "flops": cost["flops"], "sample": json.dumps(sample, default=list)},
                        checkpoint=Checkpoint.from_directory(folder))

    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a resumed trial continues where its last report left it
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / "trial.pt", weights_only=True)
    weight = loss_weights(ctx.targets[ctx.train_idx], dataset.multilabel, device, float(settings["class_weighting"]))
    # a child trained alone the way a short ``n2nas retrain`` trains it: AdamW, lr decayed over the trial's steps
    recipe = FitConfig(epochs=setup["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
                       weight_decay=settings["weight_decay"], steps_per_epoch=setup["steps_per_epoch"], seed=seed,
                       metric=metric)
    fit(lambda: space_def.build_child(sample, space_def.input_size(dataset), len(dataset.classes)),
        WindowBatches(data, ctx.train_idx, space_def.augment_config(sample), device), validate, recipe, device=device,
        class_weight=weight, multilabel=dataset.multilabel, on_epoch=report, resume=resume)


def tune_search(data, config: TuneConfig, out: str | Path, resume: bool = False, address: str | None = None):
    """Run (or, with ``resume``, continue) a Tune experiment under ``out/tune``; returns the ResultGrid.

    Also writes ``out/results.csv`` (one row per trial) and ``out/best_pipeline.json``.
    """
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from n2nas.data.spec import default_cache_root, load_dataset
    from n2nas.data.splits import stratified_split
    from n2nas.data.table import fit_on_training
    from search_spaces import get_space

    out = Path(out).resolve()
    experiment = out / "tune"
    if resume and not experiment.exists():
        raise ConfigError(out, "nothing to resume: no Tune experiment in this folder")
    if not resume and experiment.exists():
        raise ConfigError(out, "a Tune experiment is already here (use --resume to continue it, or another --out)")
    dataset = load_dataset(data) if isinstance(data, str) else data
    space_def = get_space(config.space)
    space = space_def.space.pinned(config.fixed)
    split = stratified_split(dataset, val=config.val_fraction, seed=config.seed)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    dataset = fit_on_training(dataset, np.array([index[i] for i in split.train]))  # clinical tables only
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False)
    setup = {"space_def": space_def, "fixed": dict(config.fixed), "seed": config.seed, "device": config.device,
             "dataset": dataset, "train_idx": np.array([index[i] for i in split.train]),
             "val_idx": np.array([index[i] for i in split.val]), "cache_dir": default_cache_root() / "prepared",
             "epochs": config.epochs, "steps_per_epoch": config.steps_per_epoch, "cpus": config.cpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(train_trial, setup=setup),
                                    {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial})
    if resume:
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        searcher = ConcurrencyLimiter(ControllerSearcher(config.controller, space.tokens, config.seed),
                                      max_concurrent=config.concurrent)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=config.trials, metric="metric",
                                        mode="max"),
            run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        out.mkdir(parents=True, exist_ok=True)
        (out / "tune_config.json").write_text(json.dumps({"data": data if isinstance(data, str) else None,
                                                          **_jsonable(config)}, indent=2))
    grid = tuner.fit()
    _write_outputs(out, grid, config, space, dataset)
    return grid


def results_table(grid):
    """One row per trial: id, status, the metric it was ranked by and its name, epochs, every score it reported,
    params, FLOPs and the child."""
    from n2nas.metrics import SCORE_COLUMNS

    frame = grid.get_dataframe()
    keep = [c for c in ("trial_id", "metric", "metric_name", "epoch", *SCORE_COLUMNS, "params", "flops", "status",
                        "sample") if c in frame.columns]
    return frame[keep].sort_values("metric", ascending=False, na_position="last").reset_index(drop=True)


def _write_outputs(out: Path, grid, config: TuneConfig, space, dataset) -> None:
    from n2nas.models.folder import data_card
    from n2nas.space import Pipeline
    from n2nas.storage import atomic_write_text

    table = results_table(grid)
    atomic_write_text(out / "results.csv", table.to_csv(index=False))
    ok = table[np.isfinite(table["metric"].astype(float))] if "metric" in table else table.iloc[:0]
    if ok.empty:
        raise ConfigError(out, "every trial failed: no pipeline to export (see results.csv)")
    best = ok.iloc[0]
    sample = Pipeline.from_json({"space": config.space, "sample": json.loads(best["sample"])}, space).sample
    from search_spaces import get_space

    data = data_card(dataset, get_space(config.space).input_size(dataset))
    scores = {k: (float(best[k]) if k not in ("trial_id", "status", "sample", "metric_name") else best[k])
              for k in table.columns if k != "sample" and best[k] == best[k]}
    atomic_write_text(out / "best_pipeline.json",
                      json.dumps(Pipeline(config.space, sample, data, scores).to_json(), indent=2, default=str))


def _jsonable(config: TuneConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)
