"""``n2nas retrain``: a pipeline trained from scratch on a data set into a model folder, through the one trainer
(:func:`n2nas.train.trainer.fit`)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.models.folder import (ENCODER_FILE, METRICS_FILE, NORM_FILE, THRESHOLDS_FILE, build_model, data_card,
                             stats_json, write_model_folder)
from n2nas.compress.prune import PruneConfig, pack_state, state_bytes
from n2nas.compress.quantize import QUANT_FILE, QATConfig, convert
from n2nas.data.record import ROWS, Dataset
from n2nas.data.splits import stratified_split
from n2nas.errors import ConfigError, DataError
from n2nas.models.evaluate import check_classes, check_leads
from n2nas.metrics import REWARD_METRICS, choose_thresholds, evaluate_predictions, reward_metric, reward_metric_name
from n2nas.presets import preset
from n2nas.space import Pipeline
from n2nas.train.averaging import check_ema_decay
from n2nas.train.numerics import flush_denormals
from n2nas.train.parallel import DistContext, scaled_lr
from n2nas.train.primitives import (DataContext, WindowBatches, loss_weights, metric_inputs, pick_device,
                                    predict_records)
from n2nas.train.rows import RowBatches, predict_rows, row_scorer
from n2nas.train.trainer import Fitted, FitConfig, fit

SCHEDULES = ("plateau", "budget")
TRAINED = "trained from scratch"  # a retrained model folder's ``weights``


@dataclass(frozen=True)
class RetrainConfig:
    """From-scratch training of a pipeline: an lr schedule, the best-scoring epoch's weights kept, seeded.

    ``schedule``: "budget" (default) decays the lr linearly to zero over whichever budget ends first, ``epochs`` or
    ``max_minutes``, and does not stop an ECG pipeline early; "plateau" cuts it by ``plateau_factor`` after
    ``plateau_patience`` epochs without a better validation score and stops after ``patience`` such epochs (EHR
    pipelines stop on ``patience`` under either). docs/search.md#retraining has the measurements behind the default.
    ``ema_decay`` (None: off) scores and keeps an exponential moving average of an ECG net's weights
    (:mod:`n2nas.train.averaging`); not combined with pruning or QAT. ``max_minutes`` is checked after every batch.
    ``workers`` > 1 trains data-parallel (:mod:`n2nas.train.parallel`; ``global_batch`` scales the lr linearly);
    ``norm="none"`` replaces batch norm by identity (exact N-worker == 1-worker equivalence); ``prune`` prunes
    conv/linear weights on a schedule (:mod:`n2nas.compress.prune`); ``qat`` trains int8-aware and saves the int8
    model (:mod:`n2nas.compress.quantize`). ``class_weight``: EHR pipelines' loss weighted by the balanced class
    weights raised to this power (0 off).
    """

    epochs: int = 40
    patience: int = 8
    plateau_patience: int = 3
    plateau_factor: float = 0.3
    schedule: str = "budget"
    val_fraction: float = 0.15
    seed: int = 0
    split_seed: int | None = None  # the validation split's seed; None: ``seed`` (set it to vary only the training)
    device: str = "auto"
    max_minutes: float | None = None
    data_workers: int = 1
    workers: int = 1
    global_batch: int | None = None
    norm: str = "batch"
    ema_decay: float | None = 0.998
    prune: PruneConfig | None = None
    qat: QATConfig | None = None
    class_weight: float = 0.0

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError("--workers", f"must be positive, got {self.workers}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("--schedule", f"expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.norm not in ("batch", "none"):
            raise ConfigError("--norm", f"expected batch or none, got {self.norm!r}")
        if self.prune is not None and self.qat is not None:
            raise ConfigError("--qat", "pruning and quantization-aware training are separate runs; pick one")
        check_ema_decay("--ema-decay", self.ema_decay)

    @staticmethod
    @preset()
    def quick() -> "RetrainConfig":
        """A short run for demos and tests."""
        return RetrainConfig(epochs=3, patience=2, plateau_patience=1)


def retrain(pipeline: Pipeline, dataset: Dataset, out: str | Path, config: RetrainConfig = RetrainConfig(),
            log=print) -> dict[str, Any]:
    """Train ``pipeline`` on ``dataset`` (internal seeded split) with :func:`n2nas.train.trainer.fit` and write a
    model folder to ``out``; returns its ``metrics.json``."""
    flush_denormals()  # before the thread pool starts, so that its threads inherit the flag too
    if dataset.modality == ROWS:  # one process, sparse batches
        return _retrain_rows(pipeline, dataset, Path(out), config, log)
    if config.class_weight:  # ECG pipelines carry their own class weighting token; a silent no-op would mislead
        raise ConfigError("--class-weight", "applies to EHR pipelines only; an ECG pipeline's class_weighting is "
                                            "part of its sample")
    if config.workers == 1:
        return _train(pipeline, dataset, out, config, log=log, dist_ctx=DistContext())
    from n2nas.train.parallel import launch

    launch(_train, config.workers, (pipeline, dataset, str(out), config), pick_device(config.device), log=log)
    return json.loads((Path(out) / METRICS_FILE).read_text())


def fit_config(config: RetrainConfig, settings: dict[str, Any], metric: str, modality: str, batch_size: int,
               lr: float) -> FitConfig:
    """The trainer's recipe for a pipeline's training ``settings`` under ``config``. What differs by modality is
    decided here and nowhere else: an ECG net trains with AdamW and scores an average of its weights, and under the
    budget schedule it never stops early (its lr only reaches the small values that give the last gains near the
    end); an EHR MLP trains with Adam on its raw weights and stops after ``patience`` epochs without a better
    score."""
    rows = modality == ROWS
    return FitConfig(epochs=config.epochs, lr=lr, batch_size=batch_size, weight_decay=settings["weight_decay"],
                     optimizer="adam" if rows else "adamw", schedule=config.schedule,
                     patience=config.patience if rows or config.schedule == "plateau" else None,
                     plateau_patience=config.plateau_patience, plateau_factor=config.plateau_factor,
                     max_minutes=config.max_minutes, seed=config.seed, ema_decay=None if rows else config.ema_decay,
                     prune=config.prune, qat=config.qat, metric=metric)


def _train(pipeline: Pipeline, dataset: Dataset, out: str | Path, config: RetrainConfig, *, log,
           dist_ctx: DistContext) -> dict[str, Any]:
    """An ECG pipeline in one process (rank ``dist_ctx.rank`` of ``dist_ctx.world``)."""
    from n2nas.data.spec import default_cache_root
    from search_spaces import get_space

    out = Path(out)
    space_def = get_space(pipeline.space)
    sample = pipeline.sample
    check_classes(pipeline, dataset)
    check_leads(pipeline, dataset, space_def)
    split = stratified_split(dataset, val=config.val_fraction,
                             seed=config.seed if config.split_seed is None else config.split_seed)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    ctx = DataContext(dataset, np.array([index[i] for i in split.train]), np.array([index[i] for i in split.val]),
                      default_cache_root() / "prepared", config.data_workers)
    data = ctx.pipeline_data(space_def.preprocess_config(sample), space_def.window_config(sample))
    settings = space_def.training_settings(sample)
    device = dist_ctx.device or pick_device(config.device)
    if config.qat is not None and device.type != "cpu":
        raise ConfigError("--qat", "int8 kernels run on the CPU only; use --device cpu with --qat")
    pipeline = dataclasses.replace(pipeline, data=data_card(dataset, **({"norm": "none"} if config.norm == "none"
                                                                         else {})))
    batch_size, lr = scaled_lr(settings["lr"], settings["batch_size"], config.global_batch)
    weight = loss_weights(ctx.targets[ctx.train_idx], dataset.multilabel, device, float(settings["class_weighting"]))
    metric = _metric_name(dataset)

    def validate(model) -> float:
        return reward_metric(metric, *_validate(model, data, ctx, dataset, device, dist_ctx), dataset.classes,
                             dataset.multilabel)

    recipe = fit_config(config, settings, metric, dataset.modality, batch_size, lr)
    fitted = fit(lambda: build_model(pipeline), WindowBatches(data, ctx.train_idx, space_def.augment_config(sample),
                                                              device),
                 validate, recipe, device=device, class_weight=weight, multilabel=dataset.multilabel, dist=dist_ctx,
                 log=log)
    _raise_if_diverged(fitted, out)
    files, final = {}, fitted.model
    if config.qat is not None:
        final = convert(fitted.model)
        device = torch.device("cpu")
        files[QUANT_FILE] = {"mode": "qat", "backend": config.qat.backend, "example_shape": list(fitted.example.shape)}
    final.eval()
    p, y = _validate(final, data, ctx, dataset, device, dist_ctx)
    thresholds = choose_thresholds(y, p) if dataset.multilabel else 0.5
    if dataset.multilabel:  # chosen on validation records only; evaluate and export read them from the folder
        files[THRESHOLDS_FILE] = {"classes": list(dataset.classes), "thresholds": [float(t) for t in thresholds],
                                  "chosen_on": f"validation split ({len(y)} records), per-class F1 maximised"}
    summary = {**_summary(fitted, metric, dist_ctx.world, config), "global_batch": batch_size, "lr": lr,
               "ema_decay": config.ema_decay if recipe.uses_ema else None,
               "validation": evaluate_predictions(p, y, dataset.classes, dataset.multilabel, thresholds)}
    if dist_ctx.is_main:
        # the state dict object itself is saved: its _metadata (module versions) tells int8 modules how to load
        state = final.cpu().state_dict()
        if fitted.pruner is not None:
            state = pack_state(state)
            summary["size"] = _sparsity(final)
        summary = write_model_folder(out, pipeline, final.cpu(), weights=TRAINED, metrics=summary, state=state,
                                     files={"history.json": fitted.history, "split.json": dataclasses.asdict(split),
                                            NORM_FILE: stats_json(data.stats), **files})
    dist_ctx.barrier()
    return summary


def _retrain_rows(pipeline: Pipeline, dataset, out: Path, config: RetrainConfig, log) -> dict[str, Any]:
    """An EHR MLP: split by patient for clinical tables, whose encoder is refitted on the training rows and kept as
    ``encoder.json``; the loss optionally weighted by ``config.class_weight``."""
    from n2nas.data.table import fit_on_training

    if config.workers > 1 or config.prune is not None or config.qat is not None or config.norm != "batch":
        raise ConfigError("--workers", "EHR pipelines retrain in one process without pruning, QAT or --norm")
    check_classes(pipeline, dataset)
    split = stratified_split(dataset, val=config.val_fraction,
                             seed=config.seed if config.split_seed is None else config.split_seed)
    index = {rid: i for i, rid in enumerate(dataset.ids)}
    train_idx, val_idx = (np.array([index[i] for i in part], dtype=np.int64) for part in (split.train, split.val))
    dataset = fit_on_training(dataset, train_idx)
    pipeline = dataclasses.replace(pipeline, data=data_card(dataset))
    device = pick_device(config.device)
    metric = _searched_metric(pipeline, dataset)
    fitted = fit_rows(pipeline, dataset, train_idx, val_idx, config, metric, device, log)
    probs = predict_rows(fitted.model, dataset, val_idx, dataset.multilabel, device)
    p, y = metric_inputs(probs, dataset.label_matrix()[val_idx].astype(np.float32), dataset.multilabel)
    summary = {**_summary(fitted, metric, 1, config), "params": sum(q.numel() for q in fitted.model.parameters()),
               "validation": evaluate_predictions(p, y, dataset.classes, dataset.multilabel)}
    files = {"history.json": fitted.history, "split.json": dataclasses.asdict(split)}
    if dataset.encoder is not None:
        files[ENCODER_FILE] = dataset.encoder
    return write_model_folder(out, pipeline, fitted.model.cpu(), weights=TRAINED, metrics=summary, files=files)


def fit_rows(pipeline: Pipeline, dataset, train_idx: np.ndarray, val_idx: np.ndarray, config: RetrainConfig,
             metric: str, device: torch.device, log=lambda m: None) -> Fitted:
    """An EHR pipeline's network trained on rows ``train_idx`` and kept at its best epoch on ``metric`` over
    ``val_idx`` (the rows of an already encoded ``dataset``), as ``n2nas retrain`` trains it; raises on a diverged
    loss. The benchmarks call it with their own split."""
    from search_spaces import get_space

    settings = get_space(pipeline.space).training_settings(pipeline.sample)
    targets = dataset.label_matrix().astype(np.float32)
    weight = loss_weights(targets[train_idx], dataset.multilabel, device, config.class_weight)
    recipe = fit_config(config, settings, metric, ROWS, settings["batch_size"], settings["lr"])
    n_inputs, n_classes = dataset.n_inputs, len(dataset.classes)
    fitted = fit(lambda: build_model(pipeline, n_inputs, n_classes), RowBatches(dataset, train_idx, targets, device),
                 row_scorer(metric, dataset, val_idx, device), recipe, device=device, class_weight=weight,
                 multilabel=dataset.multilabel, log=log)
    _raise_if_diverged(fitted, pipeline.space)
    return fitted


def _raise_if_diverged(fitted: Fitted, where) -> None:
    if fitted.status == "diverged":
        info = fitted.extras["diverged"]
        raise DataError(where, f"training diverged at epoch {info['epoch']} (loss {info['loss']}); lower the lr")


def _summary(fitted: Fitted, metric: str, workers: int, config: RetrainConfig) -> dict[str, Any]:
    """The training part of ``metrics.json``."""
    return {"best_epoch": fitted.best_epoch, "epochs_run": len(fitted.history), "metric": metric,
            "workers": workers, "schedule": config.schedule, "train_seconds": fitted.train_seconds}


def _validate(model, data, ctx: DataContext, dataset: Dataset, device, dist_ctx: DistContext):
    """Record-level ``(probs, y)`` of the validation records; each worker predicts its slice of them."""
    lo, hi = dist_ctx.slice(len(ctx.val_idx))
    probs = predict_records(model, data, ctx.val_idx[lo:hi], dataset.multilabel, device)
    probs = dist_ctx.gather_rows(probs, len(ctx.val_idx))
    return metric_inputs(probs, ctx.targets[ctx.val_idx], dataset.multilabel)


def _sparsity(model) -> dict[str, Any]:
    """The real sparsity of a pruned model next to its dense float32 size."""
    from n2nas.compress.prune import sparsity_report

    sparsity = sparsity_report(model)
    report = {k: sparsity[k] for k in ("sparsity", "sparsity_all_params", "prunable_weights", "nonzero_weights",
                                       "params", "per_layer")}
    report["dense_bytes"] = state_bytes({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return report


def _metric_name(dataset: Dataset) -> str:
    return reward_metric_name("auto", dataset.classes, dataset.multilabel)


def _searched_metric(pipeline: Pipeline, dataset) -> str:
    """The metric the search rewarded (``scores["metric_name"]``), so that an EHR retrain keeps the epoch that is
    best on it (``ehr-cpu`` rewards macro AUROC); the data's default when the pipeline names none."""
    name = pipeline.scores.get("metric_name")
    return name if name in REWARD_METRICS else _metric_name(dataset)
