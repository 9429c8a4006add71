"""``n2nas data summary``: what a data source holds, as one JSON-ready dict."""
from __future__ import annotations

from collections import Counter

import numpy as np

from n2nas.data.record import ROWS, Dataset


def summarize(dataset: Dataset) -> dict:
    """Record count, label counts, sampling rate(s), duration spread and skipped files of a dataset (rows of an EHR
    table summarise themselves: their counts, columns and classes)."""
    if dataset.modality == ROWS:
        return dataset.summary()
    counts = Counter(lab for r in dataset.records for lab in r.labels)
    label_counts = {c: counts.get(c, 0) for c in dataset.classes if counts.get(c, 0) or not dataset.multilabel}
    if dataset.multilabel:
        label_counts = dict(sorted(label_counts.items(), key=lambda kv: -kv[1]))
    rates = sorted({float(r.fs) for r in dataset.records})
    durations = np.array([r.duration_s for r in dataset.records])
    return {
        "source": dataset.source,
        "n_records": len(dataset),
        "label_counts": label_counts,
        "multilabel": dataset.multilabel,
        "fs": _plain(rates[0]) if len(rates) == 1 else [_plain(f) for f in rates],
        "leads": sorted({len(r.leads) for r in dataset.records}),
        "duration_s": {"min": round(float(durations.min()), 3), "median": round(float(np.median(durations)), 3),
                       "max": round(float(durations.max()), 3)},
        "skipped": [s.as_dict() for s in dataset.skipped],
    }


def _plain(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x
