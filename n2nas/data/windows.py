"""Fixed-size model inputs cut from prepared records: random crops for training, every window of a record for
multi-crop evaluation, and DiagnoseNET's R-peak-centred beat windows.

Windows are gathered with one fancy-indexing call per batch (positions outside a record read a zero column), so
no Python loop runs per sample. Per-record normalisation (record_z, robust, minmax) is applied here, to each
gathered window with its record's statistics and before the positions outside the record are zeroed: the result
equals normalising the whole record first and then cutting and zero-padding it, without a cached copy per
normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n2nas.data.prepared import PreparedSignals
from n2nas.data.preprocess import STATS
from n2nas.presets import preset


@dataclass(frozen=True)
class WindowConfig:
    """``crop``: ``seconds`` of signal; ``beats``: ``n_beats`` windows of ``beat_samples`` centred on R peaks,
    concatenated along time (DiagnoseNET: 5 x 260 samples at 300 Hz)."""

    mode: str = "crop"
    seconds: float = 10.0
    n_beats: int = 5
    beat_samples: int = 260

    @staticmethod
    @preset()
    def diagnosenet() -> "WindowConfig":
        """Five consecutive 260-sample beat windows."""
        return WindowConfig(mode="beats")


@dataclass(frozen=True)
class GlobalStats:
    """Per-lead mean and standard deviation over the training records (dataset-level z-score)."""

    mean: np.ndarray
    std: np.ndarray


def window_length(cfg: WindowConfig, fs: float) -> int:
    """Samples in one model input."""
    return int(round(cfg.seconds * fs)) if cfg.mode == "crop" else cfg.n_beats * cfg.beat_samples


def _gather(prepared: PreparedSignals, starts: np.ndarray, owners: np.ndarray, length: int) -> np.ndarray:
    """``(K, leads, length)`` windows beginning at ``starts`` (relative to each owner record); outside is zero."""
    rel = starts[:, None] + np.arange(length)[None, :]
    lengths = prepared.lengths[owners][:, None]
    inside = (rel >= 0) & (rel < lengths)
    absolute = np.where(inside, rel + prepared.offsets[owners][:, None], 0)
    out = np.asarray(prepared.data[:, absolute.ravel()]).reshape(prepared.n_leads, len(starts), length)
    affine = prepared.affine(owners)
    if affine is not None:  # normalise with the owner record's statistics, then zero the padding as before
        centre, scale = affine
        out = (out - centre.T[:, :, None]) / scale.T[:, :, None]
    out = out * inside[None]
    return np.ascontiguousarray(out.transpose(1, 0, 2), dtype=np.float32)


def _beat_starts(peaks: np.ndarray, n: int, cfg: WindowConfig) -> np.ndarray:
    """Start positions of every beat window; with fewer peaks than ``n_beats``, evenly spaced pseudo-beats."""
    if len(peaks) < cfg.n_beats:
        peaks = np.linspace(cfg.beat_samples // 2, max(n - cfg.beat_samples // 2, 0), cfg.n_beats).astype(np.int64)
    return np.asarray(peaks, dtype=np.int64) - cfg.beat_samples // 2


def _beat_runs(prepared: PreparedSignals, i: int, cfg: WindowConfig, firsts: np.ndarray | None):
    starts = _beat_starts(prepared.peaks(i), int(prepared.lengths[i]), cfg)
    n_runs = len(starts) - cfg.n_beats + 1
    firsts = np.arange(n_runs) if firsts is None else firsts
    return starts[firsts[:, None] + np.arange(cfg.n_beats)[None, :]]  # (runs, n_beats)


def train_windows(prepared: PreparedSignals, indices: np.ndarray, cfg: WindowConfig,
                  rng: np.random.Generator) -> np.ndarray:
    """One random window per record: ``(B, leads, L)`` (records shorter than L are zero-padded at a random offset)."""
    indices = np.asarray(indices, dtype=np.int64)
    if cfg.mode == "crop":
        length = window_length(cfg, prepared.fs)
        slack = prepared.lengths[indices] - length
        # slack >= 0: crop start in [0, slack]; slack < 0: pad, so the record starts at a random offset inside
        starts = np.where(slack >= 0, (rng.random(len(indices)) * (slack + 1)).astype(np.int64),
                          -(rng.random(len(indices)) * (-slack + 1)).astype(np.int64))
        return _gather(prepared, starts, indices, length)
    runs = []
    for i in indices:
        n_runs = max(len(_beat_starts(prepared.peaks(int(i)), int(prepared.lengths[i]), cfg)) - cfg.n_beats + 1, 1)
        runs.append(_beat_runs(prepared, int(i), cfg, np.array([rng.integers(n_runs)]))[0])
    return _beats(prepared, indices, np.stack(runs), cfg)


def _beats(prepared: PreparedSignals, owners: np.ndarray, runs: np.ndarray, cfg: WindowConfig) -> np.ndarray:
    """Concatenate the beat windows of each run: ``(R, leads, n_beats * beat_samples)``."""
    flat = _gather(prepared, runs.ravel(), np.repeat(owners, cfg.n_beats), cfg.beat_samples)
    r, leads = runs.shape[0], prepared.n_leads
    return np.ascontiguousarray(flat.reshape(r, cfg.n_beats, leads, cfg.beat_samples).transpose(0, 2, 1, 3)
                                .reshape(r, leads, cfg.n_beats * cfg.beat_samples))


def eval_windows(prepared: PreparedSignals, i: int, cfg: WindowConfig, stride_s: float | None = None) -> np.ndarray:
    """Every window of record ``i``, ``(K, leads, L)`` with K >= 1, together covering the whole record.

    Crops step by half a window (or ``stride_s``) with the last one aligned to the record's end; a short record
    gives one centred, zero-padded window. Beats: every run of ``n_beats`` consecutive beats, stepping by
    ``n_beats // 2`` beats, the last run included.
    """
    n = int(prepared.lengths[i])
    if cfg.mode == "crop":
        length = window_length(cfg, prepared.fs)
        if n <= length:
            starts = np.array([-((length - n) // 2)])
        else:
            stride = max(int(round((stride_s or cfg.seconds / 2) * prepared.fs)), 1)
            starts = np.unique(np.append(np.arange(0, n - length + 1, stride), n - length))
        return _gather(prepared, starts.astype(np.int64), np.full(len(starts), i), length)
    n_runs = max(len(_beat_starts(prepared.peaks(i), n, cfg)) - cfg.n_beats + 1, 1)
    firsts = np.unique(np.append(np.arange(0, n_runs, max(cfg.n_beats // 2, 1)), n_runs - 1))
    runs = _beat_runs(prepared, i, cfg, firsts)
    return _beats(prepared, np.full(len(runs), i), runs, cfg)


def global_stats(prepared: PreparedSignals, train_indices: np.ndarray) -> GlobalStats:
    """Per-lead mean/std over the samples of the training records only (validation never leaks in)."""
    train_indices = np.asarray(train_indices, dtype=np.int64)
    if prepared.stats is not None and prepared.normalise in ("none", "global_z"):
        # pooled from the cached per-record mean/std: no pass over the training signals
        n = prepared.lengths[train_indices].astype(np.float64)[:, None]
        mu = prepared.stats[train_indices, STATS.index("mean")]
        sd = prepared.stats[train_indices, STATS.index("std")]
        count = max(n.sum(), 1.0)
        mean = (n * mu).sum(axis=0) / count
        std = np.sqrt(np.maximum((n * (sd ** 2 + mu ** 2)).sum(axis=0) / count - mean ** 2, 0.0))
        return GlobalStats(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))
    total = np.zeros(prepared.n_leads)
    squares = np.zeros(prepared.n_leads)
    count = 0
    for i in np.asarray(train_indices):
        sig = np.asarray(prepared.signal(int(i)), dtype=np.float64)
        total += sig.sum(axis=-1)
        squares += (sig ** 2).sum(axis=-1)
        count += sig.shape[-1]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 0.0))
    return GlobalStats(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))


def apply_global_stats(batch: np.ndarray, stats: GlobalStats) -> np.ndarray:
    """Dataset-level z-score of a ``(B, leads, L)`` batch."""
    return ((batch - stats.mean[None, :, None]) / stats.std[None, :, None]).astype(np.float32)
