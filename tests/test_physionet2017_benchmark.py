"""benchmarks/physionet2017.py and the shared benchmark modules: several retrain seeds per row, paired gaps, the
Pareto table (marks, intervals, plot), family member rows, and its options' errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from n2nas.metrics import cinc2017_f1
from tests.conftest import copy_sample_records, load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "physionet2017.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("physionet2017")


@pytest.fixture(scope="module")
def scoring():
    return load_benchmark("scoring")


def _probs(pred, n_classes: int = 4):
    """One-hot 'probabilities' whose argmax is ``pred``."""
    return np.eye(n_classes)[np.asarray(pred)]


def _result(pred, y):
    return {"pred": _probs(pred), "y": np.asarray(y), "test": {"cinc2017_f1": cinc2017_f1(pred, y)}}


def _noisy(rng, y, p):
    return np.where(rng.random(len(y)) < p, rng.integers(0, 4, len(y)), y)


def test_rows_collect_one_prediction_column_per_seed_and_score_their_mean(bench, scoring):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    noisy = [_noisy(rng, y, p) for p in (0.2, 0.5, 0.3)]
    done = {("a", 0): _result(noisy[0], y), ("b", 0): _result(noisy[2], y), ("a", 1): _result(noisy[1], y),
            ("b", 1): _result(y, y)}
    rows = scoring.by_row(done, "cinc2017_f1", {"a": "search"})
    assert rows["a"]["preds"][0].shape == (300, 2, 4) and rows["a"]["kind"] == "search"
    assert rows["b"]["kind"] == "reference"
    assert (rows["a"]["preds"][0][:, 1].argmax(-1) == noisy[1]).all()  # columns in seed order
    assert rows["a"]["scores"] == [[cinc2017_f1(noisy[0], y), cinc2017_f1(noisy[1], y)]]
    mean = scoring.row_score(bench.f1_of, rows["a"]["preds"], rows["a"]["ys"])
    assert mean == pytest.approx(np.mean(rows["a"]["scores"]))


def test_the_paired_gap_compares_seed_means(bench, scoring, capsys):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    poor = [_noisy(rng, y, 0.5) for _ in range(2)]
    good = [_noisy(rng, y, 0.1) for _ in range(2)]
    done = {(name, s): _result(preds[s], y) for s in range(2) for name, preds in (("plain-cnn", poor), ("x", good))}
    bench.print_paired_gaps(scoring.by_row(done, "cinc2017_f1"))
    line = capsys.readouterr().out.strip().splitlines()[-1].split()
    gap = np.mean([cinc2017_f1(good[s], y) - cinc2017_f1(poor[s], y) for s in range(2)])
    assert line[0] == "x" and float(line[1]) == pytest.approx(gap, abs=5e-4)
    assert float(line[2].strip("[,")) > 0  # a gap this large has its interval above zero


def test_pareto_marks_rows_nothing_beats_on_both_score_and_flops(scoring):
    flags = scoring.pareto_flags([(0.80, 100.0), (0.70, 200.0), (0.75, 50.0), (0.85, 400.0), (0.85, 400.0),
                                  (0.90, None)])
    # dominated: worse and dearer than the first; cheaper but worse, and better but dearer, are on the front; ties
    # stay; a row without FLOPs cannot be placed
    assert flags == [True, False, True, True, True, None]
    assert scoring.pareto_flags([(0.8, 100.0), (0.8, 120.0)]) == [True, False]  # as good but dearer
    assert scoring.pareto_flags([(0.8, 100.0), (0.7, 100.0)]) == [True, False]  # as cheap but worse


def test_the_pareto_table_scores_rows_with_intervals_and_draws_them(bench, scoring, tmp_path):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    done = {(name, s): _result(_noisy(rng, y, p), y) for s in range(2)
            for name, p in (("good dear", 0.1), ("poor dear", 0.6), ("fair cheap", 0.35))}
    rows = scoring.by_row(done, "cinc2017_f1", {"good dear": "search"})
    costs = {"good dear": {"params": 10, "flops_per_record": 4e8, "latency_ms": 2.0},
             "poor dear": {"params": 10, "flops_per_record": 5e8, "latency_ms": 2.5},
             "fair cheap": {"params": 2, "flops_per_record": 1e7, "latency_ms": 0.1}}
    table = {t["name"]: t for t in scoring.pareto_table(rows, bench.f1_of, costs, n_resamples=200)}
    assert [table[n]["pareto"] for n in ("good dear", "poor dear", "fair cheap")] == [True, False, True]
    for t in table.values():
        assert t["low"] <= t["score"] <= t["high"] and t["high"] - t["low"] < 0.3
        assert t["seeds"] == 2
    assert table["good dear"]["score"] == pytest.approx(np.mean(rows["good dear"]["scores"]))
    text = scoring.format_pareto(list(table.values()), "CinC F1", "30s", "one fold")
    lines = {line.split()[0]: line for line in text.splitlines()[3:]}
    assert lines["poor"].endswith(" no") and lines["fair"].endswith("yes *") and lines["good"].endswith("yes *")
    path = scoring.plot_pareto({"test": list(table.values())}, tmp_path / "out" / "report.png", "CinC F1", "30 s")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_family_member_is_one_row_per_folder_as_written(tmp_path):
    common = load_benchmark("common")
    inherited = {"name": "flops-0.05G", "metric_name": "cinc2017_f1", "val_metric": 0.7, "weights": "inherited",
                 "model_dir": "/run/family/flops-0.05G"}
    assert common.member_rows("search 0.05G", inherited) == {"search 0.05G inherited": {
        "kind": "inherited", "model_dir": "/run/family/flops-0.05G", "validation": {"cinc2017_f1": 0.7}}}
    tuned = {**inherited, "weights": "fine-tuned (3 epochs)", "model_dir": "/run/family/flops-0.05G-ft",
             "inherited_dir": "/run/family/flops-0.05G"}
    rows = common.member_rows("search 0.05G", tuned)
    assert rows["search 0.05G inherited"]["model_dir"] == "/run/family/flops-0.05G"
    assert rows["search 0.05G fine-tuned (3 epochs)"] == {
        "kind": "fine-tuned", "model_dir": "/run/family/flops-0.05G-ft", "validation": {"cinc2017_f1": 0.7}}


def test_a_tiny_run_prints_the_pareto_table_and_writes_report_png(tmp_path):
    """Two references retrained one epoch on 32 bundled records: the table has both, with FLOPs, params and a
    latency each, and the plot is written to --out."""
    copy_sample_records(tmp_path / "d", per_class=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "d"), "--rows", "plain-cnn", "--epochs", "1",
                           "--pipeline", f"again={_plain_cnn_file(tmp_path)}", "--row-epochs", "again=2",
                           "--threads", "1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "retrain budget 1 epochs" in out and "no wall cap" in out and "load average at start" in out
    assert "again: 2 epochs" in out  # a row's own budget is printed with the common one, and used
    epochs = {row: len(json.loads((tmp_path / "out" / row / "history.json").read_text()))
              for row in ("plain-cnn", "again")}
    assert epochs == {"plain-cnn": 1, "again": 2}
    table = out[out.index("Pareto table"):].splitlines()
    rows = [line.split() for line in table if line.strip().startswith(("plain-cnn", "again"))]
    assert len(rows) == 2 and all(r[1] in ("reference", "pipeline") for r in rows)
    assert all(float(r[7]) > 0 for r in rows)  # CPU ms per record
    assert (tmp_path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"


def _plain_cnn_file(tmp_path: Path) -> Path:
    import json

    from search_spaces.references import fixed_pipelines

    path = tmp_path / "plain.json"
    path.write_text(json.dumps(fixed_pipelines()["plain-cnn"]))
    return path


def test_a_row_epochs_option_for_no_row_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--rows", "plain-cnn",
                           "--row-epochs", "hanun=5"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "--row-epochs names 'hanun'" in done.stderr


def test_a_missing_pipeline_file_ends_in_one_line_and_exit_code_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--rows", "plain-cnn",
                           "--pipeline", f"x={tmp_path / 'absent.json'}"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr == f"physionet2017.py: error: {tmp_path / 'absent.json'}: pipeline file is missing\n"


def _earlier_run(folder: Path, records: list[str], tmp_path: Path) -> Path:
    """A search run folder as a search leaves it, as far as the benchmark reads it: its split, one trial line, its
    best pipeline (plain-cnn's) and a one-member family."""
    folder.mkdir(parents=True)
    (folder / "split.json").write_text(json.dumps({"train": records[1:], "val": records[:1], "test": []}))
    (folder / "trials.jsonl").write_text(json.dumps({"step": 0, "phase": "derive", "status": "ok", "reward": 0.5})
                                         + "\n")
    (folder / "best_pipeline.json").write_text(_plain_cnn_file(tmp_path).read_text())
    member = {"name": "flops-0.05G", "flops_per_record": 1, "metric_name": "cinc2017_f1", "val_metric": 0.6,
              "weights": "inherited", "model_dir": str(folder / "family" / "flops-0.05G")}
    (folder / "family").mkdir()
    (folder / "family" / "family.json").write_text(json.dumps({"members": [member],
                                                               "deploy": {"flops-0.05G": "flops-0.05G"}}))
    return folder


def test_an_earlier_search_run_stands_for_a_search_only_when_it_saw_no_test_record(bench, tmp_path):
    """--search-run: a folder made from dev records only is read as a search's result (best pipeline, trials,
    family, deploy choice); one that saw a test record, or a record this data does not hold, is refused."""
    common = load_benchmark("common")
    copy_sample_records(tmp_path / "d", per_class=8)
    split = (bench.dev_and_test, (str(tmp_path / "d"), 0))
    dev, test = bench.dev_and_test(str(tmp_path / "d"), 0)
    dev_ids = [r.id for r in dev.records]
    found = common.earlier_search_job(split, str(_earlier_run(tmp_path / "ok", dev_ids, tmp_path)))
    assert found["minutes"] is None and len(found["trials"]) == 1
    assert found["best"]["sample"] == json.loads(_plain_cnn_file(tmp_path).read_text())["sample"]
    assert [m["name"] for m in found["family"]] == ["flops-0.05G"] and found["deploy"] == {"flops-0.05G": "flops-0.05G"}
    from n2nas.errors import DataError

    with pytest.raises(DataError, match="saw 1 of this benchmark's test records"):
        common.earlier_search_job(split, str(_earlier_run(tmp_path / "leak", dev_ids + [test.records[0].id], tmp_path)))
    with pytest.raises(DataError, match="are not in this benchmark's data"):
        common.earlier_search_job(split, str(_earlier_run(tmp_path / "other", dev_ids + ["B99999"], tmp_path)))


def test_a_search_run_that_saw_a_test_record_ends_in_one_line_and_exit_code_2(bench, tmp_path):
    copy_sample_records(tmp_path / "d", per_class=8)
    dev, test = bench.dev_and_test(str(tmp_path / "d"), 0)
    run = _earlier_run(tmp_path / "run", [r.id for r in dev.records] + [test.records[0].id], tmp_path)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "d"), "--rows", "", "--search-run",
                           f"search={run}", "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    assert done.stderr.startswith(f"physionet2017.py: error: {run}: the search saw 1 of this benchmark's test records")
    assert done.stderr.count("\n") == 1


def test_a_search_run_for_a_row_that_is_not_a_search_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--search-run", f"plain-cnn={tmp_path}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "--search-run expects ROW=RUN_DIR with ROW one of search, random" in done.stderr
