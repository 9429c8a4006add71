"""MPI backend under ``mpiexec -n 2``: sync search end to end with identical weights on both ranks, a failing
rank aborting the job with its last checkpoint intact (and the search resuming from it), and async mode."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mpi4py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
HELPER = Path(__file__).with_name("mpi_helper.py")
pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec (the mpich wheel) is not installed")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from tests.conftest import copy_sample_records

    folder = tmp_path_factory.mktemp("tiny2017mpi")
    copy_sample_records(folder, per_class=3)
    return folder


def _launch(folder, run, mode="sync", resume=False, fail_rank=-1, fail_after=-1, timeout=240):
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "N2NAS_CACHE": str(Path(folder).parent / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", str(HELPER), f"physionet2017:{folder}",
           str(run), mode, "resume" if resume else "fresh", str(fail_rank), str(fail_after)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).parent.parent)


def test_failing_rank_aborts_cleanly_then_sync_search_resumes_with_identical_ranks(tiny_folder, tmp_path):
    run = tmp_path / "run"
    # rank 1 dies in its 3rd shared step: inside epoch 2, after the checkpoint of epoch 1 (the warm-up)
    crashed = _launch(tiny_folder, run, fail_rank=1, fail_after=2)
    assert crashed.returncode != 0
    assert "injected failure on rank 1" in crashed.stderr
    state = torch.load(run / "checkpoint" / "search_state.pt", weights_only=True)  # intact
    assert int(state["epoch"]) == 1
    resumed = _launch(tiny_folder, run, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["run_dir"] == str(run)
    for name in ("best_pipeline.json", "trials.jsonl", "checkpoint", "tensorboard", "report.png", "split.json"):
        assert (run / name).exists(), name
    lines = [json.loads(x) for x in (run / "trials.jsonl").read_text().splitlines()]
    # warm-up child, 2 epochs x 2, 2 derived, and (no finals) the space's default scored beside them
    assert [t["step"] for t in lines] == list(range(1 + 2 * 2 + 2 + 1))
    assert {t["worker"] for t in lines if t["phase"] == "controller"} == {0, 1}  # scoring spread over ranks
    state = torch.load(run / "checkpoint" / "search_state.pt", weights_only=True)
    assert int(state["epoch"]) == 3  # one warm-up epoch, then two with the controller
    digests = state["runner"]["digests"]  # every rank's weight hash after sync training
    assert len(digests) == 2 and digests[0] == digests[1]


def test_async_parameter_server_search(tiny_folder, tmp_path):
    run = tmp_path / "async"
    done = _launch(tiny_folder, run, mode="async")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "best_pipeline.json").exists() and (run / "report.png").exists()
    state = torch.load(run / "checkpoint" / "search_state.pt", weights_only=True)
    assert int(state["runner"]["version"]) >= 2  # the server folded worker updates in each epoch
    assert state["runner"]["workers"][1]["optimizer"] is not None  # async workers keep their own Adam state
