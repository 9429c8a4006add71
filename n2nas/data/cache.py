"""On-disk cache of preprocessed datasets: only what is expensive.

An entry is one (data, rate, band-pass, baseline) signal array plus per-record statistics; normalisation and
windowing happen per batch from those statistics (:mod:`n2nas.data.windows`), so every normalisation token
shares an entry. R peaks are detected once per record and kept in one file per dataset, rescaled to each rate
on load. :func:`prepare_variants` computes everything a search space can sample up front: one filter pass per
filter setting writes all its rates (3 filters x 3 rates = 9 arrays from 3 passes), over chunks of records in
worker processes. Entries are written atomically (temporary folder + rename, so a killed process never leaves a
half-written entry) and afterwards memory-mapped without touching the raw files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from n2nas.data.passes import PassPlan, run_pass
from n2nas.data.prepared import PreparedSignals
from n2nas.data.preprocess import RPEAK_BAND, RPEAK_DETECTOR, PreprocessConfig
from n2nas.data.record import Dataset
from n2nas.errors import DataError

FORMAT_VERSION = 2  # 2: entries hold unnormalised signals + per-record statistics; R peaks per dataset
_ARRAYS = ("data", "offsets", "stats")
Progress = Callable[[int, int, str], None]


@dataclasses.dataclass
class _Tally:
    """Products done out of ``total``, reported through the caller's ``progress``."""

    total: int
    done: int
    progress: Progress | None

    def report(self, label: str, step: int = 0) -> None:
        """Count ``step`` more products done and pass the tally to ``progress`` with ``label``."""
        self.done += step
        if self.progress is not None:
            self.progress(self.done, self.total, label)


def _data_hash(dataset: Dataset, token: str) -> str:
    h = hashlib.sha256(f"v{FORMAT_VERSION}\0{dataset.fingerprint}\0{token}\0".encode())
    h.update("\n".join(dataset.ids).encode())
    return h.hexdigest()[:24]


def cache_key(dataset: Dataset, cfg: PreprocessConfig) -> str:
    """Identity of a signal entry: file fingerprint, record order, rate, band and baseline, format version
    (not normalisation or R peaks: those are applied or attached on load)."""
    return _data_hash(dataset, cfg.signal_key())


def peaks_file(dataset: Dataset) -> str:
    """File name of a dataset's native-rate R peaks (keyed by the detector and its fixed filter too)."""
    return f"rpeaks-{_data_hash(dataset, f'peaks {RPEAK_BAND} {RPEAK_DETECTOR}')}.npz"


def prepare(dataset: Dataset, cfg: PreprocessConfig, cache_dir: str | Path | None = None,
            workers: int = 1) -> PreparedSignals:
    """Signals of every record for one pipeline's preprocessing, normalised per window by ``cfg.normalise``;
    read from ``cache_dir`` when seen before, otherwise only this (filter, rate) and, if asked, R peaks."""
    return prepare_variants(dataset, [cfg], cache_dir, workers)[cfg]


def prepare_variants(dataset: Dataset, configs: Iterable[PreprocessConfig], cache_dir: str | Path | None = None,
                     workers: int | None = None, progress: Progress | None = None
                     ) -> dict[PreprocessConfig, PreparedSignals]:
    """Every config's :class:`PreparedSignals`, computing only the missing (filter, rate) entries and R peaks.

    One pass per filter setting writes all of that filter's rates; ``workers`` processes (default: one per CPU
    core) share each pass. ``progress(done, total, label)`` counts cached products (signal entries, plus R peaks
    when any config wants them): it is called once for what was already cached, after each product is computed,
    and every ~10 s inside a long pass. Without ``cache_dir`` the arrays are computed in a temporary folder and
    returned in memory.
    """
    configs = list(dict.fromkeys(configs))
    if not configs:
        return {}
    if len(dataset) == 0:
        raise DataError(dataset.source, "no records to preprocess")
    if len({int(r.signal.shape[0]) for r in dataset.records}) > 1:
        raise DataError(dataset.source, "records have different numbers of leads; preprocess them separately")
    workers = max(int(workers or os.cpu_count() or 1), 1)
    with contextlib.ExitStack() as stack:
        root = Path(cache_dir) if cache_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        keys = {cfg: cache_key(dataset, cfg) for cfg in configs}
        loaded = {key: _load(root / key) for key in set(keys.values()) if (root / key / "meta.json").is_file()}
        missing: dict[tuple, dict[int, str]] = {}
        for cfg, key in keys.items():
            if key not in loaded:
                missing.setdefault((cfg.band, cfg.baseline), {})[int(cfg.fs)] = key
        want_peaks = any(cfg.rpeaks for cfg in configs)
        peaks = _load_peaks(root / peaks_file(dataset)) if want_peaks else None
        plans = _plans(missing, want_peaks and peaks is None)
        total = len(set(keys.values())) + int(want_peaks)
        tally = _Tally(total, total - sum(len(p.rates) for p in plans) - int(any(p.peaks for p in plans)), progress)
        if tally.done:
            tally.report("already cached")
        pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(dataset) > 1 and plans else None
        try:
            for plan in plans:
                found = _run_plan(dataset, plan, missing[(plan.band, plan.baseline)] if plan.rates else {},
                                  root, pool, workers, tally)
                loaded.update(found[0])
                if plan.peaks:
                    peaks = _store_peaks(root / peaks_file(dataset), found[1])
                    tally.report("R peaks (every record, native rate)", step=1)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        if cache_dir is None:  # the temporary folder goes away: keep the arrays in memory
            loaded = {k: _in_memory(p) for k, p in loaded.items()}
        return {cfg: _view(loaded[keys[cfg]], cfg, peaks, dataset) for cfg in configs}


def _plans(missing: dict[tuple, dict[int, str]], detect: bool) -> list[PassPlan]:
    """One pass per missing filter; R peaks ride with the R-peak filter's pass, else the first, else alone."""
    plans = [PassPlan(band, baseline, tuple(sorted(rates))) for (band, baseline), rates in missing.items()]
    if detect:
        host = next((i for i, p in enumerate(plans) if tuple(p.band or ()) == RPEAK_BAND and p.baseline == "none"),
                    0 if plans else None)
        if host is None:
            plans.append(PassPlan(RPEAK_BAND, "none", (), peaks=True))
        else:
            p = plans[host]
            plans[host] = PassPlan(p.band, p.baseline, p.rates, peaks=True)
    return plans


def _run_plan(dataset: Dataset, plan: PassPlan, keys: dict[int, str], root: Path, pool, workers: int,
              tally: _Tally) -> tuple[dict[str, PreparedSignals], list | None]:
    """One filter pass into temporary entry folders, each renamed into place when complete."""
    tmps = {rate: Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.")) for rate, key in keys.items()}
    label = plan.label() + (" + R peaks" if plan.peaks else "")
    try:
        result = run_pass(dataset.records, plan, {rate: tmps[rate] / "data.npy" for rate in keys}, pool, workers,
                          lambda n: tally.report(f"{label}: {n}/{len(dataset)} records"))
        out = {}
        for rate, key in keys.items():
            np.save(tmps[rate] / "offsets.npy", result.offsets[rate])
            np.save(tmps[rate] / "stats.npy", result.stats[rate])
            meta = {"ids": dataset.ids, "fs": rate, "band": plan.band, "baseline": plan.baseline, "centred": True,
                    "source": dataset.source, "format": FORMAT_VERSION, "created": time.time()}
            (tmps[rate] / "meta.json").write_text(json.dumps(meta))
            try:
                os.replace(tmps[rate], root / key)
            except OSError:  # another process stored the same entry first; theirs is identical
                shutil.rmtree(tmps[rate], ignore_errors=True)
            out[key] = _load(root / key)
            tally.report(f"{rate} Hz, {plan.label()}", step=1)
        return out, result.peaks
    finally:
        for tmp in tmps.values():
            shutil.rmtree(tmp, ignore_errors=True)  # no-op for the folders renamed into place


def _load(entry: Path) -> PreparedSignals:
    meta = json.loads((entry / "meta.json").read_text())
    return PreparedSignals(tuple(meta["ids"]), float(meta["fs"]), np.load(entry / "data.npy", mmap_mode="r"),
                           np.load(entry / "offsets.npy"), stats=np.load(entry / "stats.npy"), centred=True)


def _in_memory(prepared: PreparedSignals) -> PreparedSignals:
    return dataclasses.replace(prepared, data=np.array(prepared.data))


def _store_peaks(path: Path, peaks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in peaks])]).astype(np.int64)
    flat = np.concatenate(peaks).astype(np.int64) if peaks else np.zeros(0, np.int64)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, peaks=flat, offsets=offsets)
        os.replace(tmp, path)  # atomic: a killed process never leaves half a file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return flat, offsets


def _load_peaks(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return z["peaks"], z["offsets"]


def _view(base: PreparedSignals, cfg: PreprocessConfig, peaks, dataset: Dataset) -> PreparedSignals:
    """``base`` with ``cfg``'s normalisation and, when asked, R peaks mapped to ``cfg.fs``."""
    view = base.with_normalisation(cfg.normalise)
    if not cfg.rpeaks:
        return view
    flat, offsets = peaks
    counts = np.diff(offsets)
    owner = np.repeat(np.arange(len(counts)), counts)
    record_fs = np.array([float(r.fs) for r in dataset.records])
    scaled = np.round(flat * float(cfg.fs) / record_fs[owner]).astype(np.int64)  # as preprocess.scale_peaks
    keep = scaled < base.lengths[owner]
    kept = np.bincount(owner[keep], minlength=len(counts))

    return dataclasses.replace(view, rpeaks=scaled[keep],
                               rpeak_offsets=np.concatenate([[0], np.cumsum(kept)]).astype(np.int64))
