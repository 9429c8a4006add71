"""Preprocessing ops measured on signals with known content, and the cache contract."""
from __future__ import annotations

import numpy as np
import pytest

from n2nas.data import cache as cache_mod
from n2nas.data.cache import prepare
from n2nas.data.preprocess import (PreprocessConfig, bandpass, detect_rpeaks, normalise_record, remove_baseline,
                                   resample)
from n2nas.data.readers import load_physionet2017
from n2nas.data.record import Dataset, Record
from n2nas.errors import ConfigError
from tests.conftest import copy_sample_records
from tests.helpers import preprocess_record


def tone(freq, fs, seconds=10.0, amp=1.0):
    t = np.arange(int(fs * seconds)) / fs
    return amp * np.sin(2 * np.pi * freq * t)[None, :]


def peak_freq(x, fs):
    spec = np.abs(np.fft.rfft(x[0]))
    return np.fft.rfftfreq(x.shape[-1], 1 / fs)[np.argmax(spec)]


def power_at(x, fs, freq):
    spec = np.abs(np.fft.rfft(x[0])) ** 2
    f = np.fft.rfftfreq(x.shape[-1], 1 / fs)
    return spec[np.argmin(np.abs(f - freq))]


def test_resample_keeps_frequency_and_scales_length():
    x = tone(10, 300)
    y = resample(x, 300, 100)
    assert y.shape[-1] == x.shape[-1] // 3
    assert peak_freq(y, 100) == pytest.approx(10, abs=0.1)
    assert resample(x, 300, 300) is x


def test_bandpass_removes_drift_and_hum_keeps_band_and_phase():
    fs = 300
    x = tone(10, fs) + tone(0.1, fs, amp=3) + tone(60, fs, amp=0.5)
    y = bandpass(x, fs, 0.5, 40)
    assert power_at(y, fs, 10) / power_at(x, fs, 10) > 0.95
    assert power_at(y, fs, 0.1) / power_at(x, fs, 0.1) < 1e-3
    assert power_at(y, fs, 60) / power_at(x, fs, 60) < 1e-2
    spike = np.zeros((1, 3000))
    spike[0, 1500] = 1
    assert int(np.argmax(bandpass(spike, fs, 0.5, 40)[0])) == 1500  # zero phase: no shift
    with pytest.raises(ConfigError):
        bandpass(x, fs, 40, 10)


def test_median_baseline_removal_flattens_a_ramp():
    fs = 300
    ramp = np.linspace(0, 5, 3000)[None, :]
    out = remove_baseline(ramp + tone(15, fs, seconds=10, amp=0.2), fs)
    assert np.abs(np.polyfit(np.arange(3000), out[0], 1)[0]) * 3000 < 0.05  # < 0.05 mV of trend left


@pytest.mark.parametrize("method", ["record_z", "robust", "minmax", "none", "global_z"])
def test_normalisations_have_their_defining_property(method):
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(3, 2, 5000), np.full(5000, 7.0)])  # second lead flat
    y = normalise_record(x, method)
    assert np.isfinite(y).all()
    if method == "record_z":
        assert y[0].mean() == pytest.approx(0, abs=1e-9) and y[0].std() == pytest.approx(1, abs=1e-9)
    if method == "robust":
        q25, q50, q75 = np.percentile(y[0], [25, 50, 75])
        assert q50 == pytest.approx(0, abs=1e-9) and q75 - q25 == pytest.approx(1, abs=1e-9)
    if method == "minmax":
        assert y[0].min() == pytest.approx(-1) and y[0].max() == pytest.approx(1)
    if method in ("none", "global_z"):
        assert y is x  # global z-score happens at batch time with training statistics


def test_rpeaks_on_a_real_record_are_plausible_and_on_local_extrema():
    ds = load_physionet2017(copy_sample_records_tmp())
    rec = ds.records[0]
    peaks = detect_rpeaks(rec.signal.astype(float), rec.fs)
    bpm = 60 * len(peaks) / rec.duration_s
    assert 35 < bpm < 200
    x = bandpass(rec.signal.astype(float), rec.fs, 0.5, 40)[0]
    w = int(0.05 * rec.fs)
    local = [np.abs(x[max(p - w, 0):p + w + 1]).max() for p in peaks]
    assert np.mean(np.isclose(np.abs(x[peaks]), local, rtol=0.2)) > 0.8


def test_rpeaks_recover_a_spike_train():
    fs = 300
    x = np.zeros((1, 20 * fs))
    truth = np.arange(150, 20 * fs - 150, 240)  # 75 bpm
    for p in truth:
        x[0, p - 6:p + 7] += np.hanning(13) * 1.5
    found = detect_rpeaks(x, fs)
    assert len(found) >= len(truth) - 2
    dist = np.abs(found[:, None] - truth[None, :]).min(axis=1)
    assert np.median(dist) <= 3


def copy_sample_records_tmp():
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    copy_sample_records(folder, per_class=1)
    return folder


@pytest.fixture
def small_ds(mini2017):
    return load_physionet2017(mini2017)


def test_cache_hit_skips_preprocessing(small_ds, tmp_path, monkeypatch):
    cfg = PreprocessConfig(fs=150)
    first = prepare(small_ds, cfg, cache_dir=tmp_path)

    def boom(*_a, **_k):
        raise AssertionError("preprocessed again despite a cache entry")

    monkeypatch.setattr(cache_mod, "run_pass", boom)
    second = prepare(small_ds, cfg, cache_dir=tmp_path)
    assert np.array_equal(first.data, second.data) and np.array_equal(first.offsets, second.offsets)
    assert second.ids == first.ids and isinstance(second.data, np.memmap)
    robust = prepare(small_ds, PreprocessConfig(fs=150, normalise="robust"), cache_dir=tmp_path)
    assert robust.data.filename == second.data.filename  # normalisation shares the entry: applied per window


def test_cache_key_follows_signal_tokens_and_files(small_ds, mini2017):
    a = cache_mod.cache_key(small_ds, PreprocessConfig(fs=150))
    assert a != cache_mod.cache_key(small_ds, PreprocessConfig(fs=300))
    assert a != cache_mod.cache_key(small_ds, PreprocessConfig(fs=150, baseline="median"))
    assert a != cache_mod.cache_key(small_ds, PreprocessConfig(fs=150, band=None))
    assert a == cache_mod.cache_key(small_ds, PreprocessConfig(fs=150, normalise="robust", rpeaks=True))
    hea = next(mini2017.glob("*.hea"))
    hea.write_text(hea.read_text() + "# touched\n")
    assert cache_mod.cache_key(load_physionet2017(mini2017), PreprocessConfig(fs=150)) != a


def test_parallel_equals_serial_and_rpeaks_are_kept(small_ds, tmp_path):
    cfg = PreprocessConfig.diagnosenet()
    serial = prepare(small_ds, cfg)
    parallel = prepare(small_ds, cfg, cache_dir=tmp_path, workers=2)
    reloaded = prepare(small_ds, cfg, cache_dir=tmp_path)
    for other in (parallel, reloaded):
        assert np.array_equal(serial.data, other.data)
        assert np.array_equal(serial.rpeaks, other.rpeaks)
    assert all(len(serial.peaks(i)) > 5 for i in range(len(serial)))


def test_crash_while_storing_leaves_no_entry(small_ds, tmp_path, monkeypatch):
    cfg = PreprocessConfig(fs=100)
    store = tmp_path / "cache"

    def crash(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(small_ds, cfg, cache_dir=store)
    assert list(store.iterdir()) == []
    monkeypatch.undo()
    prepare(small_ds, cfg, cache_dir=store)
    assert (store / cache_mod.cache_key(small_ds, cfg) / "meta.json").is_file()


def test_flat_lead_does_not_poison_preprocessing():
    sig = np.vstack([np.sin(np.linspace(0, 50, 3000)), np.zeros(3000)]).astype(np.float32)
    ds = Dataset("t", (Record("r", sig, 300.0, ("I", "II"), ("x",)),), ("x",), False, "fp")
    out = prepare(ds, PreprocessConfig(fs=100, baseline="median", rpeaks=True))
    assert np.isfinite(out.data).all()


def test_rpeaks_detected_once_per_dataset_and_equal_to_fresh_detection(small_ds, tmp_path, monkeypatch):
    from n2nas.data import passes

    cfg = PreprocessConfig(fs=150, rpeaks=True)
    first = prepare(small_ds, cfg, cache_dir=tmp_path)
    fresh = [preprocess_record(r, cfg)[1] for r in small_ds.records]
    assert all(np.array_equal(first.peaks(i), p) for i, p in enumerate(fresh))

    calls = []
    real = passes.detect_rpeaks
    monkeypatch.setattr(passes, "detect_rpeaks", lambda *a: calls.append(1) or real(*a))
    for other in (PreprocessConfig(fs=100, normalise="robust", rpeaks=True),
                  PreprocessConfig(fs=100, band=None, baseline="median", rpeaks=True)):
        got = prepare(small_ds, other, cache_dir=tmp_path)
        expect = [preprocess_record(r, other)[1] for r in small_ds.records]
        assert all(np.array_equal(got.peaks(i), p) for i, p in enumerate(expect))
    assert calls == []  # any rate, filter or normalisation: the native-rate peaks of the dataset, rescaled
    assert prepare(small_ds, PreprocessConfig(fs=100), cache_dir=tmp_path).rpeaks is None
