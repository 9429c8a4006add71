"""Synthetic WFDB data: files round-trip through wfdb and the real readers, and rhythms are measurably distinct."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import wfdb
from wfdb import processing

from n2nas.data.readers import load_cinc2021, load_physionet2017
from n2nas.data.snomed import default_scoring_table
from n2nas.data.synthetic import (AF, CRBBB, IAVB, LVH, RBBB, SR, TWELVE_LEADS, SyntheticECGConfig,
                                  synth_rhythm, synthetic_ecg_folder, write_cinc2021_like,
                                  write_physionet2017_like)
from n2nas.errors import ConfigError


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _beats(signal: np.ndarray, fs: float) -> np.ndarray:
    return processing.xqrs_detect(signal, fs, verbose=False)


def _rr_cv(signal: np.ndarray, fs: float) -> float:
    rr = np.diff(_beats(signal, fs))
    return float(rr.std() / rr.mean())


def _p_window_energy(signal: np.ndarray, fs: float) -> float:
    """Energy of the beat-averaged 300-70 ms pre-R window: a P wave survives averaging, f-waves cancel."""
    a, b = int(0.30 * fs), int(0.07 * fs)
    avg = np.mean([signal[r - a:r - b] for r in _beats(signal, fs) if r >= a], axis=0)
    x = np.arange(len(avg))
    avg = avg - np.polyval(np.polyfit(x, avg, 1), x)  # the tail of the previous T wave is a slope, not a P wave
    return float(np.mean(avg ** 2))


@pytest.fixture(scope="module")
def cinc2017(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cinc2017")
    pairs = write_physionet2017_like(folder, {"N": 6, "A": 6, "O": 3, "~": 3}, seconds=(9, 14), seed=3)
    return folder, pairs


@pytest.fixture(scope="module")
def cinc2021(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cinc2021")
    return folder, write_cinc2021_like(folder, 16, seed=1)


def test_physionet2017_like_round_trips_through_wfdb(cinc2017):
    folder, pairs = cinc2017
    assert [rid for rid, _ in pairs] == [f"S{i:05d}" for i in range(1, 19)]
    with open(folder / "REFERENCE.csv", newline="") as fh:
        assert [tuple(row) for row in csv.reader(fh)] == pairs  # no header row, same order as returned
    assert (folder / "RECORDS").read_text().split() == [rid for rid, _ in pairs]
    for rid, _ in pairs:
        rec = wfdb.rdrecord(str(folder / rid))
        assert (rec.fs, rec.n_sig, rec.sig_name, rec.units, rec.fmt) == (300, 1, ["ECG"], ["mV"], ["16"])
        assert rec.adc_gain == [1000.0] and 9 * 300 <= rec.sig_len <= 14 * 300
        assert 0.2 < np.ptp(rec.p_signal) < 30
    data = load_physionet2017(folder)
    assert {r.id: r.labels for r in data.records} == {rid: (lab,) for rid, lab in pairs}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    counts = {"N": 1, "A": 1, "O": 1, "~": 1}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_physionet2017_like(tmp_path / name, counts, seconds=(9, 10), seed=seed)
    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert any(a[k] != c[k] for k in a if k.endswith(".dat"))
    write_cinc2021_like(tmp_path / "d", 2, seed=5)
    write_cinc2021_like(tmp_path / "e", 2, seed=5)
    assert _file_bytes(tmp_path / "d") == _file_bytes(tmp_path / "e")


def test_af_is_irregular_and_has_no_p_wave_while_sinus_rhythm_does(cinc2017):
    folder, pairs = cinc2017
    stats: dict[str, list[tuple[float, float, float]]] = {"N": [], "A": []}
    for rid, label in pairs:
        if label in stats:
            sig = wfdb.rdrecord(str(folder / rid)).p_signal[:, 0]
            hr = 60.0 * 300 / np.median(np.diff(_beats(sig, 300)))
            stats[label].append((_rr_cv(sig, 300), hr, _p_window_energy(sig, 300)))
    n, a = np.array(stats["N"]), np.array(stats["A"])
    assert np.all((n[:, 1] > 55) & (n[:, 1] < 105))
    assert np.median(n[:, 0]) < 0.06 and np.median(a[:, 0]) > 0.12
    assert np.median(a[:, 0]) > 4 * np.median(n[:, 0])
    assert np.median(n[:, 2]) > 5 * np.median(a[:, 2])


def test_noisy_class_is_dominated_by_artefact(cinc2017):
    folder, pairs = cinc2017
    spread = {lab: [] for lab in "N~"}
    for rid, label in pairs:
        if label in spread:
            spread[label].append(np.std(wfdb.rdrecord(str(folder / rid)).p_signal))
    assert min(spread["~"]) > 2 * max(spread["N"])


def test_synth_rhythm_shapes_and_lead_projection():
    rng = np.random.default_rng(0)
    one = synth_rhythm("O", 5, 250, rng)
    assert one.shape == (1, 1250) and one.dtype == np.float32
    twelve = synth_rhythm("N", 4, 500, rng, leads=12)
    assert twelve.shape == (12, 2000)
    ii, avr = twelve[TWELVE_LEADS.index("II")], twelve[TWELVE_LEADS.index("aVR")]
    assert np.corrcoef(ii, avr)[0, 1] < -0.5  # aVR looks at the heart from the opposite side
    with pytest.raises(ConfigError):
        synth_rhythm("X", 5, 300, rng)
    with pytest.raises(ConfigError):
        synth_rhythm("N", 5, 300, rng, leads=3)


def test_cinc2021_like_headers_codes_and_signals(cinc2021):
    folder, records = cinc2021
    codes = {c for _, cs in records for c in cs}
    assert {SR, AF, IAVB, CRBBB, RBBB, LVH} <= codes and all(cs for _, cs in records)
    table = default_scoring_table()
    assert table.class_of(LVH) is None and table.class_of(CRBBB) == table.class_of(RBBB) is not None
    cv = {"af": [], "sr": []}
    for rid, cs in records:
        rec = wfdb.rdrecord(str(folder / rid))
        assert (rec.fs, rec.sig_len, tuple(rec.sig_name)) == (500, 5000, TWELVE_LEADS)
        assert set(rec.units) == {"mV"}
        assert rec.comments[:3] == [rec.comments[0], rec.comments[1], f"Dx: {','.join(cs)}"]
        assert rec.comments[0].startswith("Age: ") and rec.comments[1] in ("Sex: Male", "Sex: Female")
        if AF in cs or cs == [SR]:
            cv["af" if AF in cs else "sr"].append(_rr_cv(rec.p_signal[:, 1], 500))
    assert min(cv["af"]) > 2 * max(cv["sr"])  # the AF code is visible in the rhythm
    data = load_cinc2021(folder)
    merged = table.class_of(RBBB)
    by_id = {r.id: r for r in data.records}
    for rid, cs in records:
        if CRBBB in cs or RBBB in cs:
            assert merged in by_id[rid].labels
        if LVH in cs:
            assert by_id[rid].meta["unscored_dx"] == [LVH]


def test_synthetic_ecg_folder_is_written_once(tmp_path):
    first = synthetic_ecg_folder(tmp_path, preset="small", seed=0)
    stamps = {p.name: p.stat().st_mtime_ns for p in [first, *first.iterdir()]}
    assert synthetic_ecg_folder(tmp_path, preset="small", seed=0) == first
    assert {p.name: p.stat().st_mtime_ns for p in [first, *first.iterdir()]} == stamps
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary folder left behind
    data = load_physionet2017(first)
    assert len(data.records) == 4 * SyntheticECGConfig.small().n_per_class
    assert synthetic_ecg_folder(tmp_path, preset="small", seed=1) != first
    with pytest.raises(ConfigError):
        synthetic_ecg_folder(tmp_path, preset="fs")
