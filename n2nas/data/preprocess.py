"""Per-record preprocessing ops chosen by tokens: resample, filter, baseline removal, normalisation, R peaks.

Transforms take and return channel-first ``(leads, samples)`` float arrays in mV; every filter and resampler is
scipy.signal's, R peaks come from wfdb's XQRS detector refined with ``correct_peaks``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from scipy import ndimage, signal

from n2nas.data.record import Record
from n2nas.errors import ConfigError

NORMALISATIONS = ("none", "record_z", "global_z", "minmax", "robust")
_EPS = 1e-6


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that changes the cached per-record arrays.

    ``global_z`` is not applied per record: its statistics must come from training records only, so it is applied
    at batch time (:mod:`n2nas.data.windows`); here it leaves the signal as is.
    """

    fs: int = 300
    band: tuple[float, float] | None = (0.5, 40.0)
    baseline: str = "none"
    normalise: str = "record_z"
    rpeaks: bool = False

    def __post_init__(self):
        if self.normalise not in NORMALISATIONS:
            raise ConfigError("normalise", f"{self.normalise!r} is not one of {', '.join(NORMALISATIONS)}")
        if self.baseline not in ("none", "median"):
            raise ConfigError("baseline", f"{self.baseline!r} is not 'none' or 'median'")
        if self.fs <= 0:
            raise ConfigError("fs", f"target sampling rate must be positive, got {self.fs}")
        if self.band is not None and not 0 <= self.band[0] < self.band[1]:
            raise ConfigError("band", f"need 0 <= low < high, got {self.band}")

    def cache_key(self) -> str:
        """Stable short hash of every field."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @staticmethod
    def raw(fs: int = 300) -> "PreprocessConfig":
        """Resampling only."""
        return PreprocessConfig(fs=fs, band=None, normalise="none")

    @staticmethod
    def standard(fs: int = 300) -> "PreprocessConfig":
        """0.5-40 Hz band-pass and per-record z-score: the common ECG deep-learning front end."""
        return PreprocessConfig(fs=fs)

    @staticmethod
    def diagnosenet() -> "PreprocessConfig":
        """DiagnoseNET's beat-window input: 300 Hz, baseline removal, band-pass, R peaks."""
        return PreprocessConfig(fs=300, baseline="median", rpeaks=True)


def resample(sig: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling to ``target_fs`` along the last axis (anti-aliasing included)."""
    if abs(fs - target_fs) < 1e-9:
        return sig
    ratio = Fraction(float(target_fs) / float(fs)).limit_denominator(1000)
    return signal.resample_poly(sig, ratio.numerator, ratio.denominator, axis=-1)


def bandpass(sig: np.ndarray, fs: float, low: float, high: float, order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections, forward-backward).

    A ``high`` at or above 0.95 x Nyquist turns it into a high-pass; ``low == 0`` into a low-pass.
    """
    nyquist = fs / 2
    if low >= high:
        raise ConfigError("band", f"low cut {low} Hz must be below high cut {high} Hz")
    use_high = high < 0.95 * nyquist
    if low > 0 and use_high:
        sos = signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    elif low > 0:
        sos = signal.butter(order, low, btype="highpass", fs=fs, output="sos")
    elif use_high:
        sos = signal.butter(order, high, btype="lowpass", fs=fs, output="sos")
    else:
        return sig
    padlen = min(3 * (2 * len(sos) + 1), sig.shape[-1] - 1)
    return signal.sosfiltfilt(sos, sig, axis=-1, padlen=max(padlen, 0))


def remove_baseline(sig: np.ndarray, fs: float) -> np.ndarray:
    """Subtract the baseline estimated by 200 ms then 600 ms median filters (de Chazal et al. 2004)."""
    def odd(seconds: float) -> int:
        return max(int(seconds * fs) // 2 * 2 + 1, 3)

    base = ndimage.median_filter(sig, size=(1, odd(0.2)), mode="nearest")
    base = ndimage.median_filter(base, size=(1, odd(0.6)), mode="nearest")
    return sig - base


def normalise_record(sig: np.ndarray, method: str) -> np.ndarray:
    """Per-lead normalisation; constant leads stay finite (centred, not divided by zero)."""
    if method in ("none", "global_z"):
        return sig
    if method == "record_z":
        centre, scale = sig.mean(axis=-1, keepdims=True), sig.std(axis=-1, keepdims=True)
    elif method == "robust":
        q25, centre, q75 = np.percentile(sig, [25, 50, 75], axis=-1, keepdims=True)
        scale = q75 - q25
    elif method == "minmax":
        lo, hi = sig.min(axis=-1, keepdims=True), sig.max(axis=-1, keepdims=True)
        return 2 * (sig - lo) / np.maximum(hi - lo, _EPS) - 1
    else:
        raise ConfigError("normalise", f"{method!r} is not one of {', '.join(NORMALISATIONS)}")
    return (sig - centre) / np.maximum(scale, _EPS)


def detect_rpeaks(sig: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample positions: XQRS on the lead with the most QRS-band energy, refined to the local extremum."""
    from wfdb import processing

    qrs_band = bandpass(sig, fs, 5.0, min(20.0, 0.45 * fs))
    lead = int(np.argmax((qrs_band ** 2).sum(axis=-1)))
    x = np.ascontiguousarray(sig[lead], dtype=np.float64)
    if x.shape[-1] < int(2 * fs) or np.ptp(x) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        found = processing.xqrs_detect(x, fs=fs, verbose=False)
    except (ValueError, IndexError):  # XQRS gives up on signals it cannot learn from
        return np.zeros(0, dtype=np.int64)
    if len(found) == 0:
        return np.zeros(0, dtype=np.int64)
    refined = processing.correct_peaks(x, found, search_radius=max(int(0.05 * fs), 1),
                                       smooth_window_size=max(int(0.15 * fs), 2), peak_dir="compare")
    refined = np.unique(np.asarray(refined, dtype=np.int64))
    return refined[(refined >= 0) & (refined < x.shape[-1])]


def _filtered(record: Record, cfg: PreprocessConfig) -> tuple[np.ndarray, float]:
    """The record at its own rate after ``cfg``'s baseline and band-pass steps."""
    sig = np.asarray(record.signal, dtype=np.float64)
    fs = float(record.fs)
    if cfg.baseline == "median":
        sig = remove_baseline(sig, fs)
    if cfg.band is not None:
        sig = bandpass(sig, fs, *cfg.band)
    return sig, fs


def native_rpeaks(record: Record, cfg: PreprocessConfig) -> np.ndarray:
    """R peaks at the recording's own rate after ``cfg``'s baseline and band-pass steps (the only steps that
    change them); shared by every sampling rate and normalisation, so a search detects them once per filter."""
    return detect_rpeaks(*_filtered(record, cfg))


def preprocess_record(record: Record, cfg: PreprocessConfig,
                      native_peaks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply ``cfg`` to one record; returns the float32 signal at ``cfg.fs`` and R peaks (or None).

    ``native_peaks`` (from :func:`native_rpeaks` with the same filter) skips the detection.
    """
    sig, fs = _filtered(record, cfg)
    peaks = None
    if cfg.rpeaks:
        # detect at the recording's own rate, where QRS complexes are sharpest, then map to the target rate
        found = detect_rpeaks(sig, fs) if native_peaks is None else np.asarray(native_peaks, dtype=np.int64)
        peaks = np.round(found * cfg.fs / fs).astype(np.int64)
    sig = resample(sig, fs, cfg.fs)
    if peaks is not None:
        peaks = peaks[peaks < sig.shape[-1]]
    sig = normalise_record(sig, cfg.normalise)
    return sig.astype(np.float32), peaks
