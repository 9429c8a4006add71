"""The Ray and MPI backends train the ``ecg-res`` supernet with the same rule as the local runner: two workers
give exactly the weights of a local two-replica emulation of that rule (each replica's sandwich, shrinking step
or single path on its own batch, gradients averaged, one step)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from n2nas.data.readers import load_physionet2017
from n2nas.runners.flat_weights import FlatLayout, worker_seed
from n2nas.runners.local import LocalRunner, load_weights_and_optimizer, weights_and_optimizer
from n2nas.runners.shared import SharedTrainingConfig
from search_spaces import get_space
from tests.conftest import copy_sample_records

MPIEXEC = Path(sys.executable).parent / "mpiexec"


def rule_setup(folder, cache, rule):
    """The space, data context, training config and four samples every process of these tests uses."""
    space_def = get_space("ecg-res")
    dataset = load_physionet2017(folder)
    idx = np.arange(len(dataset.ids))
    ctx = space_def.make_context(dataset, idx[:9], idx[9:], Path(cache))
    rng = np.random.default_rng(5)
    pinned = space_def.space.pinned({"fs": 100, "window": "crop:5", "filter": "none", "dropout": 0.0,
                                     "augment": "none", "batch_size": 32})
    samples = [pinned.random_sample(rng) for _ in range(4)]  # dropout 0: no draws from torch's global RNG
    shared = SharedTrainingConfig(rule=rule, shrink_steps=1, calibration_records=4, calibration_batch=4)
    return space_def, ctx, shared, samples


def emulate(folder, cache, rule, workers=2):
    """Synchronous data-parallel training done by hand in one process: the reference for both backends. One torch
    thread, as each Ray worker and MPI rank uses: a convolution summed over two threads rounds differently, and the
    comparison is exact."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _emulate(folder, cache, rule, workers)
    finally:
        torch.set_num_threads(threads)


def _emulate(folder, cache, rule, workers):
    space_def, ctx, shared, samples = rule_setup(folder, cache, rule)
    torch.manual_seed(0)
    runners = [LocalRunner(space_def, ctx, shared, torch.device("cpu"), worker_seed(0, k), worker=k)
               for k in range(workers)]
    state = weights_and_optimizer(runners[0])
    for r in runners[1:]:
        load_weights_and_optimizer(r, state)
    layouts = [FlatLayout(r.supernet) for r in runners]
    for start in range(0, len(samples), workers):
        chunk = samples[start:start + workers]
        packed = [layouts[k].pack_step(runners[k].child_gradient(chunk[k]) if k < len(chunk) else None)
                  for k in range(workers)]
        total = np.sum(np.stack(packed), axis=0, dtype=np.float32)
        for k in range(workers):
            layouts[k].apply_step(runners[k], total)
    return runners[0].supernet.state_dict()


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("res2017dist")
    copy_sample_records(folder, per_class=3)
    return folder


@pytest.fixture(scope="module")
def references(folder):
    cache = folder.parent / "cache"
    return {rule: emulate(folder, cache, rule) for rule in ("sandwich", "uniform", "progressive")}


def test_the_rules_train_different_weights(references):
    assert not _same(references["sandwich"], references["uniform"])
    assert not _same(references["sandwich"], references["progressive"])
    assert int(references["progressive"]["shrink_steps_done"]) == 2  # one step per round, replicas averaged


@pytest.mark.parametrize("rule, override", [("sandwich", None), ("progressive", None), ("sandwich", "uniform")])
def test_two_ray_workers_train_the_rule_like_the_local_runner(ray_session, folder, references, rule, override):
    """The configured rule, or the rule a call asks for (a screen or the finals train their child alone)."""
    from n2nas.runners import RunnerConfig
    from n2nas.runners.ray import RayRunner

    space_def, ctx, shared, samples = rule_setup(folder, folder.parent / "cache", rule)
    torch.manual_seed(0)
    runner = RayRunner(RunnerConfig(backend="ray", workers=2), space_def, ctx, shared, torch.device("cpu"), 0)
    try:
        stats = runner.train_shared(samples, override)
    finally:
        runner.close()
    assert stats["shared_failed"] == 0
    assert _same(runner.replica.supernet.state_dict(), references[override or rule])


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec (the mpich wheel) is not installed")
def test_two_mpi_ranks_train_the_sandwich_rule_like_the_local_runner(folder, references, tmp_path):
    pytest.importorskip("mpi4py")
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "N2NAS_CACHE": str(tmp_path / "n2nas-cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "weights.pt"
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", str(Path(__file__).with_name("mpi_rule_helper.py")),
           str(folder), str(folder.parent / "cache"), "sandwich", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = torch.load(out, weights_only=True)
    assert saved["failed"] == 0 and _same(saved["weights"], references["sandwich"])
