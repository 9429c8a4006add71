"""The run-folder primitives behind exact resume: atomic trial appends and atomic checkpoints."""
from __future__ import annotations

import json
import math

import numpy as np
import torch

from n2nas.searching.checkpoint import load_checkpoint, save_checkpoint
from n2nas.searching.trials import TrialLog
from n2nas.storage import numpy_rng_state, restore_numpy_rng


def test_trial_log_appends_dedups_and_cuts_torn_line(tmp_path):
    path = tmp_path / "trials.jsonl"
    log = TrialLog(path)
    for step in range(3):
        log.append({"step": step, "reward": step / 10})
    log.append({"step": 1, "reward": 99.0})  # a replayed step is not written twice
    with open(path, "ab") as fh:
        fh.write(b'{"step": 3, "rew')  # killed in the middle of a write
    reopened = TrialLog(path)
    assert [r["step"] for r in reopened.records] == [0, 1, 2]
    assert reopened.get(1)["reward"] == 0.1
    assert path.read_bytes().endswith(b"\n")
    reopened.append({"step": 3, "reward": math.nan, "m": {"x": math.inf}})
    last = json.loads(path.read_text().splitlines()[-1])
    assert last == {"step": 3, "reward": None, "m": {"x": None}}  # strict JSON: no NaN


def test_checkpoint_round_trip_with_rng_states(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(5)
    state = {"w": torch.randn(3), "rng": numpy_rng_state(rng), "torch_rng": torch.get_rng_state(), "epoch": 4}
    save_checkpoint(tmp_path, state)
    expected = rng.random(3)
    loaded = load_checkpoint(tmp_path)
    fresh = np.random.default_rng(0)
    restore_numpy_rng(fresh, loaded["rng"])
    assert np.array_equal(fresh.random(3), expected)
    assert torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert load_checkpoint(tmp_path / "nothing") is None
