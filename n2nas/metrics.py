"""Clinical metrics: CinC 2017 F1, the CinC 2020/2021 challenge score, macro AUROC/AUPRC/F1.

scikit-learn computes everything it can; only the PhysioNet/CinC 2020/2021 challenge score (a weighted,
multi-label confusion matrix scaled between an always-sinus-rhythm baseline and a perfect classifier)
is written here, following the official ``evaluate_model.py``.

Conventions: ``y_true_onehot``/``y_pred_onehot`` are (n_records, n_classes) 0/1 arrays, ``scores`` and
``probs`` (n_records, n_classes) floats. Everything returned is a plain Python float/int/list/dict, NaN
only where a metric is undefined.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from n2nas.data.snomed import ScoringTable, default_scoring_table
from n2nas.errors import ConfigError, DataError

CINC2017_CLASSES = ("N", "A", "O", "~")
NOISY_CLASS = "~"
REWARD_METRICS = ("cinc2017_f1", "macro_f1", "accuracy", "challenge_score", "macro_auroc")
# every whole-set score a table reports (grids, Tune results), in display order: the reward metrics and the rest
SCORE_COLUMNS = ("cinc2017_f1", "challenge_score", "macro_f1", "weighted_f1", "accuracy", "macro_auroc")
# Substrings of names that must never be a reward (see reward_metric); ``macro_auroc`` itself is allowed because
# every caller scores it on a whole reward or validation set at once, never per mini-batch.
_RANKING_METRICS = ("auc", "auroc", "auprc")


# --------------------------------------------------------------------------- CinC 2017


def cinc2017_scores(y_true, y_pred, classes: Sequence[str] = CINC2017_CLASSES) -> dict:
    """PhysioNet/CinC 2017 scores from integer class indices.

    Returns ``{"f1": {class: F1}, "cinc2017_f1": mean F1 of every class but '~', "confusion": C}``.
    The challenge's F1_c = 2*C[c,c] / (row_c + col_c) is the ordinary per-class F1 over all records,
    so noisy records still cost N/A/O through the matrix; only the average leaves '~' out.
    """
    labels = list(range(len(classes)))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    scored = [i for i, cls in enumerate(classes) if cls != NOISY_CLASS]
    return {
        "f1": {cls: float(v) for cls, v in zip(classes, per_class)},
        "cinc2017_f1": float(np.mean(per_class[scored])),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def paired_bootstrap(score, pred_a, pred_b, y, n_resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0, method: str = "BCa") -> dict:
    """``score(pred_a, y) - score(pred_b, y)`` of two models on the same records, with a paired bootstrap
    confidence interval (scipy's ``method``, BCa by default, resampling records): whether one model beats the other
    on a test set or only seems to. ``score(pred, y)`` takes per-record predictions and targets (e.g. CinC 2017 F1
    of class indices). BCa's jackknife scores every leave-one-out set, so on tens of thousands of records with a
    slow score ``method="percentile"`` is the practical one."""
    from scipy.stats import bootstrap

    pred_a, pred_b, y = np.asarray(pred_a), np.asarray(pred_b), np.asarray(y)

    def difference(i):
        return score(pred_a[i], y[i]) - score(pred_b[i], y[i])

    records = np.arange(len(y))
    ci = bootstrap((records,), difference, vectorized=False, n_resamples=n_resamples, confidence_level=confidence,
                   method=method, random_state=np.random.default_rng(seed)).confidence_interval
    return {"difference": float(difference(records)), "low": float(ci.low), "high": float(ci.high),
            "confidence": confidence}


def cinc2017_f1(y_pred, y_true) -> float:
    """The CinC 2017 score (mean F1 of N, A and O) of class indices, in :func:`paired_bootstrap`'s argument order.

    The challenge's own formula on a bincount confusion matrix, equal to :func:`cinc2017_scores` (a test checks
    it), because a bootstrap calls it thousands of times and scikit-learn's input checks take a millisecond each."""
    n = len(CINC2017_CLASSES)
    confusion = np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)
    scored = [i for i, cls in enumerate(CINC2017_CLASSES) if cls != NOISY_CLASS]
    totals = confusion.sum(0) + confusion.sum(1)
    f1 = [2 * confusion[c, c] / totals[c] if totals[c] else 0.0 for c in scored]
    return float(np.mean(f1))


# --------------------------------------------------------------------------- CinC 2020/2021


def _table_columns(classes: Sequence[str], table: ScoringTable) -> list[int]:
    """Column of the scoring table for each class string (a single code finds its merged class)."""
    index = {cls: i for i, cls in enumerate(table.classes)}
    columns = []
    for cls in classes:
        if cls in index:
            columns.append(index[cls])
            continue
        owners = {table.class_of(code.strip()) for code in str(cls).split("|")}
        if len(owners) != 1 or None in owners:
            raise ConfigError(f"class {cls}", "is not a scored class of the CinC 2020/2021 scoring table")
        columns.append(index[owners.pop()])
    return columns


def _modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Official multi-label confusion: A[j, k] += 1/|labels ∪ outputs| per record, true j, predicted k."""
    # One unit of credit per record, shared over every class the record touches (true or predicted),
    # so predicting many classes cannot buy credit.
    normalisation = np.maximum(1, np.logical_or(labels, outputs).sum(axis=1))
    return (labels / normalisation[:, None]).T @ outputs.astype(np.float64)


def challenge_score(labels, outputs, classes: Sequence[str], table: ScoringTable | None = None) -> float:
    """The official PhysioNet/CinC 2020/2021 challenge score of boolean (n_records, n_classes) arrays.

    ``classes`` name the columns (table class strings, or single codes of a merged class). Columns are
    placed in the full table, so sinus rhythm is the inactive baseline even when it is not among
    ``classes``. 1.0 is perfect, 0.0 is always predicting sinus rhythm; 0.0 when the two coincide.
    """
    table = default_scoring_table() if table is None else table
    columns = _table_columns(classes, table)
    truth = _to_table(_as_onehot(labels, len(classes), "labels"), columns, len(table.classes))
    predicted = _to_table(_as_onehot(outputs, len(classes), "outputs"), columns, len(table.classes))
    if truth.shape != predicted.shape:
        raise DataError("outputs", f"{predicted.shape[0]} records of outputs for {truth.shape[0]} of labels")
    inactive = np.zeros_like(truth)
    inactive[:, table.classes.index(table.normal_class())] = True

    def total(outs: np.ndarray) -> float:
        return float(np.nansum(table.weights * _modified_confusion(truth, outs)))

    observed, correct, baseline = total(predicted), total(truth), total(inactive)
    if correct == baseline:
        return 0.0
    return (observed - baseline) / (correct - baseline)


def _to_table(onehot: np.ndarray, columns: list[int], n_table: int) -> np.ndarray:
    """Booleans over the full table; columns of equivalent codes are OR-ed into their merged class."""
    out = np.zeros((onehot.shape[0], n_table), dtype=bool)
    for j, column in enumerate(columns):
        out[:, column] |= onehot[:, j].astype(bool)
    return out


# --------------------------------------------------------------------------- macro metrics


def _as_onehot(array, n_classes: int, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != n_classes:
        raise DataError(what, f"expected shape (n_records, {n_classes}), got {array.shape}")
    return array


def _pair(y_true_onehot, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true_onehot).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise DataError("predictions", f"labels {y.shape} and scores {s.shape} must be equal 2-D shapes")
    return y, s


def _ranked_columns(y: np.ndarray) -> np.ndarray:
    """Classes with both positives and negatives: the only ones where AUROC/AUPRC are defined."""
    positives = y.sum(axis=0)
    return np.flatnonzero((positives > 0) & (positives < len(y)))


def _per_class(metric, y_true_onehot, scores) -> np.ndarray:
    y, s = _pair(y_true_onehot, scores)
    values = np.full(y.shape[1], math.nan)
    keep = _ranked_columns(y)
    if keep.size:
        values[keep] = np.atleast_1d(metric(y[:, keep], s[:, keep], average=None))
    return values


def _mean_defined(values: np.ndarray) -> float:
    return float(np.mean(values[~np.isnan(values)])) if np.any(~np.isnan(values)) else math.nan


def per_class_auroc(y_true_onehot, scores, classes: Sequence[str] | None = None) -> dict:
    """AUROC of each class (keys: class names, or column indices as strings); NaN where undefined."""
    values = _per_class(roc_auc_score, y_true_onehot, scores)
    names = classes if classes is not None else [str(i) for i in range(len(values))]
    return {str(cls): float(v) for cls, v in zip(names, values)}


def macro_auroc(y_true_onehot, scores) -> float:
    """Mean one-vs-rest AUROC over classes with both positives and negatives; NaN if there are none."""
    return _mean_defined(_per_class(roc_auc_score, y_true_onehot, scores))


def macro_auroc_ranks(y_true_onehot, scores) -> float:
    """:func:`macro_auroc` from ranks (the Mann-Whitney U statistic, ties at their mean rank): the same value (a test
    checks it) without scikit-learn's per-call checks, for a bootstrap that scores thousands of resamples."""
    from scipy.stats import rankdata

    y, s = np.asarray(y_true_onehot).astype(bool), np.asarray(scores, dtype=np.float64)
    positives = y.sum(axis=0)
    keep = (positives > 0) & (positives < len(y))
    if not keep.any():
        return math.nan
    y, s, positives = y[:, keep], s[:, keep], positives[keep]
    rank_sum = (rankdata(s, axis=0) * y).sum(axis=0)
    auc = (rank_sum - positives * (positives + 1) / 2) / (positives * (len(y) - positives))
    return float(auc.mean())


def macro_auroc_counts(y_true_onehot, scores, counts) -> np.ndarray:
    """:func:`macro_auroc_ranks` of many bootstrap resamples at once, each given by ``counts`` (resamples x records:
    how often each record was drawn), one value per resample (NaN where no class has both positives and negatives).
    The same values (a test checks it) from one sort per class instead of one per class and resample: a record drawn
    k times weighs k, and a positive's credit is the weight of the negatives below it plus half of those tied."""
    y, s = np.asarray(y_true_onehot).astype(bool), np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    aucs = np.full((w.shape[0], y.shape[1]), math.nan)
    for c in range(y.shape[1]):
        pos = y[:, c]
        order = np.argsort(s[~pos, c], kind="stable")
        negative_scores = s[~pos, c][order]
        # drawn weight of the negatives up to each sorted position, a leading 0 for "none below"
        below = np.cumsum(w[:, ~pos][:, order], axis=1)
        below = np.concatenate([np.zeros((len(w), 1)), below], axis=1)
        lo = np.searchsorted(negative_scores, s[pos, c], "left")
        hi = np.searchsorted(negative_scores, s[pos, c], "right")
        drawn = w[:, pos]
        credit = 0.5 * (drawn * (below[:, lo] + below[:, hi])).sum(axis=1)  # below + half the tied
        n_pos, n_neg = drawn.sum(axis=1), below[:, -1]
        defined = (n_pos > 0) & (n_neg > 0)
        aucs[defined, c] = credit[defined] / (n_pos[defined] * n_neg[defined])
    some = ~np.isnan(aucs).all(axis=1)
    out = np.full(len(w), math.nan)
    out[some] = np.nanmean(aucs[some], axis=1)
    return out


def macro_auprc(y_true_onehot, scores) -> float:
    """Mean average precision over classes with both positives and negatives; NaN if there are none."""
    return _mean_defined(_per_class(average_precision_score, y_true_onehot, scores))


def macro_f1(y_true_onehot, y_pred_onehot) -> float:
    """Mean F1 over classes where F1 is defined (a class never true nor predicted is skipped).

    A class with no positives that is still predicted scores 0, as in the official 2020/2021 code.
    """
    y, p = _pair(y_true_onehot, y_pred_onehot)
    return float(f1_score(y, p.astype(int), average="macro", zero_division=np.nan))


# --------------------------------------------------------------------------- evaluate / reward


def _decide(probs, y, n_classes: int, multilabel: bool, threshold):
    """Validate inputs; return (probs, true one-hot, predicted one-hot). ``threshold``: one float, or one per
    class (multi-label only)."""
    probs = _as_onehot(np.asarray(probs, dtype=np.float64), n_classes, "predictions")
    y = np.asarray(y)
    if len(y) != len(probs) or len(probs) == 0:
        raise DataError("labels", f"{len(y)} labels for {len(probs)} predictions (need the same, non-zero)")
    if multilabel:
        truth = _as_onehot(y, n_classes, "labels").astype(int)
        predicted = (probs >= _thresholds(threshold, n_classes)[None, :]).astype(int)
    else:
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
            raise DataError("labels", f"single-label targets must be integers in [0, {n_classes})")
        eye = np.eye(n_classes, dtype=int)
        truth, predicted = eye[y], eye[probs.argmax(axis=1)]
    return probs, truth, predicted


def _thresholds(threshold, n_classes: int) -> np.ndarray:
    """One decision threshold per class from a float or a per-class sequence."""
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 0:
        return np.full(n_classes, float(t))
    if t.shape != (n_classes,) or not np.all(np.isfinite(t)):
        raise ConfigError("thresholds", f"expected {n_classes} finite per-class thresholds, got {t.tolist()}")
    return t


def choose_thresholds(y_true_onehot, probs, grid: int = 99) -> np.ndarray:
    """Per-class decision thresholds maximising each class's F1 on these (validation) records.

    Candidates are ``1/(grid+1) .. grid/(grid+1)``; ties keep the threshold closest to 0.5, and a class without
    positives keeps 0.5 (there is no F1 to maximise).
    """
    y, p = _pair(y_true_onehot, probs)
    candidates = np.arange(1, grid + 1) / (grid + 1)
    order = np.argsort(np.abs(candidates - 0.5), kind="stable")  # ties: the candidate nearest 0.5 first
    out = np.full(y.shape[1], 0.5)
    for c in range(y.shape[1]):
        positives = y[:, c].sum()
        if positives == 0:
            continue
        predicted = p[:, c][None, :] >= candidates[order][:, None]
        tp = (predicted & (y[:, c] == 1)[None, :]).sum(1)
        f1 = 2 * tp / (predicted.sum(1) + positives)
        out[c] = float(candidates[order][int(np.argmax(f1))])
    return out


def evaluate_predictions(probs, y, classes: Sequence[str], multilabel: bool, threshold=0.5,
                         table: ScoringTable | None = None) -> dict:
    """The JSON object ``n2nas evaluate`` prints for model outputs ``probs`` and targets ``y``.

    Single-label: ``probs`` are softmax rows, ``y`` integer indices, prediction = argmax. Multi-label:
    ``probs`` are sigmoids, ``y`` 0/1 rows, prediction = ``probs >= threshold`` (one float, or one per class, e.g.
    :func:`choose_thresholds` on validation records), and ``thresholds`` names the ones used. Adds ``cinc2017_f1``
    and ``confusion`` for N/A/O/~ data, and ``challenge_score`` for multi-label data whose classes are all scored.
    """
    classes = list(classes)
    probs, truth, predicted = _decide(probs, y, len(classes), multilabel, threshold)
    f1 = f1_score(truth, predicted, average=None, zero_division=np.nan)
    result = {
        "n_records": int(len(probs)),
        # On one-hot rows exact match is argmax accuracy (single-label) and subset accuracy (multi-label).
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1": {cls: float(v) for cls, v in zip(classes, f1)},
        "macro_f1": macro_f1(truth, predicted),
        "macro_auroc": macro_auroc(truth, probs),
        "per_class_auroc": per_class_auroc(truth, probs, classes),
        "macro_auprc": macro_auprc(truth, probs),
    }
    if not multilabel and tuple(classes) == CINC2017_CLASSES:
        cinc = cinc2017_scores(np.asarray(y), probs.argmax(axis=1), classes)
        result["cinc2017_f1"] = cinc["cinc2017_f1"]
        result["confusion"] = cinc["confusion"]
    if multilabel:
        result["thresholds"] = {cls: float(t) for cls, t in zip(classes, _thresholds(threshold, len(classes)))}
        try:
            result["challenge_score"] = challenge_score(truth, predicted, classes, table)
        except ConfigError:
            pass  # not CinC 2020/2021 classes: the score has no meaning here
    return result


def reward_metric_name(name: str, classes: tuple[str, ...], multilabel: bool) -> str:
    """``auto``: the CinC 2017 score for N/A/O/~ data, the challenge score for CinC 2021 classes (SNOMED codes),
    macro AUROC for other multi-label data (the PTB-XL benchmark's metric: threshold-free, so a search and the
    retrain's epoch choice do not depend on decision thresholds), else macro F1."""
    if name != "auto":
        return name
    if not multilabel and tuple(classes) == CINC2017_CLASSES:
        return "cinc2017_f1"
    if multilabel and all(c[0].isdigit() for c in classes):
        return "challenge_score"
    return "macro_auroc" if multilabel else "macro_f1"


def reward_metric(name: str, probs, y, classes: Sequence[str], multilabel: bool, threshold=0.5,
                  table: ScoringTable | None = None) -> float:
    """The scalar a search rewards: ``cinc2017_f1``, ``macro_f1``, ``accuracy``, ``challenge_score`` or
    ``macro_auroc``.

    ``probs`` must be every record of the reward (or validation) set at once: ``macro_auroc`` is the mean
    one-vs-rest AUROC over those whole records, never a mini-batch mean, which is too noisy to reward (N2NAS).
    Other ranking names (AUPRC, per-class AUROC) are refused; report them with ``evaluate_predictions``.
    """
    where = f"reward metric {name!r}"
    if name != "macro_auroc" and any(token in name.lower() for token in _RANKING_METRICS):
        raise ConfigError(where, "mini-batch AUROC/AUPRC is too noisy to be a controller reward (N2NAS); "
                                 f"report it, reward on one of {', '.join(REWARD_METRICS)}")
    if name not in REWARD_METRICS:
        raise ConfigError(where, f"unknown; choose one of {', '.join(REWARD_METRICS)}")
    classes = list(classes)
    probs, truth, predicted = _decide(probs, y, len(classes), multilabel, threshold)
    if name == "accuracy":
        return float(accuracy_score(truth, predicted))
    if name == "macro_f1":
        return macro_f1(truth, predicted)
    if name == "macro_auroc":
        return macro_auroc(truth, probs)
    if name == "cinc2017_f1":
        if multilabel or tuple(classes) != CINC2017_CLASSES:
            raise ConfigError(where, f"needs single-label classes {'/'.join(CINC2017_CLASSES)}, got {classes}")
        return cinc2017_scores(np.asarray(y), probs.argmax(axis=1), classes)["cinc2017_f1"]
    if not multilabel:
        raise ConfigError(where, "the challenge score needs multi-label CinC 2020/2021 data")
    return challenge_score(truth, predicted, classes, table)
