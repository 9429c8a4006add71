"""Read one WFDB record with every check a clinical data set needs, and say exactly what is wrong."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from n2nas.errors import DataError

# Bytes per sample of the fixed-width WFDB formats; the file size must equal offset + bytes x samples x channels.
_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "24": 3, "32": 4,
                     "310": 4 / 3, "311": 4 / 3}
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0}


@dataclass(frozen=True, eq=False)
class RawRecord:
    """A validated record straight from disk: ``(leads, samples)`` float32 in mV plus header facts."""

    name: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    comments: tuple[str, ...]
    files: tuple[Path, ...]


def read_wfdb_record(stem: Path, *, expected_fs: float | None = None, min_seconds: float = 0.0) -> RawRecord:
    """Read ``stem.hea`` and its signal files; raise DataError naming the file and the problem."""
    header_path = stem.with_suffix(".hea")
    if not header_path.is_file():
        raise DataError(header_path, "header file is missing")
    try:
        header = wfdb.rdheader(str(stem))
    except Exception as err:  # wfdb raises bare ValueError/IndexError on malformed headers
        raise DataError(header_path, f"cannot parse WFDB header ({err})") from None
    if not header.fs or header.fs <= 0:
        raise DataError(header_path, f"header sampling frequency {header.fs!r} is not positive")
    if expected_fs is not None and abs(header.fs - expected_fs) > 1e-6:
        raise DataError(header_path, f"header says {header.fs:g} Hz but this data set is {expected_fs:g} Hz")
    if not header.n_sig or not header.sig_len:
        raise DataError(header_path, "header declares no signal samples")
    files = _check_signal_files(stem.parent, header, header_path)
    try:
        rec = wfdb.rdrecord(str(stem), physical=True)
    except Exception as err:
        raise DataError(files[0], f"cannot read signal ({err})") from None
    signal = _to_millivolts(rec.p_signal.T, rec.units or [], header_path)
    leads = tuple(rec.sig_name or [f"lead{i}" for i in range(signal.shape[0])])
    _check_values(signal, leads, files[0])
    duration = signal.shape[1] / header.fs
    if duration < min_seconds:
        raise DataError(files[0], f"record is {duration:.2f} s long, shorter than the {min_seconds:g} s minimum window")
    return RawRecord(stem.name, signal, float(header.fs), leads, tuple(rec.comments or ()), tuple(files))


def _check_signal_files(folder: Path, header, header_path: Path) -> list[Path]:
    """Every signal file exists and holds exactly the samples the header promises."""
    paths = []
    for fname in dict.fromkeys(header.file_name):
        path = folder / fname
        if not path.is_file():
            raise DataError(path, f"signal file named in {header_path.name} is missing")
        channels = [i for i, f in enumerate(header.file_name) if f == fname]
        fmt = header.fmt[channels[0]]
        if fmt in _BYTES_PER_SAMPLE:
            offset = (header.byte_offset[channels[0]] or 0) if header.byte_offset else 0
            expected = offset + int(np.ceil(_BYTES_PER_SAMPLE[fmt] * header.sig_len * len(channels)))
            actual = path.stat().st_size
            if actual != expected:
                held = int((actual - offset) / (_BYTES_PER_SAMPLE[fmt] * len(channels)))
                what = "truncated" if actual < expected else "longer than its header says"
                raise DataError(path, f"signal file is {what}: it holds {max(held, 0)} samples per lead, "
                                      f"the header says {header.sig_len}")
        paths.append(path)
    return paths


def _to_millivolts(signal: np.ndarray, units: list[str], header_path: Path) -> np.ndarray:
    out = np.empty(signal.shape, dtype=np.float32)
    for i, row in enumerate(signal):
        unit = (units[i] if i < len(units) else "mV") or "mV"
        scale = _TO_MV.get(unit.strip().lower())
        if scale is None:
            raise DataError(header_path, f"lead {i} has unit {unit!r}, not a voltage (mV, uV or V)")
        out[i] = row * scale
    return out


def _check_values(signal: np.ndarray, leads: tuple[str, ...], path: Path) -> None:
    """Reject NaN samples (WFDB's invalid-sample marker) and records whose every lead is constant."""
    bad = np.isnan(signal).any(axis=1)
    if bad.any():
        raise DataError(path, f"signal contains NaN (invalid) samples in lead {leads[int(np.argmax(bad))]}")
    if (np.ptp(signal, axis=1) == 0).all():
        raise DataError(path, "signal is flat (constant) in every lead")


def fingerprint_files(kind: str, paths: list[Path]) -> str:
    """Cheap content identity of a data source: names, sizes and modification times of its files."""
    h = hashlib.sha256(kind.encode())
    for p in sorted(paths):
        try:
            st = os.stat(p)
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p.name}\0missing\n".encode())
    return h.hexdigest()[:20]
