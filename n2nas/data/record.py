"""The one record type every reader returns, and the dataset that holds them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

# What a dataset holds, declared by each dataset class (``modality``): signals are records of ``(leads, samples)``
# windowed and preprocessed per pipeline; rows are one feature vector per patient or encounter.
SIGNALS = "signals"
ROWS = "rows"
MODALITIES = (SIGNALS, ROWS)


@dataclass(frozen=True, eq=False)
class Record:
    """One recording: channel-first float32 signal in mV, as ``(leads, samples)``.

    ``labels`` is a tuple so single-label (PhysioNet 2017) and multi-label (CinC 2020/21) data share one
    type; ``meta`` carries reader-specific extras (age, sex, source file) and is never used for training.
    """

    id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    labels: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.signal.shape[-1] / self.fs


@dataclass(frozen=True)
class Skipped:
    """A file left out under ``--skip-bad``, with the reason it could not be used."""

    file: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form used by ``data summary``."""
        return {"file": self.file, "reason": self.reason}


@dataclass(frozen=True, eq=False)
class Dataset:
    """An ordered collection of records plus the class vocabulary they are scored on.

    ``source`` identifies where the records came from (used to key the preprocessing cache);
    ``fingerprint`` changes whenever any underlying file changes. ``multilabel`` selects sigmoid/BCE
    training and multi-label metrics; otherwise every record has exactly one label.
    """

    source: str
    records: tuple[Record, ...]
    classes: tuple[str, ...]
    multilabel: bool
    fingerprint: str
    skipped: tuple[Skipped, ...] = ()
    scored_classes: tuple[str, ...] | None = None
    modality: ClassVar[str] = SIGNALS

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_inputs(self) -> int:
        """Leads of the records (a model's input channels)."""
        return int(self.records[0].signal.shape[0]) if self.records else 0

    @property
    def ids(self) -> list[str]:
        """Record ids in dataset order."""
        return [r.id for r in self.records]

    def label_matrix(self) -> np.ndarray:
        """``(n_records, n_classes)`` 0/1 matrix; the common currency of splits and metrics."""
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.zeros((len(self.records), len(self.classes)), dtype=np.int8)
        for row, rec in enumerate(self.records):
            for lab in rec.labels:
                if lab in index:
                    y[row, index[lab]] = 1
        return y

    def label_indices(self) -> np.ndarray:
        """Class index per record for single-label data."""
        if self.multilabel:
            raise ValueError("label_indices() is only defined for single-label datasets")
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[r.labels[0]] for r in self.records], dtype=np.int64)

    def subset(self, ids: list[str]) -> "Dataset":
        """The records with these ids, in the given order (unknown ids raise KeyError)."""
        by_id = {r.id: r for r in self.records}
        return Dataset(
            source=self.source,
            records=tuple(by_id[i] for i in ids),
            classes=self.classes,
            multilabel=self.multilabel,
            fingerprint=self.fingerprint,
            skipped=self.skipped,
            scored_classes=self.scored_classes,
        )
