"""The cold-start data layer: batch-time normalisation equals normalising whole records, one filter pass per
filter setting, progress, and a DataContext that computes nothing after ``prepare_all``."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from n2nas.data import cache as cache_mod
from n2nas.data.cache import prepare, prepare_variants
from n2nas.data.prepared import PreparedSignals
from n2nas.data.preprocess import (NORMALISATIONS, Designs, PreprocessConfig, bandpass, quartiles, remove_baseline,
                                   resample)
from n2nas.data.readers import load_physionet2017
from n2nas.data.record import Dataset, Record
from n2nas.data.windows import WindowConfig, eval_windows, global_stats, train_windows
from n2nas.errors import DataError
from n2nas.train.primitives import DataContext
from tests.helpers import prepared_from_arrays, preprocess_record

WINDOWS = (WindowConfig(seconds=5), WindowConfig(seconds=40), WindowConfig(mode="beats", n_beats=5, beat_samples=130))


@pytest.fixture
def real_ds(mini2017):
    """8 real records plus a 4 s one, shorter than every crop below."""
    ds = load_physionet2017(mini2017)
    first = ds.records[0]
    short = dataclasses.replace(first, id="short", signal=first.signal[:, :int(4 * first.fs)])
    return dataclasses.replace(ds, records=ds.records + (short,))


def two_lead_ds() -> Dataset:
    """Two 2-lead records (one with a flat lead, one short) at a rate the search never uses."""
    t = np.arange(4000) / 250.0
    beats = np.where((t % 0.8) < 0.04, 1.5, 0.0) + 0.3 * np.sin(2 * np.pi * 0.3 * t)
    a = np.vstack([beats + 2.0, np.full_like(t, 0.7)]).astype(np.float32)
    b = np.vstack([np.sin(2 * np.pi * 7 * t[:900]), 3 * np.cos(2 * np.pi * 2 * t[:900])]).astype(np.float32)
    recs = tuple(Record(rid, sig, 250.0, ("I", "II"), ("x",)) for rid, sig in (("a", a), ("b", b)))
    return Dataset("two-lead", recs, ("x",), False, "fp-two-lead")


def reference(ds: Dataset, cfg: PreprocessConfig) -> PreparedSignals:
    """Today's semantics: every whole record filtered, resampled and normalised before any window is cut."""
    out = [preprocess_record(r, cfg) for r in ds.records]
    return prepared_from_arrays(ds.ids, cfg.fs, [s for s, _ in out], [p for _, p in out] if cfg.rpeaks else None)


def assert_same_windows(new: PreparedSignals, ref: PreparedSignals, windows=WINDOWS):
    for window in windows:
        if window.mode == "beats" and new.rpeaks is None:
            continue
        every = np.arange(len(new))
        a = train_windows(new, every, window, np.random.default_rng(7))
        b = train_windows(ref, every, window, np.random.default_rng(7))
        assert np.allclose(a, b, rtol=1e-5, atol=1e-5), (window, np.abs(a - b).max())
        for i in every:
            a, b = eval_windows(new, int(i), window), eval_windows(ref, int(i), window)
            assert a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-5), (window, i)


@pytest.mark.parametrize("normalise", NORMALISATIONS)
def test_batch_time_normalisation_equals_normalising_whole_records(real_ds, normalise):
    cfg = PreprocessConfig(fs=150, baseline="median", normalise=normalise, rpeaks=True)
    new = prepare(real_ds, cfg)
    ref = reference(real_ds, cfg)
    assert np.array_equal(new.lengths, ref.lengths) and np.array_equal(new.rpeaks, ref.rpeaks)
    assert_same_windows(new, ref)
    short = eval_windows(new, len(new) - 1, WindowConfig(seconds=5))[0]
    assert (short == 0).all(axis=0).sum() == 150  # 1 s of zero padding around the 4 s record, as before
    for i in (0, len(new) - 1):
        assert np.allclose(new.signal(i), ref.signal(i), rtol=1e-5, atol=1e-5)
    if normalise == "global_z":
        train = np.arange(0, len(new), 2)
        g_new, g_ref = global_stats(new, train), global_stats(ref, train)
        assert np.allclose(g_new.mean, g_ref.mean, atol=1e-5) and np.allclose(g_new.std, g_ref.std, rtol=1e-4)


@pytest.mark.parametrize("normalise", ["record_z", "robust", "minmax"])
def test_batch_normalisation_is_per_lead_and_keeps_flat_leads_finite(normalise):
    ds = two_lead_ds()
    cfg = PreprocessConfig(fs=100, band=None, normalise=normalise)
    new = prepare(ds, cfg)
    assert_same_windows(new, reference(ds, cfg), windows=WINDOWS[:2])
    assert np.isfinite(eval_windows(new, 0, WindowConfig(seconds=5))).all()


def test_prepare_variants_runs_one_pass_per_filter_and_reports_progress(small_ds, tmp_path, monkeypatch):
    configs = [PreprocessConfig(fs=fs, band=band, baseline="none", normalise=norm, rpeaks=rp)
               for fs in (100, 150) for band in (None, (0.5, 40.0)) for norm in ("record_z", "global_z")
               for rp in (False, True)]
    plans, calls = [], []
    real = cache_mod.run_pass
    monkeypatch.setattr(cache_mod, "run_pass", lambda records, plan, *a, **k: plans.append(plan)
                        or real(records, plan, *a, **k))
    out = prepare_variants(small_ds, configs, tmp_path, workers=2, progress=lambda *c: calls.append(c))
    assert len(plans) == 2 and sorted(p.rates for p in plans) == [(100, 150), (100, 150)]
    assert [p.peaks for p in plans if p.band is not None] == [True]  # peaks ride with the R-peak filter's pass
    done = [c[0] for c in calls if "records" not in c[2]]
    assert done == [1, 2, 3, 4, 5] and all(c[1] == 5 for c in calls)  # 4 signal entries + R peaks
    serial = {cfg: prepare(small_ds, cfg) for cfg in configs[::3]}  # fresh, in memory, one process
    for cfg, prepared in serial.items():
        got = out[cfg]
        assert got.normalise == cfg.normalise and (got.rpeaks is not None) == cfg.rpeaks
        assert np.array_equal(np.asarray(got.data), prepared.data) and np.array_equal(got.stats, prepared.stats)
    plans.clear()
    calls.clear()
    again = prepare_variants(small_ds, configs, tmp_path, workers=2, progress=lambda *c: calls.append(c))
    assert plans == [] and calls == [(5, 5, "already cached")]
    assert np.array_equal(again[configs[-1]].rpeaks, out[configs[-1]].rpeaks)


def test_a_long_pass_reports_records_done_between_variants(small_ds, monkeypatch):
    from n2nas.data import passes

    monkeypatch.setattr(passes, "TICK_S", 0.0)  # report after every chunk instead of every ~10 s
    calls = []
    prepare_variants(small_ds, [PreprocessConfig(fs=100)], workers=1, progress=lambda *c: calls.append(c))
    ticks = [c for c in calls if c[2].endswith("records")]
    assert ticks and all(c[:2] == (0, 1) for c in ticks)
    counts = [int(c[2].rsplit(": ", 1)[1].split("/")[0]) for c in ticks]
    assert counts == sorted(counts) and counts[-1] <= len(small_ds) and calls[-1][:2] == (1, 1)


def test_lazy_prepare_computes_only_its_own_filter_and_rate(small_ds, tmp_path, monkeypatch):
    plans = []
    real = cache_mod.run_pass
    monkeypatch.setattr(cache_mod, "run_pass", lambda records, plan, *a, **k: plans.append(plan)
                        or real(records, plan, *a, **k))
    prepare(small_ds, PreprocessConfig(fs=100, baseline="median", normalise="minmax"), cache_dir=tmp_path)
    assert [(p.baseline, p.rates, p.peaks) for p in plans] == [("median", (100,), False)]


def test_data_context_prepare_all_then_pipeline_data_computes_nothing(small_ds, tmp_path, monkeypatch):
    configs = [PreprocessConfig(fs=100, normalise=n, rpeaks=n == "robust") for n in ("record_z", "global_z", "robust")]
    ctx = DataContext(small_ds, np.arange(6), np.arange(6, 8), tmp_path, workers=1)
    seen = []
    ctx.prepare_all(configs, progress=lambda *c: seen.append(c))
    assert seen[-1][:2] == (2, 2)

    def boom(*_a, **_k):
        raise AssertionError("computed data after prepare_all")

    monkeypatch.setattr(cache_mod, "prepare_variants", boom)
    monkeypatch.setattr(cache_mod, "run_pass", boom)
    for cfg in configs:
        data = ctx.pipeline_data(cfg, WindowConfig(seconds=5))
        x, y = data.train_batch(np.arange(4), np.random.default_rng(0))
        assert x.shape == (4, 1, 500) and np.isfinite(x).all() and len(y) == 4
        assert (data.stats is not None) == (cfg.normalise == "global_z")
    monkeypatch.undo()
    lazy = DataContext(small_ds, np.arange(6), np.arange(6, 8), tmp_path / "other", workers=1)
    direct = lazy.pipeline_data(configs[1], WindowConfig(seconds=5))  # no prepare_all: prepares just this one
    assert np.allclose(direct.stats.mean, ctx.pipeline_data(configs[1], WindowConfig(seconds=5)).stats.mean)


def test_filter_designs_and_per_lead_median_filter_give_the_same_numbers(small_ds):
    designs = Designs()
    for rec in small_ds.records[:3]:
        x = np.asarray(rec.signal, np.float64)
        assert np.array_equal(resample(x, rec.fs, 150, designs), resample(x, rec.fs, 150))
        assert np.array_equal(bandpass(x, rec.fs, 0.5, 40, designs=designs), bandpass(x, rec.fs, 0.5, 40))
        two_d = ndimage.median_filter(ndimage.median_filter(x, size=(1, 61), mode="nearest"), size=(1, 181),
                                      mode="nearest")
        assert np.array_equal(remove_baseline(x, rec.fs), x - two_d)  # de Chazal's 200 ms / 600 ms at 300 Hz


def test_quartiles_equal_numpy_percentile():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 4, 5, 8, 999, 1000, 9001):
        x = np.round(rng.normal(size=(2, n)), 2 if n > 500 else 6)  # ties included
        assert np.array_equal(quartiles(x), np.percentile(x, [25, 50, 75], axis=-1))


def test_bad_inputs_give_one_line_errors(small_ds):
    mixed = dataclasses.replace(small_ds, records=small_ds.records[:1] + two_lead_ds().records[:1])
    with pytest.raises(DataError, match="different numbers of leads"):
        prepare(mixed, PreprocessConfig(fs=100))
    with pytest.raises(DataError, match="no records"):
        prepare(dataclasses.replace(small_ds, records=()), PreprocessConfig(fs=100))
    with pytest.raises(ValueError, match="statistics"):
        PreparedSignals(("a",), 100.0, np.zeros((1, 5), np.float32), np.array([0, 5]), normalise="robust")


@pytest.fixture
def small_ds(mini2017):
    return load_physionet2017(mini2017)
