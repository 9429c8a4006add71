"""Clinical-table encoder: categorical, drug, ICD-9 code and count columns -> one sparse CSR feature matrix.

Fitted on training rows only (:func:`fit_encoder`), written as plain JSON (``encoder.json`` in a model folder) and
applied unchanged to any later table (:func:`encode`), so a model sees the same columns at evaluation as in
training:

- categorical columns: one-hot over the values seen at least ``min_count`` times in the training rows, plus ``?``
  (its own missing indicator, always present) and ``other`` (rarer or unseen values: never an error);
- drug columns: one-hot over {No, Steady, Up, Down} plus ``other``;
- ICD-9 code columns: one bag of binary features at the 3-digit level shared by all code columns (``250.83`` ->
  ``250``, ``V57.1`` -> ``V57``, ``E885`` -> ``E885``), ``icd9:other`` for rare or unseen codes, and one ``?``
  indicator per code column;
- counts: ``(x - mean) / std`` with the training rows' mean and standard deviation.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import numpy as np
import scipy.sparse as sp

from n2nas.errors import DataError

ENCODER_FORMAT = 1
MISSING = "?"
OTHER = "other"
DRUG_LEVELS = ("No", "Steady", "Up", "Down")
MIN_COUNT = 5  # rarer training values go to "other", so that "other" itself is learnt from training rows


def icd9_category(code: str) -> str:
    """The 3-digit ICD-9 category of a code (``"250.83"`` -> ``"250"``; E codes keep their 4 characters)."""
    return code.strip().split(".")[0]


def fit_encoder(columns: dict[str, np.ndarray], rows: np.ndarray, schema: dict[str, Any], classes: tuple[str, ...],
                min_count: int = MIN_COUNT, fitted_on: str = "training rows") -> dict[str, Any]:
    """Vocabularies and count statistics from ``rows`` of ``columns`` only, as a JSON-ready dict.

    ``schema`` names the ``categorical``, ``drugs``, ``codes`` and ``numeric`` columns (plus what the reader needs
    to rebuild the targets); ``classes`` are the target classes the model predicts.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cats = {}
    for col in schema["categorical"]:
        counts = Counter(columns[col][rows].tolist())
        cats[col] = sorted(v for v, k in counts.items() if k >= min_count and v != MISSING)
    code_counts: Counter = Counter()
    for col in schema["codes"]:
        code_counts.update(icd9_category(v) for v in columns[col][rows].tolist() if v != MISSING)
    numeric = {}
    for col in schema["numeric"]:
        values = columns[col][rows].astype(np.float64)
        std = float(values.std()) if len(values) else 1.0
        numeric[col] = [float(values.mean()) if len(values) else 0.0, std if std > 0 else 1.0]
    encoder = {"format": ENCODER_FORMAT, "schema": schema, "classes": list(classes), "min_count": int(min_count),
               "fitted_on": fitted_on, "n_fit_rows": int(len(rows)), "categorical": cats,
               "drugs": {col: list(DRUG_LEVELS) for col in schema["drugs"]},
               "codes": sorted(c for c, k in code_counts.items() if k >= min_count), "numeric": numeric}
    encoder["feature_names"] = feature_names(encoder)
    return encoder


def feature_names(encoder: dict[str, Any]) -> list[str]:
    """Every column of the encoded matrix, in order (``race=Caucasian``, ``icd9:250``, ``num_medications``...)."""
    names = []
    for col, values in list(encoder["categorical"].items()) + list(encoder["drugs"].items()):
        names += [f"{col}={v}" for v in values] + [f"{col}={MISSING}", f"{col}={OTHER}"]
    names += [f"icd9:{c}" for c in encoder["codes"]] + [f"icd9:{OTHER}"]
    names += [f"{col}={MISSING}" for col in encoder["schema"]["codes"]]
    names += list(encoder["numeric"])
    return names


def encode(columns: dict[str, np.ndarray], encoder: dict[str, Any], source: str = "table") -> sp.csr_matrix:
    """The ``(n, len(feature_names))`` float32 CSR matrix of ``columns`` under ``encoder`` (never dense)."""
    check_encoder(encoder, source)
    n = len(next(iter(columns.values()))) if columns else 0
    rows, cols = [], []
    offset = 0
    one_hot = list(encoder["categorical"].items()) + list(encoder["drugs"].items())
    for col, values in one_hot:
        lookup = {v: offset + i for i, v in enumerate(values)}
        lookup[MISSING] = offset + len(values)
        other = offset + len(values) + 1
        cols.append(np.fromiter((lookup.get(v, other) for v in _column(columns, col, source)), np.int64, n))
        rows.append(np.arange(n))
        offset = other + 1
    codes = {c: offset + i for i, c in enumerate(encoder["codes"])}
    other = offset + len(codes)
    missing_base = other + 1
    for j, col in enumerate(encoder["schema"]["codes"]):
        values = _column(columns, col, source)
        present = values != MISSING
        idx = np.full(n, missing_base + j, dtype=np.int64)
        idx[present] = np.fromiter((codes.get(icd9_category(v), other) for v in values[present]), np.int64,
                                   int(present.sum()))
        cols.append(idx)
        rows.append(np.arange(n))
    offset = missing_base + len(encoder["schema"]["codes"])
    r, c = np.concatenate(rows) if rows else np.zeros(0, np.int64), np.concatenate(cols) if cols else np.zeros(0,
                                                                                                               np.int64)
    n_binary = offset
    binary = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n_binary))
    binary.sum_duplicates()
    binary.data[:] = 1.0  # the same code in diag_2 and diag_3 is one feature, not a count
    numeric = encoder["numeric"]
    if numeric:
        dense = np.empty((n, len(numeric)), dtype=np.float32)
        for j, (col, (mean, std)) in enumerate(numeric.items()):
            dense[:, j] = (numeric_column(columns, col, source) - mean) / std
        X = sp.hstack([binary, sp.csr_matrix(dense)], format="csr", dtype=np.float32)
    else:
        X = binary
    X.sort_indices()
    return X


def numeric_column(columns: dict[str, np.ndarray], col: str, source: str) -> np.ndarray:
    """A count column as float64; a value that is not a number is a :class:`DataError` naming its line."""
    values = _column(columns, col, source)
    try:
        return values.astype(np.float64)
    except ValueError:
        for i, v in enumerate(values.tolist()):
            try:
                float(v)
            except ValueError:
                line = columns["__line__"][i] if "__line__" in columns else i + 2
                raise DataError(source, f"line {line}, column {col!r}: {v!r} is not a number") from None
        raise


def check_encoder(encoder: dict[str, Any], source: str = "encoder") -> None:
    """Raise :class:`DataError` unless ``encoder`` is a table encoder this version reads."""
    need = ("format", "schema", "classes", "categorical", "drugs", "codes", "numeric")
    if not isinstance(encoder, dict) or any(k not in encoder for k in need):
        raise DataError(source, "not a table encoder (expected the keys " + ", ".join(need) + ")")
    if encoder["format"] != ENCODER_FORMAT:
        raise DataError(source, f"table encoder format {encoder['format']} is not {ENCODER_FORMAT}")


def encoder_hash(encoder: dict[str, Any]) -> str:
    """A short, stable identity of an encoder (cache keys)."""
    return hashlib.sha256(json.dumps(encoder, sort_keys=True).encode()).hexdigest()[:16]


def feature_groups(encoder: dict[str, Any]) -> tuple[tuple[str, int, int], ...]:
    """``(group, start, stop)`` column ranges: one per categorical / drug column, the ICD-9 block, the counts."""
    out, start = [], 0
    for col, values in list(encoder["categorical"].items()) + list(encoder["drugs"].items()):
        out.append((col, start, start + len(values) + 2))
        start += len(values) + 2
    width = len(encoder["codes"]) + 1 + len(encoder["schema"]["codes"])
    out.append(("icd9", start, start + width))
    start += width
    if encoder["numeric"]:
        out.append(("counts", start, start + len(encoder["numeric"])))
    return tuple(out)


def _column(columns: dict[str, np.ndarray], col: str, source: str) -> np.ndarray:
    if col not in columns:
        raise DataError(source, f"line 1: column {col!r} is missing")
    return columns[col]
