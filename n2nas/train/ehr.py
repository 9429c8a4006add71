"""Training EHR MLPs: the search loop's data context for sparse patient rows, and the from-scratch trainer a grid
cell runs (Adam, at most 40 epochs, early stopping on validation macro F1; DiagnoseNET's Table 4 protocol).

:class:`EHRContext` / :class:`EHRPipelineData` offer the same interface as the ECG ``DataContext`` /
``PipelineData`` (``pipeline_data``, ``train_batch``, ``record_windows``, ``targets``), so the search loop and the
local runner drive EHR spaces unchanged: one patient is one "record" with one "window" (its feature row).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score

from n2nas.data.ehr import EHRDataset
from n2nas.data.splits import loss_class_weights, micro_batches, stratified_split
from n2nas.data.table import fit_on_training
from n2nas.metrics import evaluate_predictions, reward_metric
from n2nas.train.budget import BudgetProgress
from n2nas.train.primitives import loss_fn, metric_inputs, pick_device, probabilities


@dataclass
class EHRPipelineData:
    """Model inputs for every pipeline of an EHR space (there is no preprocessing choice to key on)."""

    dataset: EHRDataset
    targets: np.ndarray

    def train_batch(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(B, F)`` float32 rows (only these rows are densified) and ``(B, C)`` targets."""
        return self.dataset.rows(indices), self.targets[indices]

    def record_windows(self, i: int) -> np.ndarray:
        """Patient ``i``'s row as one ``(1, F)`` window (what multi-crop prediction averages over)."""
        return self.dataset.rows(np.array([i]))


@dataclass
class EHRContext:
    """An EHR dataset and its split, shaped like the ECG ``DataContext``."""

    dataset: EHRDataset
    train_idx: np.ndarray
    val_idx: np.ndarray
    _targets: np.ndarray | None = field(default=None, repr=False)

    @property
    def targets(self) -> np.ndarray:
        """``(n, C)`` float32 targets."""
        if self._targets is None:
            self._targets = self.dataset.label_matrix().astype(np.float32)
        return self._targets

    def pipeline_data(self, preprocess=None, window=None) -> EHRPipelineData:
        """The same rows for every pipeline (EHR spaces have no preprocessing tokens)."""
        return EHRPipelineData(self.dataset, self.targets)


@dataclass(frozen=True)
class MLPTrainConfig:
    """From-scratch training of one MLP. Splits follow DiagnoseNET (5% validation, 15% test), but seeded and
    stratified; the stopping rule is patience on validation macro F1 instead of DiagnoseNET's fixed min loss."""

    epochs: int = 40
    patience: int = 5
    min_delta: float = 1e-4
    val_fraction: float = 0.05
    test_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    eval_batch: int = 4096

    @staticmethod
    def diagnosenet() -> "MLPTrainConfig":
        """At most 40 epochs with early stopping (the paper's Table 4 protocol)."""
        return MLPTrainConfig()


def split_indices(dataset: EHRDataset, val: float, test: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded, stratified train/val/test row indices (multi-task data: iterative stratification)."""
    split = stratified_split(dataset, val=val, test=test, seed=seed)
    return tuple(np.sort(np.array([int(i[1:]) for i in part], dtype=np.int64))
                 for part in (split.train, split.val, split.test))


@torch.no_grad()
def predict_rows(model, dataset: EHRDataset, indices: np.ndarray, multilabel: bool, device: torch.device,
                 batch: int = 4096, forward=None) -> np.ndarray:
    """Probabilities for these rows, ``batch`` sparse rows per forward pass."""
    forward = forward or model
    out = [probabilities(forward(dataset.sparse_rows(indices[s:s + batch]).to(device)), multilabel).float().cpu()
           for s in range(0, len(indices), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, len(dataset.classes)), np.float32)


def score_rows(probs: np.ndarray, targets: np.ndarray, dataset: EHRDataset) -> dict[str, Any]:
    """``evaluate_predictions`` plus the support-weighted F1 DiagnoseNET reports."""
    p, y = metric_inputs(probs, targets, dataset.multilabel)
    metrics = evaluate_predictions(p, y, dataset.classes, dataset.multilabel)
    if dataset.multilabel:
        truth, pred = targets.astype(int), (probs >= 0.5).astype(int)
    else:
        truth, pred = y, probs.argmax(axis=1)
    metrics["weighted_f1"] = float(f1_score(truth, pred, average="weighted", zero_division=0))
    return metrics


def train_mlp(space_def, sample: dict[str, Any], dataset: EHRDataset, config: MLPTrainConfig = MLPTrainConfig(),
              log=print, probs_out: Path | None = None) -> dict[str, Any]:
    """Train ``sample``'s MLP from scratch; test-split metrics of the best-validation epoch. ``probs_out``: also
    save the test rows' probabilities there (``.npy``, rows in index order), for a paired comparison of models.

    A run whose loss stops being finite is reported with ``status: "diverged"`` (lr 0.1 does that) instead of
    raising, so a grid goes on.
    """
    settings = space_def.training_settings(sample)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx, test_idx = split_indices(dataset, config.val_fraction, config.test_fraction, config.seed)
    dataset = fit_on_training(dataset, train_idx)  # a clinical table's encoder sees the training rows only
    targets = dataset.label_matrix().astype(np.float32)
    model = space_def.build_child(sample, dataset.n_features, len(dataset.classes)).to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    batch_size = settings["batch_size"]
    best, best_state, best_epoch, history, status = -math.inf, None, 0, [], "ok"
    start = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for idx in micro_batches(train_idx, batch_size, rng, drop_last=len(train_idx) > batch_size):
            x = dataset.sparse_rows(idx).to(device)
            loss = loss_fn(model(x), torch.from_numpy(targets[idx]).to(device), dataset.multilabel)
            if not torch.isfinite(loss):
                status = "diverged"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        if status != "ok":
            log(f"epoch {epoch}: loss is not finite, stopping (diverged)")
            break
        model.eval()
        val = score_rows(predict_rows(model, dataset, val_idx, dataset.multilabel, device, config.eval_batch),
                         targets[val_idx], dataset)
        score = val["macro_f1"] if math.isfinite(val["macro_f1"]) else -math.inf
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else math.nan,
                        "val_macro_f1": val["macro_f1"], "elapsed_s": round(time.monotonic() - start, 2)})
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f} val macro F1 {val['macro_f1']:.4f}")
        if score > best + config.min_delta:
            best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
        if epoch - best_epoch >= config.patience:
            break
        if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
            break
    train_seconds = time.monotonic() - start
    result = {"status": status, "params": params, "best_epoch": best_epoch, "epochs_run": len(history),
              "train_seconds": round(train_seconds, 2), "eval_split": "test", "history": history,
              "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_idx)}
    if best_state is None:
        result["metrics"] = {}
        return result
    model.load_state_dict(best_state)
    model.eval()
    probs = predict_rows(model, dataset, test_idx, dataset.multilabel, device, config.eval_batch)
    result["metrics"] = score_rows(probs, targets[test_idx], dataset)
    if probs_out is not None:
        np.save(probs_out, probs)
    result["metrics"]["val_macro_f1"] = best
    return result


def metric_scorer(name: str, dataset: EHRDataset):
    """``score(probs, targets)``: reward metric ``name`` over every given row at once (what :func:`train_rows`
    keeps the best epoch by)."""
    def score(probs: np.ndarray, targets: np.ndarray) -> float:
        return reward_metric(name, *metric_inputs(probs, targets, dataset.multilabel), dataset.classes,
                             dataset.multilabel)

    return score


def train_rows(model, dataset: EHRDataset, train_idx: np.ndarray, val_idx: np.ndarray, settings: dict[str, Any],
               score, *, epochs: int, max_minutes: float | None, seed: int, device: torch.device,
               patience: int | None = None, class_weight: float = 0.0, log=print) -> dict[str, Any]:
    """Train ``model`` on sparse rows with Adam and an lr decayed linearly to zero over whichever budget ends first,
    ``epochs`` or ``max_minutes`` (as ``n2nas retrain``'s "budget" schedule); keeps the weights of the epoch with
    the best ``score(probs, targets)`` on ``val_idx``. Returns ``{"history", "best_epoch", "best_score"}``; a
    loss that stops being finite ends training at the last good epoch. ``patience`` (None: off) stops after that
    many epochs without a better score: the schedule stays the one over ``epochs``, so a given epoch's weights do
    not depend on it, and without a wall cap the result does not depend on the machine's load.

    ``class_weight`` weights the loss by the training rows' class weights (:func:`loss_class_weights`: balanced
    weights for single-label data, BCE's ``pos_weight`` for multi-label data) raised to this power: 0 off, 0.5
    their square root, 1 scikit-learn's "balanced"; it gives the rare classes, which macro scores weigh like the
    common ones, more of the gradient."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    targets = dataset.label_matrix().astype(np.float32)
    weight = None
    if class_weight:
        weight = torch.tensor(loss_class_weights(targets[train_idx], dataset.multilabel) ** class_weight,
                              dtype=torch.float32, device=device)
    lr, batch_size = settings["lr"], settings["batch_size"]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=settings.get("weight_decay", 0.0))
    drop_last = len(train_idx) > batch_size
    total = epochs * max(1, len(train_idx) // batch_size if drop_last else 1)
    best, best_state, best_epoch, history, steps = -math.inf, None, 0, [], 0
    start = time.monotonic()
    progress = BudgetProgress(total, max_minutes)
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for idx in micro_batches(train_idx, batch_size, rng, drop_last=drop_last):
            spent = progress.spent(steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * max(0.0, 1.0 - spent)
            loss = loss_fn(model(dataset.sparse_rows(idx).to(device)), torch.from_numpy(targets[idx]).to(device),
                           dataset.multilabel, weight)
            if not torch.isfinite(loss):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            losses.append(float(loss.detach()))
            if spent >= 1.0:
                break
        progress.epoch_end()
        model.eval()
        value = score(predict_rows(model, dataset, val_idx, dataset.multilabel, device), targets[val_idx])
        value = value if math.isfinite(value) else -math.inf
        history.append({"epoch": epoch, "steps": len(losses), "loss": float(np.mean(losses)) if losses else math.nan,
                        "val_score": value, "elapsed_s": round(time.monotonic() - start, 2)})
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f} val {value:.4f}")
        if value > best:
            best, best_state, best_epoch = value, copy.deepcopy(model.state_dict()), epoch
        if not losses or not math.isfinite(history[-1]["loss"]) or steps >= total or (
                max_minutes is not None and time.monotonic() - start > 60 * max_minutes) or (
                patience is not None and epoch - best_epoch >= patience):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_epoch": best_epoch, "best_score": best,
            "train_seconds": round(time.monotonic() - start, 2)}
