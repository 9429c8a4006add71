"""EHR rows (one encounter or patient per row, sparse features): the search's data context, the trainer's batches,
prediction and scores.

:class:`EHRContext` / :class:`EHRPipelineData` offer the same interface as the ECG ``DataContext`` /
``PipelineData`` (``pipeline_data``, ``train_batch``, ``record_windows``, ``targets``), so the search loop and the
local runner drive EHR spaces unchanged: one patient is one "record" with one "window" (its feature row).
:class:`RowBatches` feeds :func:`n2nas.train.trainer.fit` sparse batches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from sklearn.metrics import f1_score

from n2nas.data.ehr_matrix import EHRDataset
from n2nas.data.splits import micro_batches, stratified_split
from n2nas.metrics import evaluate_predictions, reward_metric
from n2nas.train.primitives import metric_inputs, probabilities


@dataclass
class EHRPipelineData:
    """Model inputs for every pipeline of an EHR space (there is no preprocessing choice to key on)."""

    dataset: EHRDataset
    targets: np.ndarray
    stats: None = None  # no global normalisation statistics: rows come encoded

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


@dataclass
class RowBatches:
    """Sparse training batches of ``dataset``'s rows ``indices`` for :func:`n2nas.train.trainer.fit` (only the rows
    of a batch are touched; nothing dense is built)."""

    dataset: EHRDataset
    indices: np.ndarray
    targets: np.ndarray
    device: torch.device

    @property
    def n_train(self) -> int:
        """Training rows in one pass."""
        return len(self.indices)

    def batches(self, rng: np.random.Generator, generator: torch.Generator, batch_size: int,
                drop_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One seeded pass of ``(sparse rows, targets)`` batches."""
        for idx in micro_batches(self.indices, batch_size, rng, drop_last=drop_last):
            yield (self.dataset.sparse_rows(idx).to(self.device),
                   torch.from_numpy(self.targets[idx]).to(self.device))

    def example(self) -> torch.Tensor:
        """One dense row."""
        return torch.from_numpy(self.dataset.rows(self.indices[:1]))


def row_scorer(name: str, dataset: EHRDataset, indices: np.ndarray, device: torch.device):
    """``validate(model)``: reward metric ``name`` of the model's predictions for rows ``indices`` (what the trainer
    keeps the best epoch by)."""
    targets = dataset.label_matrix()[indices].astype(np.float32)

    def validate(model) -> float:
        probs = predict_rows(model, dataset, indices, dataset.multilabel, device)
        return reward_metric(name, *metric_inputs(probs, targets, dataset.multilabel), dataset.classes,
                             dataset.multilabel)

    return validate
