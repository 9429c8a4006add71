"""User-facing errors survive the trip out of a worker process (process pools and Ray pickle them)."""
from __future__ import annotations

import pickle

import pytest

from n2nas.errors import ConfigError, DataError, exit_on_error


@pytest.mark.parametrize("error", [ConfigError("--budget-minutes", "too small"),
                                   DataError("/data/A0001.hea", "corrupt header")])
def test_an_error_pickles_as_itself_with_its_file_and_problem(error):
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.where, back.problem, str(back)) == (error.where, error.problem, str(error))


def test_a_script_ends_an_error_with_one_line_and_exit_code_2(capsys):
    def main():
        raise DataError("/data/A0001.hea", "corrupt header")

    with pytest.raises(SystemExit) as ended:
        exit_on_error(main, "ranking.py")
    assert ended.value.code == 2
    assert capsys.readouterr().err == "ranking.py: error: /data/A0001.hea: corrupt header\n"
    exit_on_error(lambda: None, "ranking.py")  # a main that succeeds ends normally


def test_the_ranking_benchmark_ends_a_missing_folder_with_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ranking.py"
    done = subprocess.run([sys.executable, str(script), "--data", f"physionet2017:{tmp_path / 'absent'}",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ranking.py: error: ") and "absent" in done.stderr
