"""The scikit-learn baselines of benchmarks/ehr_real.py (logistic regression, gradient-boosted trees) on the same
encoded rows as the MLPs, with their costs, and the score columns every row of that benchmark reports."""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import load_avg
from benchmarks.scoring import function_latency_ms, module_cost
from n2nas.data.ehr_matrix import EHRDataset
from n2nas.metrics import evaluate_predictions


def shown(row: dict) -> dict:
    """A row without its test probabilities (kept for the gaps and the Pareto table), for logs and the report."""
    return {k: v for k, v in row.items() if k != "probs"}


def scores(probs: np.ndarray, y: np.ndarray, classes) -> dict[str, float]:
    """Accuracy, macro F1 and macro AUROC of single-label probabilities (and the probabilities, as ``probs``, for
    the gaps and the Pareto table; dropped from the report)."""
    m = evaluate_predictions(probs, y, classes, False)
    return {**{k: m[k] for k in ("accuracy", "macro_f1", "macro_auroc")}, "probs": probs}


def baselines(ds: EHRDataset, train_idx, test_idx, seed: int, log) -> list[dict]:
    """LogisticRegression and HistGradientBoostingClassifier on the same rows and features."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    y = ds.label_indices()
    present = np.unique(y[train_idx])  # a class with no training row cannot be a column of predict_proba
    out = []
    load0, start = load_avg(), time.perf_counter()
    lr = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(ds.X[train_idx], y[train_idx])
    secs = time.perf_counter() - start
    out.append({"method": "LogisticRegression", "train_s": secs, "load": (load0, load_avg()),
                "size": f"{lr.coef_.size + lr.intercept_.size} params", "cost": linear_cost(lr, ds.n_features),
                **scores(full_probabilities(lr.predict_proba(ds.X[test_idx]), present, len(ds.classes)), y[test_idx], ds.classes)})
    log(f"logistic regression: {shown(out[-1])}")
    load0, start = load_avg(), time.perf_counter()
    dense = ds.X[train_idx].toarray()  # HGB takes dense input: the training rows only, for this baseline
    hgb = HistGradientBoostingClassifier(max_iter=300, early_stopping=True, validation_fraction=0.1,
                                         n_iter_no_change=10, random_state=seed).fit(dense, y[train_idx])
    secs = time.perf_counter() - start
    del dense
    trees = hgb.n_iter_ * (1 if len(present) == 2 else len(present))
    probs = np.concatenate([hgb.predict_proba(ds.X[test_idx[s:s + 4096]].toarray())
                            for s in range(0, len(test_idx), 4096)])
    no_flops = {"params": None, "flops_per_record": None,  # trees compare, they do not multiply
                "latency_ms": function_latency_ms(hgb.predict_proba, ds.n_features)}
    out.append({"method": "HistGradientBoosting", "train_s": secs, "load": (load0, load_avg()),
                "size": f"{trees} trees", "cost": no_flops,
                **scores(full_probabilities(probs, present, len(ds.classes)), y[test_idx], ds.classes)})
    log(f"gradient boosting: {shown(out[-1])}")
    return out


def linear_cost(lr, n_features: int) -> dict:
    """Logistic regression as the dense linear layer it computes: params, FLOPs and CPU latency per encounter."""
    import torch

    return module_cost(torch.nn.Linear(n_features, lr.coef_.shape[0]), (n_features,))


def full_probabilities(probs: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` columns of the classes seen in training (``present``) placed among all ``n_classes``."""
    full = np.zeros((len(probs), n_classes), dtype=np.float64)
    full[:, present] = probs
    return full
