"""Synthetic ECG records written as real WFDB files, so tests and demos never download anything.

The synthesiser is a simplified, seeded cousin of McSharry's ECGSYN: every beat is a sum of Gaussian
waves (P, Q, R, S, T and a terminal R' used for right bundle branch block) placed around an R-peak time.
R-peak times come from an RR-interval process that carries the rhythm: mildly variable sinus rhythm,
independent irregular intervals for atrial fibrillation, premature ventricular beats with a compensatory
pause, and so on. The waves form one frontal-plane "dipole" that is projected into each lead with a
per-lead gain and sign, then baseline wander and noise are added lead by lead.

Everything takes an explicit seed or ``np.random.Generator``; the same seed writes byte-identical files.
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import wfdb

from n2nas.errors import ConfigError
from n2nas.presets import named, preset

# Bump when the synthesiser changes, so cached synthetic folders written by older code are not reused.
GENERATOR_VERSION = 1
CINC2017_KINDS = ("N", "A", "O", "~")
TWELVE_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

SR, AF, IAVB, CRBBB, RBBB = "426783006", "164889003", "270492004", "713427006", "59118001"
SB, STACH, PVC, LQRSV = "426177001", "427084000", "427172004", "251146004"
LVH = "164873001"  # left ventricular hypertrophy: not a scored class in CinC 2021

# Dx profiles for the CinC-2021-like writer. Each block of len(_CINC_PROFILES) records holds every profile
# once, so any n_records >= 8 contains every code above, including both codes of the CRBBB/RBBB pair.
_CINC_PROFILES = ((SR,), (AF,), (SR, IAVB), (SR, CRBBB), (SB, RBBB), (AF, LQRSV), (SR, PVC), (STACH, LVH))

# Wave order of every per-beat array: P, Q, R, S, T and the terminal R' of right bundle branch block.
_P, _Q, _R, _S, _T, _R2 = range(6)
# Normal beat in the dipole (lead-II-like) view: amplitude mV, peak offset from R s, Gaussian width s.
_AMP = np.array([0.15, -0.10, 1.10, -0.25, 0.30, 0.0])
_OFFSET = np.array([-0.16, -0.025, 0.0, 0.025, 0.28, 0.07])
_WIDTH = np.array([0.025, 0.010, 0.011, 0.011, 0.055, 0.018])
# Frontal-plane axis of each wave in degrees (P, QRS, T point down-left; R' of RBBB points right).
_AXIS = np.array([55.0, 60.0, 60.0, 60.0, 45.0, 180.0])
_LIMB_ANGLE = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
# Precordial leads see the horizontal plane: per-wave gains V1..V6 (rS in V1 growing to qR in V5-V6,
# RSR' in V1 and a broad terminal S in V6 when R' is present).
_CHEST_GAIN = np.array([
    [0.60, 0.60, 0.50, 0.50, 0.50, 0.50],   # P
    [0.00, 0.00, 0.30, 0.60, 1.00, 1.00],   # Q
    [0.25, 0.50, 0.90, 1.30, 1.20, 1.00],   # R
    [2.50, 3.00, 2.00, 1.20, 0.60, 0.30],   # S
    [0.20, 1.20, 1.40, 1.30, 1.00, 0.80],   # T
    [1.00, 0.60, 0.20, -0.30, -0.60, -0.80],  # R'
])


@dataclass(frozen=True)
class _Rhythm:
    """What the RR process and the beat morphology must show; built from a CinC 2017 class or Dx codes."""

    hr: float                 # mean heart rate, bpm
    af: bool = False          # irregular RR, no P wave, f-waves
    pr: float = 0.16          # P peak to R peak, s (> 0.22 s is first-degree AV block)
    pvc_prob: float = 0.0     # chance that a sinus beat is replaced by a premature ventricular beat
    bigeminy: bool = False    # every second beat is a premature ventricular beat
    qrs_scale: float = 1.0    # QRS amplitude factor (low voltage < 1, hypertrophy > 1)
    rbbb: bool = False        # wide QRS with terminal R'
    noisy: bool = False       # motion artefact and electrode noise dominate


def _rhythm_for_kind(kind: str, rng: np.random.Generator) -> _Rhythm:
    if kind == "N":
        return _Rhythm(hr=rng.uniform(60, 95), pr=rng.uniform(0.14, 0.18))
    if kind == "A":
        return _Rhythm(hr=rng.uniform(75, 120), af=True)
    if kind == "O":
        # Three learnable "other" rhythms: frequent PVCs, ventricular bigeminy, sinus brady with 1st-degree block.
        sub = rng.integers(3)
        if sub == 0:
            return _Rhythm(hr=rng.uniform(60, 90), pvc_prob=rng.uniform(0.15, 0.3))
        if sub == 1:
            return _Rhythm(hr=rng.uniform(60, 85), bigeminy=True)
        return _Rhythm(hr=rng.uniform(40, 55), pr=rng.uniform(0.26, 0.36))
    if kind == "~":
        return _Rhythm(hr=rng.uniform(60, 100), noisy=True)
    raise ConfigError("kind", f"unknown rhythm {kind!r} (expected one of {', '.join(CINC2017_KINDS)})")


def _rhythm_for_codes(codes: tuple[str, ...], rng: np.random.Generator) -> _Rhythm:
    """The signal each Dx combination implies, so that CinC-like labels are visible in the waveform."""
    lo, hi = (75, 120) if AF in codes else (42, 57) if SB in codes else (102, 130) if STACH in codes else (60, 95)
    pr = rng.uniform(0.24, 0.32) if IAVB in codes else rng.uniform(0.14, 0.18)  # unused under AF: no P wave
    qrs = rng.uniform(0.3, 0.4) if LQRSV in codes else rng.uniform(1.7, 2.0) if LVH in codes else 1.0
    return _Rhythm(hr=rng.uniform(lo, hi), af=AF in codes, pr=pr, qrs_scale=qrs, rbbb=CRBBB in codes or RBBB in codes,
                   pvc_prob=rng.uniform(0.15, 0.3) if PVC in codes else 0.0)


def _beat_times(rhythm: _Rhythm, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times (starting before 0 so the record opens mid-beat) and which beats are ventricular."""
    rr0 = 60.0 / rhythm.hr
    k = int((seconds + 2.0) / (0.35 * rr0)) + 4
    if rhythm.af:
        # Irregularly irregular: independent draws, no respiratory or beat-to-beat pattern to predict.
        rr = np.maximum(rr0 * rng.lognormal(0.0, rng.uniform(0.18, 0.28), k), 0.32)
    else:
        # Mild HRV: respiratory sinus arrhythmia plus a slow random walk around the mean interval.
        beat_t = np.arange(k) * rr0
        rsa = rng.uniform(0.015, 0.035) * np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * beat_t + rng.uniform(0, 6.3))
        drift = np.convolve(rng.normal(0, 0.01, k), np.ones(8) / np.sqrt(8), mode="same")
        rr = rr0 * (1.0 + rsa + drift)
    times = np.cumsum(rr) - rng.uniform(1.0, 1.0 + rr0)
    ventricular = np.zeros(k, dtype=bool)
    if rhythm.bigeminy:
        ventricular[1::2] = True
    elif rhythm.pvc_prob > 0:
        ventricular[1:] = rng.random(k - 1) < rhythm.pvc_prob
        ventricular[1:] &= ~ventricular[:-1]  # no couplets: each PVC follows a sinus beat
    # A PVC fires early and blocks the sinus beat it replaces, so the next one comes on time (compensatory pause).
    idx = np.flatnonzero(ventricular)
    times[idx] = times[idx - 1] + rng.uniform(0.55, 0.7) * rr[idx]
    keep = (times > -1.0) & (times < seconds + 1.0)
    return times[keep], ventricular[keep]


def _beat_waves(rhythm: _Rhythm, times: np.ndarray, ventricular: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-beat ``(beats, 6)`` amplitudes, offsets and widths of the Gaussian waves."""
    amp = _AMP * rng.uniform(0.8, 1.2, 6)
    offset, width = _OFFSET.copy(), _WIDTH * rng.uniform(0.9, 1.1, 6)
    amp[[_Q, _R, _S]] *= rhythm.qrs_scale
    offset[_P] = -rhythm.pr
    if rhythm.af:
        amp[_P] = 0.0
    if rhythm.rbbb:
        # Right ventricle activates late: a broad, late S and a terminal R' (RSR' in V1).
        offset[_S], width[_S] = 0.035, 0.022
        amp[_R2] = rng.uniform(0.4, 0.6) * rhythm.qrs_scale
    n = len(times)
    amp, offset, width = np.tile(amp, (n, 1)), np.tile(offset, (n, 1)), np.tile(width, (n, 1))
    amp[:, _R] *= 1.0 + rng.normal(0, 0.03, n)  # breathing moves the heart a little each beat
    # The QT interval shortens at faster rates (Bazett-like), with the preceding RR as the rate.
    rr_prev = np.diff(times, prepend=times[0] - 60.0 / rhythm.hr)
    offset[:, _T] = _OFFSET[_T] * np.sqrt(np.clip(rr_prev, 0.3, 2.0))
    if ventricular.any():
        focus = rng.choice([-1.0, 1.0])  # left- or right-ventricular ectopic focus
        pvc_amp = np.array([0.0, 0.0, 1.6 * focus, -0.5 * focus, -0.6 * focus, 0.0])
        amp[ventricular] = pvc_amp * rhythm.qrs_scale ** np.array([0, 1, 1, 1, 0, 0])
        offset[ventricular] = [0.0, 0.0, 0.0, 0.07, 0.32, 0.0]
        width[ventricular] = [0.02, 0.01, 0.035, 0.035, 0.08, 0.01]  # wide QRS, broad discordant T
    return amp, offset, width


def _render(times: np.ndarray, amp: np.ndarray, offset: np.ndarray, width: np.ndarray,
            n: int, fs: float) -> np.ndarray:
    """Sum each wave's Gaussians into ``(6, n)`` component signals (each Gaussian cut at 5 widths)."""
    out = np.zeros((6, n))
    half = int(np.ceil(5 * width.max() * fs))
    steps = np.arange(-half, half + 1)
    for w in range(6):
        centre = (times + offset[:, w]) * fs
        idx = np.round(centre).astype(np.int64)[:, None] + steps
        val = amp[:, w, None] * np.exp(-0.5 * ((idx - centre[:, None]) / (width[:, w, None] * fs)) ** 2)
        inside = (idx >= 0) & (idx < n)
        np.add.at(out[w], idx[inside], val[inside])
    return out


def _lead_gains(leads: int, rng: np.random.Generator) -> np.ndarray:
    """``(leads, 6)`` projection of the dipole waves into leads; one lead is the dipole itself."""
    if leads == 1:
        return np.ones((1, 6))
    axis = np.radians(_AXIS + rng.normal(0, 12))  # each heart has its own electrical axis
    limb = np.array([np.cos(axis - np.radians(_LIMB_ANGLE[name])) for name in TWELVE_LEADS[:6]])
    return np.vstack([limb, _CHEST_GAIN.T])


def _band_noise(rng: np.random.Generator, shape: tuple[int, int], fs: float, lo: float, hi: float,
                rms: float | np.ndarray) -> np.ndarray:
    """Gaussian noise limited to ``[lo, hi]`` Hz (random spectrum inside the band), scaled to ``rms`` per row."""
    freqs = np.fft.rfftfreq(shape[1], 1.0 / fs)
    spec = rng.normal(size=(shape[0], len(freqs))) + 1j * rng.normal(size=(shape[0], len(freqs)))
    spec[:, (freqs < lo) | (freqs > min(hi, 0.45 * fs))] = 0.0
    x = np.fft.irfft(spec, n=shape[1], axis=1)
    return x * (np.asarray(rms).reshape(-1, 1) / np.maximum(x.std(axis=1, keepdims=True), 1e-12))


def _mild_noise(leads: int, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Baseline wander (breathing, electrode drift), white sensor noise and a trace of mains hum."""
    t = np.arange(n) / fs
    wander = _band_noise(rng, (leads, n), fs, 0.05, 0.5, rng.uniform(0.03, 0.1, leads))
    white = rng.normal(0, rng.uniform(0.008, 0.02), (leads, n))
    mains = rng.choice([50.0, 60.0])
    hum = rng.uniform(0.0, 0.01, (leads, 1)) * np.sin(2 * np.pi * mains * t + rng.uniform(0, 6.3, (leads, 1)))
    return wander + white + (hum if mains < fs / 2 else 0.0)


def _artefacts(leads: int, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Motion artefact, muscle noise bursts and electrode pops large enough to swamp the ECG."""
    t = np.arange(n) / fs
    motion = _band_noise(rng, (leads, n), fs, 0.3, 3.0, rng.uniform(0.5, 1.5))
    envelope = 0.5 + 0.5 * np.abs(np.sin(np.pi * t * rng.uniform(0.1, 0.4) + rng.uniform(0, 3)))
    emg = _band_noise(rng, (leads, n), fs, 20.0, 100.0, rng.uniform(0.1, 0.3)) * envelope
    pops = np.zeros((leads, n))
    for start in rng.integers(0, n, rng.integers(2, 6)):
        decay = np.exp(-(np.arange(n - start)) / (rng.uniform(0.1, 0.5) * fs))
        pops[:, start:] += rng.uniform(-3.0, 3.0) * decay
    return motion + emg + pops


def _synthesise(rhythm: _Rhythm, n: int, fs: float, rng: np.random.Generator, leads: int) -> np.ndarray:
    if leads not in (1, 12):
        raise ConfigError("leads", f"synthetic ECG has 1 or 12 leads, not {leads}")
    if fs < 100:
        raise ConfigError("fs", f"synthetic ECG needs at least 100 Hz, not {fs:g}")
    times, ventricular = _beat_times(rhythm, n / fs, rng)
    waves = _render(times, *_beat_waves(rhythm, times, ventricular, rng), n=n, fs=fs)
    gains = _lead_gains(leads, rng)
    signal = gains @ waves
    if rhythm.af:
        # Fibrillatory waves: a narrow-band 4-9 Hz atrial oscillation, seen where the P wave would be.
        centre = rng.uniform(5.0, 8.0)
        signal += gains[:, [_P]] * _band_noise(rng, (1, n), fs, centre - 1, centre + 1, rng.uniform(0.03, 0.06))
    if rhythm.noisy:
        signal = signal * rng.uniform(0.3, 0.7) + _artefacts(leads, n, fs, rng)
    return (signal + _mild_noise(leads, n, fs, rng)).astype(np.float32)


def synth_rhythm(kind: str, seconds: float, fs: float, rng: np.random.Generator, leads: int = 1) -> np.ndarray:
    """A ``(leads, round(seconds*fs))`` float32 ECG in mV of a CinC 2017 class: "N", "A", "O" or "~".

    N: sinus rhythm 60-95 bpm with mild HRV and a P wave. A: atrial fibrillation, independent irregular
    RR, no P wave, 4-9 Hz f-waves. O: one of frequent PVCs, ventricular bigeminy, or sinus bradycardia with
    first-degree AV block. ~: sinus rhythm buried under motion artefact, muscle noise and electrode pops.
    ``leads`` is 1 (the dipole itself, lead-II-like) or 12 (I, II, III, aVR, aVL, aVF, V1-V6).
    """
    return _synthesise(_rhythm_for_kind(kind, rng), int(round(seconds * fs)), fs, rng, leads)


def write_wfdb_record(folder: Path, name: str, signal: np.ndarray, fs: float, lead_names: tuple[str, ...],
                      comments: list[str] | None = None) -> None:
    """Write ``signal`` (``(leads, samples)`` in mV) as WFDB record ``folder/name``: format 16, 1000 adu/mV,
    baseline 0 (the challenges' own settings), header ``comments`` as given."""
    digital = np.clip(np.round(signal.astype(np.float64) * 1000.0), -32767, 32767).astype(np.int16)
    n_sig = len(lead_names)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * n_sig, sig_name=list(lead_names), d_signal=digital.T.copy(),
                fmt=["16"] * n_sig, adc_gain=[1000.0] * n_sig, baseline=[0] * n_sig,
                comments=comments, write_dir=str(folder))


def _record_rngs(seed: int, n: int) -> tuple[np.random.Generator, list[np.random.Generator]]:
    """One generator for the folder layout and an independent one per record."""
    layout, *records = np.random.SeedSequence(seed).spawn(n + 1)
    return np.random.default_rng(layout), [np.random.default_rng(s) for s in records]


def write_physionet2017_like(folder: str | Path, n_per_class: dict[str, int] | None = None,
                             seconds: tuple[float, float] = (9.0, 30.0), fs: float = 300.0,
                             seed: int = 0) -> list[tuple[str, str]]:
    """Write a PhysioNet/CinC 2017-style folder: ``S00001.hea/.dat`` (1 lead "ECG", mV), REFERENCE.csv, RECORDS.

    ``n_per_class`` defaults to 5 records of each of N, A, O, ~; durations are uniform in ``seconds``.
    Records are shuffled so that ids do not reveal labels. Returns ``(record_id, label)`` pairs in id order.
    """
    counts = n_per_class if n_per_class is not None else {k: 5 for k in CINC2017_KINDS}
    unknown = [k for k in counts if k not in CINC2017_KINDS]
    if unknown or any(int(v) < 0 for v in counts.values()):
        raise ConfigError("n_per_class", f"expected non-negative counts for {', '.join(CINC2017_KINDS)}, got {counts}")
    lo, hi = seconds
    if not 0 < lo <= hi:
        raise ConfigError("seconds", f"expected 0 < min <= max, got {seconds}")
    labels = [k for k in CINC2017_KINDS for _ in range(int(counts.get(k, 0)))]
    layout, rngs = _record_rngs(seed, len(labels))
    labels = [labels[i] for i in layout.permutation(len(labels))]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (label, rng) in enumerate(zip(labels, rngs), start=1):
        name = f"S{i:05d}"
        signal = synth_rhythm(label, rng.uniform(lo, hi), fs, rng, leads=1)
        write_wfdb_record(folder, name, signal, fs, ("ECG",))
        out.append((name, label))
    with open(folder / "REFERENCE.csv", "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(out)
    (folder / "RECORDS").write_text("".join(f"{name}\n" for name, _ in out))
    return out


def write_cinc2021_like(folder: str | Path, n_records: int, fs: float = 500.0, seconds: float = 10.0,
                        seed: int = 0) -> list[tuple[str, list[str]]]:
    """Write 12-lead CinC 2020/2021-style records ``C00001.hea/.dat`` with Age/Sex/Dx/Rx/Hx header comments.

    Dx codes come from fixed profiles (sinus rhythm, AF, 1st-degree AV block, CRBBB and its equivalent
    RBBB, sinus brady/tachycardia, PVCs, low QRS voltage, and the unscored LVH 164873001); any
    ``n_records >= 8`` holds every profile. The waveform follows the codes. Returns ``(record_id, codes)``.
    """
    if n_records < 1:
        raise ConfigError("n_records", f"expected at least 1 record, got {n_records}")
    layout, rngs = _record_rngs(seed, n_records)
    blocks = -(-n_records // len(_CINC_PROFILES))
    order = np.concatenate([layout.permutation(len(_CINC_PROFILES)) for _ in range(blocks)])[:n_records]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (profile, rng) in enumerate(zip(order, rngs), start=1):
        name, codes = f"C{i:05d}", list(_CINC_PROFILES[profile])
        signal = _synthesise(_rhythm_for_codes(tuple(codes), rng), int(round(seconds * fs)), fs, rng, 12)
        comments = [f"Age: {rng.integers(18, 90)}", f"Sex: {rng.choice(['Male', 'Female'])}",
                    f"Dx: {','.join(codes)}", "Rx: Unknown", "Hx: Unknown"]
        write_wfdb_record(folder, name, signal, fs, TWELVE_LEADS, comments)
        out.append((name, codes))
    return out


@dataclass(frozen=True)
class SyntheticECGConfig:
    """Size of a synthetic PhysioNet-2017-like data set (the ``synthetic-ecg[:PRESET]`` data SPEC)."""

    n_per_class: int
    seconds: tuple[float, float]
    fs: float = 300.0

    @staticmethod
    @preset()
    def small() -> "SyntheticECGConfig":
        """80 records of 9-15 s: enough for a smoke search in seconds."""
        return SyntheticECGConfig(n_per_class=20, seconds=(9.0, 15.0))

    @staticmethod
    @preset()
    def medium() -> "SyntheticECGConfig":
        """600 records of 9-30 s: enough for the classes to be learned, not just fitted."""
        return SyntheticECGConfig(n_per_class=150, seconds=(9.0, 30.0))


def synthetic_ecg_folder(cache_root: str | Path, preset: str | SyntheticECGConfig = "small",
                         seed: int = 0) -> Path:
    """Path of a PhysioNet-2017-like folder under ``cache_root`` for ``preset`` and ``seed``, written once.

    The folder name includes a hash of the config and ``GENERATOR_VERSION``; it is written to a temporary
    folder and renamed into place, so a crash or a concurrent writer never leaves a half-written data set.
    """
    if isinstance(preset, SyntheticECGConfig):
        config, label = preset, "custom"
    else:
        config, label = named(SyntheticECGConfig, preset, "preset"), preset
    key = hashlib.sha256(repr((GENERATOR_VERSION, asdict(config), seed)).encode()).hexdigest()[:10]
    root = Path(cache_root)
    final = root / f"synthetic-ecg-{label}-seed{seed}-{key}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        write_physionet2017_like(tmp, {k: config.n_per_class for k in CINC2017_KINDS}, config.seconds,
                                 config.fs, seed)
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache folder should be readable like any other
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():  # a concurrent writer winning the rename is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
