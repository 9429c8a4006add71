"""Filter passes: one walk over a dataset's records per filter setting, writing every requested rate at once.

A pass filters each record once at its own rate, resamples the result to each requested rate, writes the float32
signal straight into a pre-allocated ``.npy`` file (``np.lib.format.open_memmap``; workers open it in place, so
no signal travels back through a pipe) and returns per-record statistics for batch-time normalisation. R peaks
can ride along with a pass (they reuse its filtered record when the filter is the R-peak filter). Chunks of
records run in a ``ProcessPoolExecutor``: the work is CPU-bound NumPy/SciPy/wfdb code.
"""
from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from n2nas.data.preprocess import (RPEAK_BAND, STATS, Designs, detect_rpeaks, filter_signal, record_stats,
                                   resample, resampled_length, rpeak_signal)
from n2nas.data.record import Record

TICK_S = 10.0  # how often a long pass reports how many records it has done


@dataclass(frozen=True)
class PassPlan:
    """One filter setting, the rates to write for it, and whether to detect R peaks during the pass."""

    band: tuple[float, float] | None
    baseline: str
    rates: tuple[int, ...]
    peaks: bool = False

    def label(self) -> str:
        """Human-readable filter name for progress lines."""
        parts = ["median baseline"] if self.baseline == "median" else []
        parts += [f"band-pass {self.band[0]:g}-{self.band[1]:g} Hz"] if self.band is not None else []
        return " + ".join(parts) or "no filter"


@dataclass
class PassResult:
    """Per-rate ``(records, len(STATS), leads)`` statistics and offsets, and native-rate R peaks (or None)."""

    stats: dict[int, np.ndarray]
    offsets: dict[int, np.ndarray]
    peaks: list[np.ndarray] | None


def layout(records: Sequence[Record], rate: float) -> np.ndarray:
    """``offsets`` of every record in the concatenated array at ``rate`` (known before anything is computed)."""
    lengths = [resampled_length(r.signal.shape[-1], float(r.fs), rate) for r in records]
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def chunk_size(n: int, workers: int) -> int:
    """Records per task: several tasks per worker for balance and progress, few enough to keep overhead low."""
    return max(1, min(256, -(-n // (8 * max(workers, 1)))))


def run_pass(records: Sequence[Record], plan: PassPlan, outputs: dict[int, Path], pool: Executor | None,
             workers: int = 1, tick: Callable[[int], None] | None = None) -> PassResult:
    """Run ``plan`` over ``records``, writing rate ``r``'s signal to ``outputs[r]`` (a new ``.npy`` file).

    ``pool`` (of ``workers`` processes) None runs in this process. ``tick(records_done)`` is called at most every
    :data:`TICK_S` seconds.
    """
    n, leads = len(records), int(records[0].signal.shape[0])
    offsets = {rate: layout(records, rate) for rate in plan.rates}
    for rate, path in outputs.items():
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(leads, int(offsets[rate][-1])))
    size = chunk_size(n, workers if pool is not None else 1)
    bounds = [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    def args(lo: int, hi: int):
        chunk = records[lo:hi]
        targets = {rate: (str(outputs[rate]), offsets[rate][lo:hi + 1]) for rate in plan.rates}
        return ([r.signal for r in chunk], [float(r.fs) for r in chunk], plan.band, plan.baseline, targets,
                plan.peaks)

    parts: dict[int, tuple] = {}
    last, done = time.monotonic(), 0
    if pool is None:
        for lo, hi in bounds:
            parts[lo] = run_chunk(*args(lo, hi))
            done += hi - lo
            if tick is not None and time.monotonic() - last >= TICK_S:
                tick(done)
                last = time.monotonic()
    else:
        pending = {pool.submit(run_chunk, *args(lo, hi)): (lo, hi) for lo, hi in bounds}
        while pending:
            finished, _ = wait(pending, timeout=TICK_S, return_when=FIRST_COMPLETED)
            for future in finished:
                lo, hi = pending.pop(future)
                parts[lo] = future.result()
                done += hi - lo
            if tick is not None and pending and time.monotonic() - last >= TICK_S:
                tick(done)
                last = time.monotonic()
    ordered = [parts[lo] for lo, _ in bounds]
    stats = {rate: np.concatenate([p[0][rate] for p in ordered]) for rate in plan.rates}
    peaks = [pk for p in ordered for pk in p[1]] if plan.peaks else None
    return PassResult(stats, offsets, peaks)


def run_chunk(signals: list[np.ndarray], fss: list[float], band, baseline: str,
              targets: dict[int, tuple[str, np.ndarray]], peaks: bool):
    """Filter, resample and write a run of records (one task); returns per-rate statistics and R peaks."""
    outs = {rate: np.load(path, mmap_mode="r+") for rate, (path, _) in targets.items()}
    leads = signals[0].shape[0] if signals else 0
    stats = {rate: np.empty((len(signals), len(STATS), leads)) for rate in targets}
    found: list[np.ndarray] = []
    reuse = tuple(band or ()) == RPEAK_BAND and baseline == "none"
    designs, mean = Designs(), STATS.index("mean")
    for j, (sig, fs) in enumerate(zip(signals, fss)):
        filtered = filter_signal(sig, fs, band, baseline, designs)
        for rate, (_, offs) in targets.items():
            y = resample(filtered, fs, rate, designs)
            if y.shape[-1] != offs[j + 1] - offs[j]:  # the layout promised another length: never write past it
                raise RuntimeError(f"resampled length {y.shape[-1]} != planned {offs[j + 1] - offs[j]}")
            stats[rate][j] = record_stats(y)
            # stored centred (PreparedSignals.centred): float32 keeps the detail, not the offset
            outs[rate][:, offs[j]:offs[j + 1]] = y - stats[rate][j, mean][:, None]
        if peaks:
            found.append(detect_rpeaks(filtered if reuse else rpeak_signal(sig, fs, designs), fs, designs))
    return stats, found  # the maps close with ``outs``; their pages are already in the shared file
