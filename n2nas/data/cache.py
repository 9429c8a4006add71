"""On-disk cache of preprocessed datasets, keyed by the data source and the preprocessing tokens.

A search samples the same preprocessing choices over and over; each (data, tokens) pair is computed once, written
atomically (temporary folder + rename, so a killed process never leaves a half-written entry) and afterwards
memory-mapped without touching the raw files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from n2nas.data.prepared import PreparedSignals
from n2nas.data.preprocess import PreprocessConfig, native_rpeaks, preprocess_record
from n2nas.data.record import Dataset

FORMAT_VERSION = 1
_ARRAYS = ("data", "offsets", "rpeaks", "rpeak_offsets")


def cache_key(dataset: Dataset, cfg: PreprocessConfig) -> str:
    """Identity of a cache entry: file fingerprint, record order, preprocessing tokens, format version."""
    h = hashlib.sha256(f"v{FORMAT_VERSION}\0{dataset.fingerprint}\0{cfg.cache_key()}\0".encode())
    h.update("\n".join(dataset.ids).encode())
    return h.hexdigest()[:24]


def prepare(dataset: Dataset, cfg: PreprocessConfig, cache_dir: str | Path | None = None,
            workers: int = 1) -> PreparedSignals:
    """Preprocessed signals of every record; read from ``cache_dir`` when this (data, cfg) was seen before."""
    entry = Path(cache_dir) / cache_key(dataset, cfg) if cache_dir is not None else None
    if entry is not None and (entry / "meta.json").is_file():
        return _load(entry)
    peaks = _peaks(dataset, cfg, cache_dir, workers) if cfg.rpeaks else [None] * len(dataset.records)
    prepared = _compute(dataset, cfg, workers, peaks)
    if entry is not None:
        _store(entry, prepared, cfg, dataset)
    return prepared


def _map(fn, workers: int, *columns):
    """``map`` over records, in worker processes when asked (preprocessing is CPU-bound Python and NumPy)."""
    n = len(columns[0])
    if workers > 1 and n > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, *columns, chunksize=max(1, n // (8 * workers))))
    return [fn(*args) for args in zip(*columns)]


def _peaks(dataset: Dataset, cfg: PreprocessConfig, cache_dir, workers: int) -> list[np.ndarray]:
    """Native-rate R peaks per record, cached per (data, filter): R-peak detection (XQRS) costs ~20x the rest
    of preprocessing and does not depend on the sampling rate or normalisation tokens."""
    filt = PreprocessConfig(fs=cfg.fs, band=cfg.band, baseline=cfg.baseline, normalise="none", rpeaks=True)
    h = hashlib.sha256(f"peaks-v{FORMAT_VERSION}\0{dataset.fingerprint}\0{filt.band}\0{filt.baseline}\0".encode())
    h.update("\n".join(dataset.ids).encode())
    path = Path(cache_dir) / f"rpeaks-{h.hexdigest()[:24]}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            flat, offsets = z["peaks"], z["offsets"]
        return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    peaks = _map(native_rpeaks, workers, list(dataset.records), [filt] * len(dataset.records))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in peaks])]).astype(np.int64)
        flat = np.concatenate(peaks).astype(np.int64) if peaks else np.zeros(0, np.int64)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
        os.close(fd)
        np.savez(tmp, peaks=flat, offsets=offsets)
        os.replace(tmp, path)  # atomic: a killed process never leaves half a file
    return peaks


def _compute(dataset: Dataset, cfg: PreprocessConfig, workers: int, peaks: list) -> PreparedSignals:
    records = list(dataset.records)
    results = _map(preprocess_record, workers, records, [cfg] * len(records), peaks)
    found = [p for _, p in results] if cfg.rpeaks else None
    return PreparedSignals.from_arrays(dataset.ids, cfg.fs, [s for s, _ in results], found)


def _store(entry: Path, prepared: PreparedSignals, cfg: PreprocessConfig, dataset: Dataset) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
    try:
        for name in _ARRAYS:
            value = getattr(prepared, name)
            if value is not None:
                np.save(tmp / f"{name}.npy", value)
        meta = {"ids": list(prepared.ids), "fs": prepared.fs, "config": cfg.__dict__, "source": dataset.source,
                "format": FORMAT_VERSION, "created": time.time()}
        (tmp / "meta.json").write_text(json.dumps(meta, default=list))
        try:
            os.replace(tmp, entry)
        except OSError:  # another process stored the same entry first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(entry: Path) -> PreparedSignals:
    meta = json.loads((entry / "meta.json").read_text())
    arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") if (entry / f"{name}.npy").exists() else None
              for name in _ARRAYS}
    return PreparedSignals(tuple(meta["ids"]), float(meta["fs"]), arrays["data"], np.asarray(arrays["offsets"]),
                           None if arrays["rpeaks"] is None else np.asarray(arrays["rpeaks"]),
                           None if arrays["rpeak_offsets"] is None else np.asarray(arrays["rpeak_offsets"]))
