"""Per-record preprocessing ops chosen by tokens: resample, filter, baseline removal, normalisation, R peaks.

Transforms take and return channel-first ``(leads, samples)`` float arrays in mV; filters and resamplers are
scipy.signal's. What is cached and what is not (:mod:`n2nas.data.cache`): filtering and resampling are cached
per (filter, rate); normalisation is applied per batch from per-record statistics (:func:`record_stats`), which
gives what normalising the whole record gives (:func:`normalise_record` is defined through the same statistics);
R peaks are detected once per record on one fixed filtered copy (:func:`rpeak_signal`).

R-peak detector: neurokit2's ``ecg_findpeaks`` (method "neurokit"), refined to the local extremum with wfdb's
``correct_peaks``: an order of magnitude faster than wfdb's XQRS, which alone would spend more than a search's
cold-start budget on a PhysioNet-2017-sized data set, and as good on N, AF and ectopic rhythms. It misses many
beats of noise-dominated records, where beat positions carry little anyway (a record with fewer peaks than a
window's beats gets evenly spaced pseudo-beats, :mod:`n2nas.data.windows`). The comparison:
docs/data.md#r-peak-detector.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from scipy import ndimage, signal

from n2nas.errors import ConfigError
from n2nas.presets import preset

NORMALISATIONS = ("none", "record_z", "global_z", "minmax", "robust")
# Per-record, per-lead statistics kept next to the cached signal; every normalisation is an affine map of them.
STATS = ("mean", "std", "q25", "median", "q75", "min", "max")
RPEAK_BAND = (0.5, 40.0)  # the fixed filter R peaks are detected on, whatever a pipeline's own filter
RPEAK_DETECTOR = "neurokit2 ecg_findpeaks(method='neurokit') + wfdb correct_peaks"  # part of the peaks' cache key
_EPS = 1e-6


@dataclass(frozen=True)
class PreprocessConfig:
    """A pipeline's preprocessing tokens.

    Only ``fs``, ``band`` and ``baseline`` change the cached arrays (:meth:`signal_key`); ``normalise`` is
    applied per batch and ``rpeaks`` only asks for the per-record R peaks, which do not depend on the other
    tokens. ``global_z`` uses training-record statistics, applied at batch time (:mod:`n2nas.data.windows`).
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
        if self.band is not None:  # a list (e.g. from JSON) becomes a tuple, so configs stay hashable dict keys
            object.__setattr__(self, "band", (float(self.band[0]), float(self.band[1])))

    def cache_key(self) -> str:
        """Stable short hash of every field (identifies a whole pipeline's preprocessing)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def signal_key(self) -> str:
        """Stable short hash of the fields that change the cached signal: rate, band and baseline."""
        band = None if self.band is None else [float(b) for b in self.band]
        text = json.dumps({"fs": int(self.fs), "band": band, "baseline": self.baseline}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @staticmethod
    @preset()
    def raw(fs: int = 300) -> "PreprocessConfig":
        """Resampling only."""
        return PreprocessConfig(fs=fs, band=None, normalise="none")

    @staticmethod
    @preset()
    def standard(fs: int = 300) -> "PreprocessConfig":
        """0.5-40 Hz band-pass and per-record z-score: the common ECG deep-learning front end."""
        return PreprocessConfig(fs=fs)

    @staticmethod
    @preset()
    def diagnosenet() -> "PreprocessConfig":
        """DiagnoseNET's beat-window input: 300 Hz, baseline removal, band-pass, R peaks."""
        return PreprocessConfig(fs=300, baseline="median", rpeaks=True)


def _ratio(fs: float, target_fs: float) -> Fraction:
    return Fraction(float(target_fs) / float(fs)).limit_denominator(1000)


class Designs:
    """Filter coefficients designed once per rate and reused for every record.

    Designing a Butterworth band-pass (and its initial state) or a resampling FIR costs more than applying it to
    a 30 s record; a filter pass over thousands of records keeps one of these. The coefficients are exactly the
    ones ``butter`` / ``resample_poly`` would design on each call, so results are unchanged.
    """

    def __init__(self):
        self._sos: dict[tuple, np.ndarray | None] = {}
        self._fir: dict[tuple[int, int], np.ndarray] = {}

    def sos(self, fs: float, low: float, high: float, order: int = 3) -> np.ndarray | None:
        """Second-order sections of :func:`bandpass` at ``fs`` (None when the band covers everything)."""
        key = (float(fs), float(low), float(high), int(order))
        if key not in self._sos:
            use_high = high < 0.95 * fs / 2
            if low > 0 and use_high:
                self._sos[key] = signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
            elif low > 0:
                self._sos[key] = signal.butter(order, low, btype="highpass", fs=fs, output="sos")
            elif use_high:
                self._sos[key] = signal.butter(order, high, btype="lowpass", fs=fs, output="sos")
            else:
                self._sos[key] = None
        return self._sos[key]

    def fir(self, up: int, down: int) -> np.ndarray:
        """``resample_poly``'s own anti-aliasing FIR for ``up / down`` (Kaiser window, beta 5)."""
        if (up, down) not in self._fir:
            rate = max(up, down)
            self._fir[(up, down)] = signal.firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))
        return self._fir[(up, down)]


def resample(sig: np.ndarray, fs: float, target_fs: float, designs: Designs | None = None) -> np.ndarray:
    """Polyphase resampling to ``target_fs`` along the last axis (anti-aliasing included)."""
    if abs(fs - target_fs) < 1e-9:
        return sig
    ratio = _ratio(fs, target_fs)
    window = ("kaiser", 5.0) if designs is None else designs.fir(ratio.numerator, ratio.denominator)
    return signal.resample_poly(sig, ratio.numerator, ratio.denominator, axis=-1, window=window)


def resampled_length(n: int, fs: float, target_fs: float) -> int:
    """Samples :func:`resample` returns for ``n`` input samples (known before resampling, to lay out the cache)."""
    if abs(fs - target_fs) < 1e-9:
        return int(n)
    ratio = _ratio(fs, target_fs)
    return -(-int(n) * ratio.numerator // ratio.denominator)


def bandpass(sig: np.ndarray, fs: float, low: float, high: float, order: int = 3,
             designs: Designs | None = None) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections, forward-backward).

    A ``high`` at or above 0.95 x Nyquist turns it into a high-pass; ``low == 0`` into a low-pass.
    """
    if low >= high:
        raise ConfigError("band", f"low cut {low} Hz must be below high cut {high} Hz")
    sos = (designs or Designs()).sos(fs, low, high, order)
    if sos is None:
        return sig
    padlen = min(3 * (2 * len(sos) + 1), sig.shape[-1] - 1)
    return signal.sosfiltfilt(sos, sig, axis=-1, padlen=max(padlen, 0))


def remove_baseline(sig: np.ndarray, fs: float) -> np.ndarray:
    """Subtract the baseline estimated by 200 ms then 600 ms median filters (de Chazal et al. 2004)."""
    def odd(seconds: float) -> int:
        return max(int(seconds * fs) // 2 * 2 + 1, 3)

    sig = np.asarray(sig, dtype=np.float64)
    base = np.empty_like(sig)
    for lead in range(sig.shape[0]):
        # one lead at a time: scipy's 1-D median filter is a running median (O(n log w)), the same numbers as
        # the 2-D (1, w) footprint in far less time (docs/data.md#preprocessing-timings)
        first = ndimage.median_filter(sig[lead], size=odd(0.2), mode="nearest")
        base[lead] = ndimage.median_filter(first, size=odd(0.6), mode="nearest")
    return sig - base


def quartiles(sig: np.ndarray) -> np.ndarray:
    """``(3, leads)``: the 25th, 50th and 75th percentiles along the last axis, equal to ``np.percentile``'s
    default (linear) method, from one ``np.partition`` (faster, and it runs 9 times per record in a pass;
    docs/data.md#preprocessing-timings)."""
    n = sig.shape[-1]
    pos = np.array([0.25, 0.5, 0.75]) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    part = np.partition(sig, np.unique(np.concatenate([lo, hi])), axis=-1)
    a, b, t = part[..., lo], part[..., hi], pos - lo
    d = b - a
    # numpy's own interpolation, both branches, so the numbers are the same to the last bit
    return np.where(t < 0.5, a + d * t, b - d * (1 - t)).T


def record_stats(sig: np.ndarray) -> np.ndarray:
    """``(len(STATS), leads)`` float64 statistics of one record, enough for every per-record normalisation."""
    sig = np.asarray(sig, dtype=np.float64)
    q25, median, q75 = quartiles(sig)
    return np.stack([sig.mean(axis=-1), sig.std(axis=-1), q25, median, q75, sig.min(axis=-1), sig.max(axis=-1)])


def normalisation_affine(stats: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(centre, scale)`` with ``normalised = (x - centre) / scale`` from :func:`record_stats` rows.

    ``stats`` is ``(..., len(STATS), leads)``; the results are ``(..., leads)``. ``none`` and ``global_z`` are
    the identity here (global z-scoring uses training statistics at batch time).
    """
    stats = np.asarray(stats, dtype=np.float64)
    row = {name: stats[..., i, :] for i, name in enumerate(STATS)}
    if method in ("none", "global_z"):
        return np.zeros_like(row["mean"]), np.ones_like(row["mean"])
    if method == "record_z":
        return row["mean"], np.maximum(row["std"], _EPS)
    if method == "robust":
        return row["median"], np.maximum(row["q75"] - row["q25"], _EPS)
    if method == "minmax":  # 2 (x - lo) / span - 1, written as one affine map
        half = np.maximum(row["max"] - row["min"], _EPS) / 2
        return row["min"] + half, half
    raise ConfigError("normalise", f"{method!r} is not one of {', '.join(NORMALISATIONS)}")


def normalise_record(sig: np.ndarray, method: str) -> np.ndarray:
    """Per-lead normalisation; constant leads stay finite (centred, not divided by zero)."""
    if method in ("none", "global_z"):
        return sig
    centre, scale = normalisation_affine(record_stats(sig), method)
    return (sig - centre[:, None]) / scale[:, None]


def detect_rpeaks(sig: np.ndarray, fs: float, designs: Designs | None = None) -> np.ndarray:
    """R-peak sample positions: neurokit2's detector on the lead with the most QRS-band energy, refined to the
    local extremum with wfdb's ``correct_peaks`` (see the module docstring for why this detector)."""
    import neurokit2
    from wfdb import processing

    sig = np.asarray(sig, dtype=np.float64)
    if sig.shape[0] == 1:
        lead = 0
    else:
        lead = int(np.argmax((bandpass(sig, fs, 5.0, min(20.0, 0.45 * fs), designs=designs) ** 2).sum(axis=-1)))
    x = np.ascontiguousarray(sig[lead])
    if x.shape[-1] < int(2 * fs) or np.ptp(x) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        with warnings.catch_warnings():  # it warns about short or odd signals; an empty result says enough
            warnings.simplefilter("ignore")
            found = neurokit2.ecg_findpeaks(x, sampling_rate=float(fs), method="neurokit")["ECG_R_Peaks"]
    except (ValueError, IndexError):  # signals it cannot segment
        return np.zeros(0, dtype=np.int64)
    found = np.asarray(found, dtype=np.int64)
    if len(found) == 0:
        return found
    refined = processing.correct_peaks(x, found, search_radius=max(int(0.05 * fs), 1),
                                       smooth_window_size=max(int(0.15 * fs), 2), peak_dir="compare")
    refined = np.unique(np.asarray(refined, dtype=np.int64))
    return refined[(refined >= 0) & (refined < x.shape[-1])]


def filter_signal(sig: np.ndarray, fs: float, band: tuple[float, float] | None, baseline: str,
                  designs: Designs | None = None) -> np.ndarray:
    """A float64 signal after the baseline and band-pass steps, at its own rate."""
    sig = np.asarray(sig, dtype=np.float64)
    if baseline == "median":
        sig = remove_baseline(sig, fs)
    if band is not None:
        sig = bandpass(sig, fs, *band, designs=designs)
    return sig


def rpeak_signal(sig: np.ndarray, fs: float, designs: Designs | None = None) -> np.ndarray:
    """The fixed filtered copy R peaks are detected on: :data:`RPEAK_BAND` band-pass, no baseline step.

    R-peak positions hardly move with our filter tokens (the QRS complex lives in 5-20 Hz), so one detection
    per record serves every pipeline.
    """
    return filter_signal(sig, fs, RPEAK_BAND, "none", designs)


def scale_peaks(peaks: np.ndarray, fs: float, target_fs: float, n_target: int) -> np.ndarray:
    """Native-rate peak positions mapped to ``target_fs``, keeping those inside a record of ``n_target``."""
    out = np.round(np.asarray(peaks, dtype=np.int64) * target_fs / fs).astype(np.int64)
    return out[out < n_target]
