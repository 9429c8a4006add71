"""Preprocessed records stored ragged: every record of a dataset concatenated along time.

One contiguous array per dataset keeps the on-disk cache to a handful of files (memory-mappable) instead of one
file per record, and lets the batch sampler slice windows without copying whole records. Per-record
normalisation is not baked into the array: it is applied to each gathered window from per-record statistics, so
one cached array serves every normalisation token. Cached arrays hold each record minus its per-lead mean
(``centred``): float32 then keeps the detail of a lead that sits on a large offset, and normalising a window
gives what normalising the float64 record did, even for a lead whose spread is tiny next to its level.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from n2nas.data.preprocess import STATS, normalisation_affine


@dataclass(frozen=True, eq=False)
class PreparedSignals:
    """Preprocessed signals of a dataset, at one sampling rate.

    ``data`` is ``(leads, total_samples)`` float32; record ``i`` is ``data[:, offsets[i]:offsets[i+1]]``.
    ``rpeaks`` (optional) holds R-peak sample positions relative to each record's start, concatenated the same
    way with ``rpeak_offsets``. ``stats`` (``(records, len(STATS), leads)``, from
    :func:`n2nas.data.preprocess.record_stats`) lets windows be normalised per record with ``normalise``;
    ``data`` itself is never normalised. ``centred``: ``data`` holds each record minus its per-lead mean (the
    ``mean`` row of ``stats``), added back when windows are cut; read windows through :mod:`n2nas.data.windows`
    or :meth:`signal`, not from ``data``.
    """

    ids: tuple[str, ...]
    fs: float
    data: np.ndarray
    offsets: np.ndarray
    rpeaks: np.ndarray | None = None
    rpeak_offsets: np.ndarray | None = None
    stats: np.ndarray | None = None
    normalise: str = "none"
    centred: bool = False

    def __post_init__(self):
        if (self.centred or self.normalise not in ("none", "global_z")) and self.stats is None:
            raise ValueError(f"normalise={self.normalise!r} (centred={self.centred}) needs per-record statistics")

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
        """Record ``i`` as ``(leads, samples)``, normalised (a view of ``data`` when there is nothing to apply)."""
        sig = self.data[:, self.offsets[i]:self.offsets[i + 1]]
        affine = self.affine(np.array([i]))
        if affine is None:
            return sig
        centre, scale = affine
        return ((sig - centre[0][:, None]) / scale[0][:, None]).astype(np.float32)

    def affine(self, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(centre, scale)``, each ``(len(owners), leads)``: a window of record ``owners[k]`` cut from ``data``
        becomes ``(window - centre[k]) / scale[k]``; None when that is the identity."""
        if self.normalise in ("none", "global_z") and not self.centred:
            return None
        stats = self.stats[np.asarray(owners, dtype=np.int64)]
        centre, scale = normalisation_affine(stats, self.normalise)
        if self.centred:  # data = record - mean, so record - centre = data - (centre - mean)
            centre = centre - stats[..., STATS.index("mean"), :]
        return centre, scale

    def with_normalisation(self, method: str) -> "PreparedSignals":
        """The same arrays, windows normalised per record by ``method`` (any of ``NORMALISATIONS``)."""
        return dataclasses.replace(self, normalise=method)

    def peaks(self, i: int) -> np.ndarray:
        """R-peak positions of record ``i`` (raises if R peaks were not computed)."""
        if self.rpeaks is None or self.rpeak_offsets is None:
            raise ValueError("these signals were prepared without R-peak detection")
        return self.rpeaks[self.rpeak_offsets[i]:self.rpeak_offsets[i + 1]]
