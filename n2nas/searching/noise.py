"""Candidates compared with their noise: paired-bootstrap intervals against the best, and the pick rule.

Wherever a search chooses between candidates (the screen's last rung, the final pick, each family member's
rescoring), it keeps every candidate's per-record predictions on the records it was scored on
(``RUN/predictions/STEP.npy``) and compares them on the same bootstrap resamples of those records.

The rule: the best candidate is the one with the highest score; every candidate's score minus the best's gets a
95 % percentile interval over ``resamples`` paired resamples of the records; a candidate whose interval reaches 0
is *within the noise* of the best. The pick is the cheapest candidate within the noise (FLOPs per record, then
parameters, then score). A dearer candidate is only picked when it beats every cheaper one by more than the
noise of the records it was judged on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

PREDICTIONS_DIR = "predictions"
RESAMPLES = 1000
CONFIDENCE = 0.95


def predictions_path(run_dir: str | Path, step: int | str) -> Path:
    """Where the per-record probabilities of trial ``step`` (or of a named model, e.g. a family member) are
    kept."""
    name = step if isinstance(step, str) else str(int(step))
    return Path(run_dir) / PREDICTIONS_DIR / f"{name}.npy"


def save_predictions(run_dir: str | Path, step: int | str, probs: np.ndarray) -> None:
    """Keep trial ``step``'s (or a named model's) ``(records, classes)`` probabilities (float16: a comparison needs
    no more)."""
    path = predictions_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, np.asarray(probs, dtype=np.float16))
    tmp.replace(path)


def load_predictions(run_dir: str | Path, step: int | str) -> np.ndarray | None:
    """Trial ``step``'s (or a named model's) probabilities, or None when they were not kept."""
    path = predictions_path(run_dir, step)
    return np.load(path).astype(np.float32) if path.is_file() else None


@dataclass(frozen=True)
class Compared:
    """One candidate against the best: its score, the difference to the best's and that difference's interval."""

    key: Any
    score: float
    difference: float
    low: float
    high: float
    flops: float
    params: int

    @property
    def within_noise(self) -> bool:
        """Whether the interval of (this - best) reaches 0: not below the best by more than the noise."""
        return self.high >= 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, rounded for the summary."""
        return {"key": self.key, "score": round(self.score, 4), "vs_best": round(self.difference, 4),
                "interval": [round(self.low, 4), round(self.high, 4)], "within_noise": self.within_noise,
                "flops_per_record": self.flops, "params": self.params}


def compare(candidates: Sequence[dict[str, Any]], probs: Sequence[np.ndarray], y: np.ndarray,
            score: Callable[[np.ndarray, np.ndarray], float], resamples: int = RESAMPLES,
            seed: int = 0) -> list[Compared]:
    """Each candidate (a dict with ``key``, ``flops`` and ``params``) against the best by ``score(probs, y)`` on the
    same records (``probs[i]``: candidate ``i``'s ``(records, classes)`` probabilities, ``y``: the targets as the
    score takes them), with paired percentile intervals over ``resamples`` record resamples (the same resamples
    for every candidate)."""
    n = len(y)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # records drawn
    from_confusion = getattr(score, "from_confusion", None)
    if from_confusion is not None:  # single-label scores: every resample's confusion matrix in one product
        k = score.n_classes
        decided = [np.asarray(p).argmax(axis=1) for p in probs]
        full = np.array([from_confusion(np.bincount(np.asarray(y) * k + d, minlength=k * k)[None])[0]
                         for d in decided])
        draws = np.stack([from_confusion(counts @ np.eye(k * k)[np.asarray(y) * k + d]) for d in decided], axis=1)
    else:
        full = np.array([score(p, y) for p in probs], dtype=np.float64)
        draws = np.empty((resamples, len(probs)))
        for b in range(resamples):
            idx = np.repeat(np.arange(n), counts[b])
            draws[b] = [score(p[idx], y[idx]) for p in probs]
    best = int(np.nanargmax(full))
    alpha = (1.0 - CONFIDENCE) / 2
    out = []
    for i, cand in enumerate(candidates):
        diff = draws[:, i] - draws[:, best]
        diff = diff[np.isfinite(diff)]
        low, high = (np.quantile(diff, [alpha, 1 - alpha]) if len(diff) else (np.nan, np.nan))
        out.append(Compared(cand["key"], float(full[i]), float(full[i] - full[best]), float(low), float(high),
                            float(cand.get("flops") or 0.0), int(cand.get("params") or 0)))
    return out


def cheapest_within_noise(compared: Sequence[Compared]) -> Compared:
    """The pick: the cheapest candidate within the noise of the best (FLOPs, then parameters, then score)."""
    tied = [c for c in compared if c.within_noise] or [max(compared, key=lambda c: c.score)]
    return min(tied, key=lambda c: (c.flops, c.params, -c.score))


def compare_trials(run_dir: str | Path, trials: Sequence[dict[str, Any]], y: np.ndarray,
                   score: Callable[[np.ndarray, np.ndarray], float], seed: int = 0) -> list[Compared] | None:
    """:func:`compare` over scored trial lines (their kept predictions; the key is the trial's step), or None when
    fewer than two have predictions kept."""
    kept = [(t, load_predictions(run_dir, t["step"])) for t in trials]
    kept = [(t, p) for t, p in kept if p is not None and len(p) == len(y)]
    if len(kept) < 2:
        return None
    return compare([{"key": t["step"], "flops": t.get("flops_per_record") or t.get("flops"), "params": t.get("params")}
                    for t, _ in kept], [p for _, p in kept], y, score, seed=seed)


def metric_scorer(name: str, classes: Sequence[str], multilabel: bool) -> Callable[[np.ndarray, np.ndarray], float]:
    """``score(probs, y)``: the reward metric ``name`` (``y`` as :func:`n2nas.metrics.reward_metric` takes it).
    Single-label CinC 2017 F1, macro F1 and accuracy also carry ``from_confusion`` (the score of stacked flattened
    confusion matrices), so that :func:`compare` scores every resample at once."""
    from n2nas.metrics import CINC2017_CLASSES, NOISY_CLASS, reward_metric

    def score(p, y):
        return float(reward_metric(name, p, y, classes, multilabel))

    if multilabel or name not in ("cinc2017_f1", "macro_f1", "accuracy"):
        return score
    k = len(classes)
    scored = [i for i, c in enumerate(classes) if not (name == "cinc2017_f1" and c == NOISY_CLASS)]
    if name == "cinc2017_f1" and tuple(classes) != CINC2017_CLASSES:
        return score

    def from_confusion(flat: np.ndarray) -> np.ndarray:
        confusion = np.asarray(flat, dtype=np.float64).reshape(-1, k, k)  # [resample, truth, predicted]
        if name == "accuracy":
            return np.trace(confusion, axis1=1, axis2=2) / confusion.sum(axis=(1, 2))
        diag = np.diagonal(confusion, axis1=1, axis2=2)[:, scored]
        totals = (confusion.sum(axis=1) + confusion.sum(axis=2))[:, scored]
        f1 = np.divide(2 * diag, totals, out=np.zeros_like(diag), where=totals > 0)
        if name == "macro_f1":  # classes absent from both truth and prediction do not count, as scikit-learn's
            present = totals > 0
            return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        return f1.mean(axis=1)

    score.from_confusion, score.n_classes = from_confusion, k
    return score


COMPARISONS_FILE = "comparisons.json"


def record_comparison(run_dir: str | Path, section: str, compared: Sequence[Compared], picked: Any,
                      labels: dict[Any, str] | None = None) -> None:
    """Keep one comparison in ``RUN/comparisons.json`` under ``section`` (``screen``, ``pick``, ``family
    flops-0.05G``, ...): every candidate against the best, which one was picked and by which rule."""
    import json

    from n2nas.storage import atomic_write_text

    path = Path(run_dir) / COMPARISONS_FILE
    kept = json.loads(path.read_text()) if path.is_file() else {}
    rows = []
    for c in compared:
        row = c.as_dict()
        if labels and c.key in labels:
            row["label"] = labels[c.key]
        row["picked"] = c.key == picked
        rows.append(row)
    kept[section] = {"rule": "cheapest (FLOPs per record) of the candidates whose paired-bootstrap 95% interval of "
                             "(score - best) reaches 0", "candidates": rows}
    atomic_write_text(path, json.dumps(kept, indent=1, default=str))


def read_comparisons(run_dir: str | Path) -> dict[str, Any]:
    """Every comparison a search kept (empty when none)."""
    import json

    path = Path(run_dir) / COMPARISONS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
