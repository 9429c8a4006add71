"""Seeded, stratified record-level splits (multi-label aware), class weights and micro-batches.

Splitting by record id, never by window, is what keeps windows of one recording from landing on both sides of
a split; everything is seeded and saved as plain JSON lists of ids.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from sklearn.model_selection import train_test_split

from n2nas.data.record import Dataset
from n2nas.errors import DataError


@dataclass(frozen=True)
class Split:
    """Disjoint lists of record ids."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()

    def save(self, path: str | Path) -> None:
        """Write ``{"train": [...], "val": [...], "test": [...]}``."""
        Path(path).write_text(json.dumps({"train": list(self.train), "val": list(self.val),
                                          "test": list(self.test)}, indent=1))

    @staticmethod
    def load(path: str | Path) -> "Split":
        """Read a split file written by :meth:`save`, checking that its parts are disjoint."""
        try:
            raw = json.loads(Path(path).read_text())
            split = Split(tuple(raw["train"]), tuple(raw["val"]), tuple(raw.get("test", ())))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(path, f"not a split file ({err})") from None
        parts = [set(split.train), set(split.val), set(split.test)]
        if sum(map(len, parts)) != len(set().union(*parts)):
            raise DataError(path, "train, val and test share record ids")
        return split


def stratified_split(dataset: Dataset, *, val: float = 0.2, test: float = 0.0, seed: int = 0) -> Split:
    """Split record ids into train/val/test keeping class shares; multi-label data uses iterative stratification.
    A dataset with ``groups`` (patients of a clinical table) is split by group (:func:`grouped_split`)."""
    ids = np.array(dataset.ids)
    groups = getattr(dataset, "groups", None)
    if groups is not None:
        labels = dataset.label_matrix().argmax(axis=1) if not dataset.multilabel else None
        return Split(*(tuple(ids[part]) for part in grouped_split(labels, np.asarray(groups), val, test, seed)))
    if dataset.multilabel:
        folds = iterative_stratification(dataset.label_matrix(), (1 - val - test, val, test), seed)
        return Split(*(tuple(ids[f]) for f in folds))
    y = dataset.label_indices()
    n_classes = len(np.unique(y))
    rest_ids, test_ids, rest_y = ids, np.array([], dtype=ids.dtype), y
    if test > 0:
        rest_ids, test_ids, rest_y, _ = train_test_split(
            ids, y, test_size=_stratified_size(test, len(ids), n_classes), stratify=y, random_state=seed)
    train_ids, val_ids = train_test_split(
        rest_ids, test_size=_stratified_size(val, len(ids), n_classes), stratify=rest_y, random_state=seed)
    return Split(tuple(train_ids), tuple(val_ids), tuple(test_ids))


def grouped_split(labels: np.ndarray | None, groups: np.ndarray, val: float, test: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train/val/test row indices with every group (patient) on one side only.

    The groups themselves are split by scikit-learn's seeded ``train_test_split``, stratified by each group's
    first row's class (classes held by fewer than 2 groups share one stratum): row class shares stay close to
    the whole set's. ``StratifiedGroupKFold`` does the same job far more slowly on the Diabetes 130 table's
    patients (docs/data.md#patient-splits). Without labels (multi-label data) groups are drawn unstratified.
    """
    names, first, of_row = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    unit = np.arange(len(names))
    strata = None
    if labels is not None:
        strata = np.asarray(labels)[first]
        values, counts = np.unique(strata, return_counts=True)
        rare = values[counts < 2]
        if len(rare):
            strata = np.where(np.isin(strata, rare), -1, strata)
        if len(np.unique(strata)) < 2 or (strata == -1).sum() == 1:
            strata = None

    def hold_out(part: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        if fraction <= 0 or len(part) < 2:
            return part, part[:0]
        k = min(max(1, int(round(fraction * len(part)))), len(part) - 1)
        s = None if strata is None else strata[part]
        if s is not None and (k < len(np.unique(s)) or len(part) - k < len(np.unique(s))
                              or np.unique(s, return_counts=True)[1].min() < 2):
            s = None
        keep, held = train_test_split(part, test_size=k, stratify=s, random_state=seed)
        return np.sort(keep), np.sort(held)

    rest, test_units = hold_out(unit, test)
    train_units, val_units = hold_out(rest, val / max(1e-9, 1 - test))
    return tuple(np.flatnonzero(np.isin(of_row, part)) for part in (train_units, val_units, test_units))


def _stratified_size(fraction: float, n: int, n_classes: int) -> int:
    """Records for a held-out part: the fraction of ``n``, but at least one per class so that small sets split."""
    return max(int(round(fraction * n)), n_classes)


def iterative_stratification(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Sechidis et al. (2011): assign the rarest label's records first to the fold that needs it most.

    Returns one sorted index array per fraction. Records without any label are dealt out by fold demand.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=bool)
    n = len(y)
    fractions = np.asarray(fractions, dtype=float)
    want_records = fractions * n
    want_labels = np.outer(fractions, y.sum(axis=0)).astype(float)
    fold_of = np.full(n, -1)
    remaining = np.ones(n, dtype=bool)
    while remaining.any():
        counts = y[remaining].sum(axis=0)
        if counts.sum() == 0:
            break
        label = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
        for i in rng.permutation(np.flatnonzero(remaining & y[:, label])):
            need = want_labels[:, label]
            best = np.flatnonzero(need == need.max())
            if len(best) > 1:
                best = best[want_records[best] == want_records[best].max()]
            fold = int(rng.choice(best))
            fold_of[i] = fold
            remaining[i] = False
            want_labels[fold] -= y[i]
            want_records[fold] -= 1
    for i in rng.permutation(np.flatnonzero(remaining)):
        fold = int(np.argmax(want_records))
        fold_of[i] = fold
        want_records[fold] -= 1
    return [np.flatnonzero(fold_of == f) for f in range(len(fractions))]


def micro_batches(indices: np.ndarray, batch_size: int, rng: np.random.Generator, *,
                  shuffle: bool = True, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Seeded mini-batches of ``indices`` (one epoch)."""
    idx = rng.permutation(indices) if shuffle else np.asarray(indices)
    stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        batch = idx[start:start + batch_size]
        if len(batch):
            yield batch


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights (mean 1) for single-label class indices; absent classes get weight 0."""
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return w


def loss_class_weights(targets: np.ndarray, multilabel: bool) -> np.ndarray:
    """The loss's per-class weights from the training records' target matrix ``(N, C)``: for single-label data
    :func:`class_weights` of the argmax; for multi-label data each class's negatives over its positives, BCE's
    ``pos_weight``, so that a rare class's few positives weigh as much as its many negatives (a class without
    positives gets 1). Why the second: the sigmoid outputs train one binary task per class, and class-frequency
    weights of a softmax do not apply to them."""
    targets = np.asarray(targets)
    if not multilabel:
        return class_weights(targets.argmax(1), targets.shape[1])
    pos = (targets > 0.5).sum(0).astype(float)
    return np.where(pos > 0, (len(targets) - pos) / np.maximum(pos, 1), 1.0)


def split_by_header(dataset: Dataset, test_value: str, key: str = "fold") -> tuple[Dataset, Dataset]:
    """``(rest, test)``: the records whose ``# key: value`` header comment equals ``test_value`` form the test
    set (e.g. PTB-XL's ``# fold: val``, fold 9), every other record the rest; a record without the comment is a
    DataError naming it, so no record changes sides silently."""
    rest, test = [], []
    for record in dataset.records:
        value = (record.meta.get("header") or {}).get(key.lower())
        if value is None:
            where = (record.meta.get("files") or [record.id])[0]
            raise DataError(where, f"record {record.id} has no '# {key}:' header comment to split on")
        (test if value == test_value else rest).append(record.id)
    if not test or not rest:
        raise DataError(dataset.source, f"'# {key}: {test_value}' selects {len(test)} of {len(dataset)} records; "
                                        "a split needs records on both sides")
    return dataset.subset(rest), dataset.subset(test)
