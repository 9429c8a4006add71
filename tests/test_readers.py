"""Readers on real PhysioNet 2017 / CinC 2021 files, and every bad input the issue lists."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from n2nas.data.readers import load_cinc2021, load_physionet2017, load_wfdb_csv
from n2nas.data.spec import bundled_sample_dir, load_dataset
from n2nas.errors import DataError

CINC2021 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cinc2021-sample"


def test_bundled_sample_reads_as_mv_float32():
    ds = load_dataset("sample")
    assert len(ds) == 300 and not ds.multilabel
    assert ds.classes == ("N", "A", "O", "~")
    counts = {c: int(n) for c, n in zip(ds.classes, np.bincount(ds.label_indices(), minlength=4))}
    assert counts == {"N": 140, "A": 60, "O": 75, "~": 25}
    rec = ds.records[0]
    assert rec.signal.dtype == np.float32 and rec.signal.shape[0] == 1 and rec.fs == 300
    # AliveCor recordings in mV: QRS amplitudes of a few tenths to a few mV, never thousands (ADC units)
    ptp = np.ptp(rec.signal)
    assert 0.2 < ptp < 20


def test_fingerprint_changes_when_a_file_changes(mini2017):
    before = load_physionet2017(mini2017).fingerprint
    assert load_physionet2017(mini2017).fingerprint == before
    hea = next(mini2017.glob("*.hea"))
    os.utime(hea, ns=(hea.stat().st_atime_ns, hea.stat().st_mtime_ns + 10**9))
    assert load_physionet2017(mini2017).fingerprint != before


@pytest.mark.skipif(not CINC2021.is_dir(), reason="shared CinC 2021 sample not present")
def test_cinc2021_multilabel_with_equivalent_codes():
    ds = load_cinc2021(CINC2021)
    assert len(ds) == 50 and ds.multilabel
    assert {len(r.leads) for r in ds.records} == {12}
    by_id = {r.id: r for r in ds.records}
    rbbb = [r for r in ds.records if "59118001" in r.meta["dx"] or "713427006" in r.meta["dx"]]
    assert rbbb and all("713427006|59118001" in r.labels for r in rbbb)
    # E07500 has Dx 67741000119109 (unscored) and 426177001 (scored sinus bradycardia)
    assert by_id["E07500"].labels == ("426177001",)
    assert by_id["E07500"].meta["unscored_dx"] == ["67741000119109"]
    y = ds.label_matrix()
    assert y.shape == (50, len(ds.classes)) and y.sum() >= 50


def test_wfdb_csv_single_and_multi_label(mini2017, tmp_path):
    ids = sorted(p.stem for p in mini2017.glob("*.hea"))
    single = tmp_path / "single.csv"
    single.write_text("record,label\n" + "".join(f"{r},{'x' if i % 2 else 'y'}\n" for i, r in enumerate(ids)))
    ds = load_wfdb_csv(mini2017, single)
    assert not ds.multilabel and ds.classes == ("x", "y") and len(ds) == len(ids)
    multi = tmp_path / "multi.csv"
    multi.write_text("".join(f"{r},a;b\n" if i == 0 else f"{r},a\n" for i, r in enumerate(ids)))
    ds = load_wfdb_csv(mini2017, multi)
    assert ds.multilabel and ds.label_matrix().sum() == len(ids) + 1


def _corrupt(case: str, folder: Path) -> str:
    """Apply one bad-input case to a copy of the mini folder; return the text the error must contain."""
    ref = folder / "REFERENCE.csv"
    first = ref.read_text().splitlines()[0].split(",")[0]
    if case == "missing_hea":
        (folder / f"{first}.hea").unlink()
        return f"{first}.hea: header file is missing"
    if case == "missing_mat":
        (folder / f"{first}.mat").unlink()
        return f"{first}.mat: signal file named in {first}.hea is missing"
    if case == "truncated_mat":
        mat = folder / f"{first}.mat"
        mat.write_bytes(mat.read_bytes()[:1000])
        return f"{first}.mat: signal file is truncated"
    if case == "header_length":
        hea = folder / f"{first}.hea"
        parts = hea.read_text().split("\n", 1)
        fields = parts[0].split()
        fields[3] = str(int(fields[3]) // 2)
        hea.write_text(" ".join(fields) + "\n" + parts[1])
        return f"{first}.mat: signal file is longer than its header says"
    if case == "header_fs":
        hea = folder / f"{first}.hea"
        hea.write_text(hea.read_text().replace(" 300 ", " 500 ", 1))
        return f"{first}.hea: header says 500 Hz but this data set is 300 Hz"
    if case == "unknown_label":
        ref.write_text(ref.read_text().replace(f"{first},N", f"{first},X", 1))
        return "REFERENCE.csv:1: unknown label 'X'"
    if case == "listed_without_files":
        ref.write_text(ref.read_text() + "A99999,N\n")
        return "A99999.hea: header file is missing"
    if case == "nan_signal":
        # -32768 is WFDB's invalid-sample marker for format 16; rdrecord turns it into NaN
        mat = folder / f"{first}.mat"
        raw = bytearray(mat.read_bytes())
        raw[24 + 200:24 + 202] = (-32768).to_bytes(2, "little", signed=True)
        mat.write_bytes(bytes(raw))
        return f"{first}.mat: signal contains NaN"
    if case == "flat_signal":
        mat = folder / f"{first}.mat"
        raw = mat.read_bytes()
        mat.write_bytes(raw[:24] + bytes(len(raw) - 24))
        return f"{first}.mat: signal is flat"
    if case == "shorter_than_window":
        return "shorter than the 100 s minimum window"
    if case == "empty_folder":
        for f in folder.iterdir():
            f.unlink()
        return f"{folder}: no records found"
    if case == "unreadable_path":
        return "/no/such/place: no such folder"
    raise AssertionError(case)


BAD_CASES = ["missing_hea", "missing_mat", "truncated_mat", "header_length", "header_fs", "unknown_label",
             "listed_without_files", "nan_signal", "flat_signal", "shorter_than_window", "empty_folder",
             "unreadable_path"]


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "n2nas.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_clear_line_and_exit_2(case, mini2017):
    expected = _corrupt(case, mini2017)
    folder = "/no/such/place" if case == "unreadable_path" else str(mini2017)
    min_s = "100" if case == "shorter_than_window" else "1"
    with pytest.raises(DataError) as info:
        load_physionet2017(folder, min_seconds=float(min_s))
    assert expected in str(info.value)
    proc = _run_cli("data", "summary", f"physionet2017:{folder}", "--min-seconds", min_s)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and proc.stdout == ""


@pytest.mark.parametrize("case", ["missing_mat", "truncated_mat", "unknown_label", "nan_signal", "flat_signal"])
def test_skip_bad_goes_on_and_lists_the_file(case, mini2017):
    expected = _corrupt(case, mini2017)
    proc = _run_cli("data", "summary", f"physionet2017:{mini2017}", "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_records"] == 7
    assert len(out["skipped"]) == 1
    skipped = out["skipped"][0]
    assert expected in f"{skipped['file']}: {skipped['reason']}"


def test_cinc2021_header_without_dx_is_bad(tmp_path):
    src = bundled_sample_dir()
    for ext in (".hea", ".mat"):
        (tmp_path / f"A00001{ext}").write_bytes((src / f"{sorted(src.glob('*.hea'))[0].stem}{ext}").read_bytes())
    hea = tmp_path / "A00001.hea"
    hea.write_text(hea.read_text().replace(hea.read_text().split()[0], "A00001", 1))
    mat_name = hea.read_text().splitlines()[1].split()[0]
    hea.write_text(hea.read_text().replace(mat_name, "A00001.mat"))
    with pytest.raises(DataError, match=r"A00001\.hea: no '# Dx:' diagnosis line"):
        load_cinc2021(tmp_path)


def test_summary_counts_records_never_seen(tmp_path):
    """Synthetic records written as real WFDB files: the summary must report exactly what was written."""
    from n2nas.data.synthetic import write_physionet2017_like

    written = write_physionet2017_like(tmp_path, {"N": 7, "A": 3, "O": 5, "~": 2}, seconds=(9, 12), seed=4)
    proc = _run_cli("data", "summary", f"physionet2017:{tmp_path}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_records"] == len(written) == 17
    assert out["label_counts"] == {"N": 7, "A": 3, "O": 5, "~": 2}
    assert out["fs"] == 300 and 9 <= out["duration_s"]["min"] <= out["duration_s"]["max"] <= 12.01


def test_unknown_synthetic_preset_is_a_clear_error():
    proc = _run_cli("data", "summary", "synthetic-ecg:fs")
    assert proc.returncode == 2 and "unknown synthetic-ecg preset 'fs'" in proc.stderr
