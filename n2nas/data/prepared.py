"""Preprocessed records stored ragged: every record of a dataset concatenated along time.

One contiguous array per dataset keeps the on-disk cache to a handful of files (memory-mappable) instead of one
file per record, and lets the batch sampler slice windows without copying whole records.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PreparedSignals:
    """Preprocessed signals of a dataset, at one sampling rate.

    ``data`` is ``(leads, total_samples)`` float32; record ``i`` is ``data[:, offsets[i]:offsets[i+1]]``.
    ``rpeaks`` (optional) holds R-peak sample positions relative to each record's start, concatenated the same
    way with ``rpeak_offsets``.
    """

    ids: tuple[str, ...]
    fs: float
    data: np.ndarray
    offsets: np.ndarray
    rpeaks: np.ndarray | None = None
    rpeak_offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_leads(self) -> int:
        """Number of leads (channels)."""
        return int(self.data.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """Samples per record."""
        return np.diff(self.offsets)

    def signal(self, i: int) -> np.ndarray:
        """Record ``i`` as a ``(leads, samples)`` view."""
        return self.data[:, self.offsets[i]:self.offsets[i + 1]]

    def peaks(self, i: int) -> np.ndarray:
        """R-peak positions of record ``i`` (raises if R peaks were not computed)."""
        if self.rpeaks is None or self.rpeak_offsets is None:
            raise ValueError("these signals were prepared without R-peak detection")
        return self.rpeaks[self.rpeak_offsets[i]:self.rpeak_offsets[i + 1]]

    def index_of(self) -> dict[str, int]:
        """Map from record id to position."""
        return {rid: i for i, rid in enumerate(self.ids)}

    @staticmethod
    def from_arrays(ids: list[str], fs: float, signals: list[np.ndarray],
                    peaks: list[np.ndarray] | None = None) -> "PreparedSignals":
        """Pack per-record ``(leads, n_i)`` arrays (and optional per-record peak arrays) into ragged form."""
        lengths = np.array([s.shape[-1] for s in signals], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data = np.concatenate(signals, axis=1).astype(np.float32, copy=False) if signals else \
            np.zeros((1, 0), np.float32)
        rp = rpo = None
        if peaks is not None:
            counts = np.array([len(p) for p in peaks], dtype=np.int64)
            rpo = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            rp = np.concatenate([np.asarray(p, np.int64) for p in peaks]) if peaks else np.zeros(0, np.int64)
        return PreparedSignals(tuple(ids), float(fs), data, offsets, rp, rpo)
