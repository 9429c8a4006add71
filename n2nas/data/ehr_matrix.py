"""EHR feature matrices: patients x clinical features held as a sparse CSR matrix, with class targets.

``ehr:DIR`` reads DiagnoseNET's layout:

- ``X.npz`` (``scipy.sparse.save_npz``) or ``X.npy`` (a dense ``(n, F)`` array; read memory-mapped and
  converted to CSR a block of rows at a time, so the whole matrix is never dense in memory);
- ``Y.npy``: ``(n,)`` integer class indices, or an ``(n, C)`` 0/1 matrix; ``labels.csv`` instead: one line
  per patient, ``label`` or ``a;b`` for several;
- optional ``classes.txt``: one class name per line, one per target column.

A target matrix whose rows each hold exactly one 1 is single-task (softmax, one label per patient); rows with
several 1s or none make it multi-task (one sigmoid output per column). ``ehr:DIR,START:END`` keeps target
columns ``START..END-1`` (DiagnoseNET's ``target_start``/``target_end`` for files holding several tasks).
Every bad input raises one :class:`DataError` naming the file.
"""
from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from n2nas.data.record import ROWS
from n2nas.errors import DataError

X_FILES = ("X.npz", "X.npy")
Y_FILES = ("Y.npy", "y.npy")
LABEL_CSV = "labels.csv"
CLASSES_FILE = "classes.txt"
_BLOCK_ROWS = 4096  # rows densified at once when converting a dense X.npy


@dataclass(frozen=True, eq=False)
class EHRDataset:
    """Patients x features in CSR storage (float32, usually 0/1) and an ``(n, C)`` 0/1 target matrix.

    Offers what splits, metrics and the search loop ask of a dataset (``ids``, ``classes``, ``multilabel``,
    ``label_matrix()``, ``label_indices()``); rows are only ever densified a mini-batch at a time.
    ``feature_groups`` names column ranges ``(name, start, stop)`` where known (synthetic data, tables).
    Clinical tables (:mod:`n2nas.data.table`) also carry ``groups`` (the patient of each row: splits keep a
    patient's rows on one side), ``table`` (where to re-read the rows) and ``encoder`` (the JSON encoder of ``X``).
    """

    source: str
    X: sp.csr_matrix
    y: np.ndarray
    classes: tuple[str, ...]
    multilabel: bool
    fingerprint: str
    feature_groups: tuple[tuple[str, int, int], ...] = ()
    synthetic: bool = False
    skipped: tuple = ()
    groups: np.ndarray | None = None
    table: object = None
    encoder: dict | None = None
    modality: ClassVar[str] = ROWS

    def __post_init__(self):
        if not sp.isspmatrix_csr(self.X):
            raise TypeError("EHRDataset.X must be a scipy.sparse CSR matrix")
        if self.y.shape != (self.X.shape[0], len(self.classes)):
            raise ValueError(f"targets {self.y.shape} do not fit {self.X.shape[0]} patients x {len(self.classes)}"
                             " classes")

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def n_inputs(self) -> int:
        """Feature columns (a model's input width)."""
        return int(self.X.shape[1])

    @property
    def n_features(self) -> int:
        """Number of feature columns (the MLP's input width)."""
        return int(self.X.shape[1])

    @property
    def ids(self) -> list[str]:
        """Patient ids in row order (``p0``, ``p1``, ...): what split files store."""
        return [f"p{i}" for i in range(len(self))]

    def label_matrix(self) -> np.ndarray:
        """``(n, C)`` 0/1 int8 targets."""
        return self.y

    def label_indices(self) -> np.ndarray:
        """Class index per patient (single-task data only)."""
        if self.multilabel:
            raise ValueError("label_indices() is only defined for single-task data")
        return self.y.argmax(axis=1).astype(np.int64)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Dense float32 ``(len(indices), F)`` copy of just these rows."""
        return self.X[np.asarray(indices)].toarray().astype(np.float32, copy=False)

    def sparse_rows(self, indices: np.ndarray):
        """These rows as a coalesced ``torch.sparse_coo_tensor`` (nothing dense is built)."""
        import torch

        block = self.X[np.asarray(indices)].tocoo()
        index = torch.from_numpy(np.vstack([block.row, block.col]).astype(np.int64))
        values = torch.from_numpy(block.data.astype(np.float32, copy=False))
        return torch.sparse_coo_tensor(index, values, block.shape, is_coalesced=True, check_invariants=False)

    def summary(self) -> dict:
        """What ``n2nas data summary`` prints for EHR data."""
        counts = self.y.sum(axis=0)
        return {"source": self.source, "n_records": len(self), "n_features": self.n_features,
                "label_counts": {c: int(k) for c, k in zip(self.classes, counts)}, "multilabel": self.multilabel,
                "density": round(self.X.nnz / max(1, self.X.shape[0] * self.X.shape[1]), 6),
                "synthetic": self.synthetic, "skipped": list(self.skipped),
                **({"patients": int(len(np.unique(self.groups)))} if self.groups is not None else {})}


def parse_columns(text: str) -> tuple[int, int]:
    """``"0:14"`` -> (0, 14): a target column range."""
    start, sep, stop = text.partition(":")
    if not sep or not start.strip().isdigit() or not stop.strip().isdigit() or int(stop) <= int(start):
        raise DataError("data spec", f"expected target columns START:END with END > START, got {text!r}")
    return int(start), int(stop)


def load_ehr(folder: str | Path, columns: tuple[int, int] | None = None) -> EHRDataset:
    """Read an ``ehr:DIR`` folder (see the module docstring); ``columns`` keeps a target column range."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "no such folder" if not folder.exists() else "not a folder")
    x_path = next((folder / n for n in X_FILES if (folder / n).is_file()), None)
    if x_path is None:
        raise DataError(folder / "X.npy", "feature matrix is missing (expected X.npy or X.npz)")
    X = _read_x(x_path)
    y_path = next((folder / n for n in Y_FILES + (LABEL_CSV,) if (folder / n).is_file()), None)
    if y_path is None:
        raise DataError(folder / "Y.npy", "targets are missing (expected Y.npy or labels.csv)")
    names = _read_classes(folder / CLASSES_FILE)
    if y_path.suffix == ".csv":
        y, classes = _read_label_csv(y_path, names)
    else:
        y = _read_y(y_path, names)
        classes = names
    if y.shape[0] != X.shape[0]:
        raise DataError(y_path, f"{y.shape[0]} target rows for {X.shape[0]} patients in {x_path.name}")
    if columns is not None:
        if columns[1] > y.shape[1]:
            raise DataError(y_path, f"target columns {columns[0]}:{columns[1]} outside its {y.shape[1]} columns")
        y = y[:, columns[0]:columns[1]]
        classes = classes[columns[0]:columns[1]] if classes is not None else None
    if classes is None:
        classes = tuple(f"class_{i}" for i in range(y.shape[1]))
    elif len(classes) != y.shape[1]:
        raise DataError(folder / CLASSES_FILE, f"{len(classes)} class names for {y.shape[1]} target columns")
    per_row = y.sum(axis=1)
    multilabel = bool((per_row != 1).any())
    tag = f"{columns[0]}:{columns[1]}" if columns else ""
    files = [x_path, y_path] + ([folder / CLASSES_FILE] if (folder / CLASSES_FILE).is_file() else [])
    return EHRDataset(f"ehr:{folder}", X, np.ascontiguousarray(y, dtype=np.int8), tuple(classes), multilabel,
                      _fingerprint(files, tag))


def _read_x(path: Path) -> sp.csr_matrix:
    if path.suffix == ".npz":
        try:
            X = sp.load_npz(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(path, f"not a readable scipy sparse .npz file ({_short(err)})") from None
        X = sp.csr_matrix(X, dtype=np.float32)
    else:
        dense = _load_npy(path)
        if dense.ndim != 2:
            raise DataError(path, f"expected a 2-D patients x features array, got shape {dense.shape}")
        if not (np.issubdtype(dense.dtype, np.number) or dense.dtype == bool):
            raise DataError(path, f"features must be numbers, got dtype {dense.dtype}")
        # Block by block: a memory-mapped 100k x 15k array never becomes one dense float32 array here.
        blocks = [sp.csr_matrix(np.asarray(dense[i:i + _BLOCK_ROWS], dtype=np.float32))
                  for i in range(0, dense.shape[0], _BLOCK_ROWS)]
        X = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, dense.shape[1]), dtype=np.float32)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(path, f"feature matrix is empty (shape {X.shape})")
    if not np.isfinite(X.data).all():
        raise DataError(path, "feature matrix holds NaN or infinite values")
    X.sort_indices()
    return X


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(path, f"not a readable .npy array ({_short(err)})") from None


def _read_y(path: Path, names: tuple[str, ...] | None) -> np.ndarray:
    y = np.asarray(_load_npy(path))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer) and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(path, "1-D targets must be integer class indices")
        idx = y.astype(np.int64)
        n_classes = len(names) if names is not None else int(idx.max(initial=-1)) + 1
        if len(idx) and (idx.min() < 0 or idx.max() >= n_classes):
            raise DataError(path, f"class indices must lie in [0, {n_classes})")
        out = np.zeros((len(idx), n_classes), dtype=np.int8)
        out[np.arange(len(idx)), idx] = 1
        return out
    if y.ndim != 2:
        raise DataError(path, f"expected (n,) class indices or an (n, C) 0/1 matrix, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise DataError(path, "target matrix must hold only 0 and 1")
    return y.astype(np.int8)


def _read_label_csv(path: Path, names: tuple[str, ...] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh)]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read label file ({_short(err)})") from None
    if rows and [c.strip().lower() for c in rows[0]] in (["label"], ["labels"]):
        rows = rows[1:]
    labels = []
    for line_no, row in enumerate(rows, start=1):
        text = row[-1].strip() if row else ""
        if not text:
            raise DataError(path, f"line {line_no}: empty label")
        labels.append(tuple(t.strip() for t in text.split(";") if t.strip()))
    classes = names if names is not None else tuple(sorted({lab for labs in labels for lab in labs}))
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)), dtype=np.int8)
    for row, labs in enumerate(labels):
        for lab in labs:
            if lab not in index:
                raise DataError(path, f"line {row + 1}: unknown label {lab!r}")
            y[row, index[lab]] = 1
    return y, classes


def _read_classes(path: Path) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read class names ({_short(err)})") from None
    if len(set(names)) != len(names):
        raise DataError(path, "class names must be distinct")
    return names


def _fingerprint(paths: list[Path], tag: str) -> str:
    h = hashlib.sha256(f"ehr\0{tag}".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__
