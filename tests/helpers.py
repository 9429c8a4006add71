"""Reference implementations the tests compare the library against (and build fixtures with); nothing outside
tests/ needs them."""
from __future__ import annotations

import numpy as np

from n2nas.data.prepared import PreparedSignals
from n2nas.data.preprocess import (PreprocessConfig, detect_rpeaks, filter_signal, normalise_record, record_stats,
                                   resample, rpeak_signal, scale_peaks)
from n2nas.data.record import Record


def preprocess_record(record: Record, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply ``cfg`` to one whole record (filter, resample, normalise): the float32 signal at ``cfg.fs`` and its
    R peaks (or None), detected at the record's own rate and rescaled. The reference the cached,
    batch-normalised path must match."""
    fs = float(record.fs)
    sig = resample(filter_signal(record.signal, fs, cfg.band, cfg.baseline), fs, cfg.fs)
    peaks = None
    if cfg.rpeaks:
        found = detect_rpeaks(rpeak_signal(record.signal, fs), fs)
        peaks = scale_peaks(found, fs, cfg.fs, sig.shape[-1])
    return normalise_record(sig, cfg.normalise).astype(np.float32), peaks


def prepared_from_arrays(ids: list[str], fs: float, signals: list[np.ndarray],
                         peaks: list[np.ndarray] | None = None, normalise: str = "none") -> PreparedSignals:
    """Pack per-record ``(leads, n_i)`` arrays (and optional per-record peak arrays) into ragged
    :class:`PreparedSignals`; windows come out normalised by ``normalise`` (statistics are taken from
    ``signals``)."""
    lengths = np.array([s.shape[-1] for s in signals], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.concatenate(signals, axis=1).astype(np.float32, copy=False) if signals else \
        np.zeros((1, 0), np.float32)
    rp = rpo = None
    if peaks is not None:
        counts = np.array([len(p) for p in peaks], dtype=np.int64)
        rpo = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rp = np.concatenate([np.asarray(p, np.int64) for p in peaks]) if peaks else np.zeros(0, np.int64)
    stats = np.stack([record_stats(s) for s in signals]) if signals else None
    return PreparedSignals(tuple(ids), float(fs), data, offsets, rp, rpo, stats, normalise)
