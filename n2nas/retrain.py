"""Train an exported pipeline from scratch, and evaluate a trained model on any data set."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.data.record import Dataset
from n2nas.data.splits import class_weights, micro_batches, stratified_split
from n2nas.errors import DataError
from n2nas.export import build_model, load_model_dir, save_model_dir
from n2nas.metrics import evaluate_predictions, reward_metric
from n2nas.space import Pipeline
from n2nas.training import DataContext, loss_fn, metric_inputs, pick_device, predict_records, targets_of

NORM_FILE = "normalisation.json"


@dataclass(frozen=True)
class RetrainConfig:
    """From-scratch training: early stopping on the validation score, LR reduced on plateau, seeded."""

    epochs: int = 40
    patience: int = 8
    plateau_patience: int = 3
    plateau_factor: float = 0.3
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    data_workers: int = 1

    @staticmethod
    def quick() -> "RetrainConfig":
        """A short run for demos and tests."""
        return RetrainConfig(epochs=3, patience=2, plateau_patience=1)


def retrain(pipeline: Pipeline, dataset: Dataset, out: str | Path, config: RetrainConfig = RetrainConfig(),
            log=print) -> dict[str, Any]:
    """Train ``pipeline`` on ``dataset`` (internal seeded split) and write a model folder to ``out``."""
    from search_spaces import get_space
    from n2nas.data.augment import augment_batch
    from n2nas.data.spec import default_cache_root

    out = Path(out)
    space_def = get_space(pipeline.space)
    sample = pipeline.sample
    _check_classes(pipeline, dataset)
    split = stratified_split(dataset, val=config.val_fraction, seed=config.seed)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    ctx = DataContext(dataset, np.array([index[i] for i in split.train]), np.array([index[i] for i in split.val]),
                      default_cache_root() / "prepared", config.data_workers)
    data = ctx.pipeline_data(space_def.preprocess_config(sample), space_def.window_config(sample))
    settings = space_def.training_settings(sample)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    pipeline = dataclasses.replace(pipeline, data={"classes": list(dataset.classes), "multilabel": dataset.multilabel,
                                                   "n_leads": int(dataset.records[0].signal.shape[0]),
                                                   "source": dataset.source})
    model = build_model(pipeline).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=config.plateau_factor,
                                                         patience=config.plateau_patience)
    y_train = ctx.targets[ctx.train_idx]
    weight = None
    if settings["class_weighting"] and not dataset.multilabel:
        weight = torch.tensor(class_weights(y_train.argmax(1), y_train.shape[1]), dtype=torch.float32, device=device)
    metric = _metric_name(dataset)
    best_score, best_state, best_epoch, history = -math.inf, None, 0, []
    start = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for idx in micro_batches(ctx.train_idx, settings["batch_size"], rng, drop_last=len(ctx.train_idx) >
                                 settings["batch_size"]):
            x, y = data.train_batch(idx, rng)
            x, y = augment_batch(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
                                 space_def.augment_config(sample), generator)
            loss = loss_fn(model(x), y, dataset.multilabel, weight)
            if not torch.isfinite(loss):
                raise DataError(out, f"training diverged at epoch {epoch} (loss {float(loss)}); lower the lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
        probs = predict_records(model, data, ctx.val_idx, dataset.multilabel, device)
        p, y = metric_inputs(probs, ctx.targets[ctx.val_idx], dataset.multilabel)
        score = reward_metric(metric, p, y, dataset.classes, dataset.multilabel)
        plateau.step(score)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), f"val_{metric}": score,
                        "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(time.monotonic() - start, 2)})
        log(json.dumps(history[-1]))
        if score > best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        if epoch - best_epoch >= config.patience:
            break
        if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
            break
    model.load_state_dict(best_state)
    model.eval()
    probs = predict_records(model, data, ctx.val_idx, dataset.multilabel, device)
    p, y = metric_inputs(probs, ctx.targets[ctx.val_idx], dataset.multilabel)
    val_metrics = evaluate_predictions(p, y, dataset.classes, dataset.multilabel)
    summary = {"best_epoch": best_epoch, "epochs_run": len(history), "metric": metric,
               "train_seconds": round(time.monotonic() - start, 2), "validation": val_metrics}
    save_model_dir(out, pipeline, model.cpu(), {
        "history.json": history, "metrics.json": summary, "split.json": dataclasses.asdict(split),
        NORM_FILE: _stats_json(data.stats)})
    return summary


def evaluate(model_dir: str | Path, dataset: Dataset, device: str = "auto") -> dict[str, Any]:
    """Score a trained model on every record of ``dataset`` (multi-crop over whole records)."""
    from search_spaces import get_space
    from n2nas.data.cache import prepare
    from n2nas.data.spec import default_cache_root
    from n2nas.training import PipelineData

    pipeline, model = load_model_dir(model_dir)
    _check_classes(pipeline, dataset)
    space_def = get_space(pipeline.space)
    prepared = prepare(dataset, space_def.preprocess_config(pipeline.sample),
                       cache_dir=default_cache_root() / "prepared")
    stats = _stats_from_json(json.loads((Path(model_dir) / NORM_FILE).read_text()))
    data = PipelineData(prepared, targets_of(dataset), space_def.window_config(pipeline.sample), stats)
    dev = pick_device(device)
    probs = predict_records(model.to(dev), data, np.arange(len(dataset)), dataset.multilabel, dev)
    p, y = metric_inputs(probs, data.targets, dataset.multilabel)
    return evaluate_predictions(p, y, dataset.classes, dataset.multilabel)


def _check_classes(pipeline: Pipeline, dataset: Dataset) -> None:
    trained = pipeline.data.get("classes")
    if trained is not None and list(trained) != list(dataset.classes):
        raise DataError(dataset.source, f"classes {list(dataset.classes)} differ from the model's {list(trained)}")


def _metric_name(dataset: Dataset) -> str:
    from n2nas.runners.local import reward_metric_name

    return reward_metric_name("auto", dataset.classes, dataset.multilabel)


def _stats_json(stats) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(stats).items()}


def _stats_from_json(obj: dict[str, Any] | None):
    if obj is None:
        return None
    from n2nas.data.windows import GlobalStats

    return GlobalStats(**{k: np.asarray(v, dtype=np.float32) for k, v in obj.items()})
