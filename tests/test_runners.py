"""Runner math without launchers: the flat synchronous step, the asynchronous fold, convergence, and the MPI
runner on a one-rank world reproducing the local runner bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from n2nas.errors import ConfigError
from n2nas.runners import RunnerConfig
from n2nas.runners.flat_weights import Convergence, FlatLayout, fold, interleave, weights_digest


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.unused = torch.nn.Linear(4, 2)  # no child touches it: must keep grad None and not move


class _Replica:
    """Just enough of a LocalRunner for FlatLayout.apply_step."""

    def __init__(self):
        self.supernet = _Tiny()
        self.optimizer = torch.optim.Adam(self.supernet.parameters(), lr=0.1, weight_decay=0.1)

    def loss(self, x):
        self.supernet.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.supernet.bn(self.supernet.a(x)).pow(2).mean()
        loss.backward()
        return float(loss.detach())

    def apply_gradients(self):
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), 5.0)
        self.optimizer.step()


def test_sync_step_averages_gradients_and_buffers_and_keeps_replicas_identical():
    r1, r2, ref = _Replica(), _Replica(), _Replica()
    x1, x2 = torch.randn(8, 3), torch.randn(8, 3)
    layout1, layout2 = FlatLayout(r1.supernet), FlatLayout(r2.supernet)
    total = layout1.pack_step(r1.loss(x1)) + layout2.pack_step(r2.loss(x2))
    unused_before = r1.supernet.unused.weight.detach().clone()
    layout1.apply_step(r1, total)
    layout2.apply_step(r2, total)
    assert weights_digest(r1.supernet) == weights_digest(r2.supernet)
    assert r1.supernet.unused.weight.grad is None and torch.equal(r1.supernet.unused.weight, unused_before)
    # the same as one replica stepping on the mean of the two gradients, with BN stats averaged
    ref.loss(x1)
    g1 = [p.grad.clone() for p in ref.supernet.a.parameters()]
    stats1 = ref.supernet.bn.running_mean.clone()
    ref.supernet.bn.running_mean.copy_(_Replica().supernet.bn.running_mean)
    ref.loss(x2)
    for p, g in zip(ref.supernet.a.parameters(), g1):
        p.grad = (p.grad + g) / 2
    expected_mean = (stats1 + ref.supernet.bn.running_mean) / 2
    ref.apply_gradients()
    assert torch.allclose(ref.supernet.a.weight, r1.supernet.a.weight, atol=1e-6)
    assert torch.allclose(r1.supernet.bn.running_mean, expected_mean, atol=1e-6)


def test_a_worker_with_a_nonfinite_loss_contributes_no_gradient():
    r1, r2 = _Replica(), _Replica()
    layout = FlatLayout(r1.supernet)
    total = layout.pack_step(r1.loss(torch.randn(8, 3))) + FlatLayout(r2.supernet).pack_step(None)
    mean, n_ok = layout.apply_step(r1, total)
    assert n_ok == 1 and mean == pytest.approx(float(total[-3]))


def test_fold_keeps_history_weight_w_over_w_plus_1_and_really_updates_history():
    history = np.array([1.0, 2.0], np.float32)
    fold(history, np.array([4.0, 8.0], np.float32), weighting=3.0)
    np.testing.assert_allclose(history, [0.75 * 1 + 0.25 * 4, 0.75 * 2 + 0.25 * 8])
    fold(history, np.array([0.0, 0.0], np.float32), weighting=1.0)  # DiagnoseNET's bug: history never moved
    np.testing.assert_allclose(history, [0.875, 1.75])
    w0 = np.array([5.0], np.float32)
    np.testing.assert_allclose(fold(w0, np.array([2.0], np.float32), 0.0), [2.0])  # w = 0: take the update


def test_convergence_needs_patience_stalls_and_resets_on_progress():
    c = Convergence(tol=0.1, patience=2)
    assert not c.update(1.0)
    assert not c.update(0.95)          # < 10% better: one stall
    assert not c.update(0.5)           # progress resets the count
    assert not c.update(None)
    assert c.update(0.49)
    c.reset()
    assert not c.update(3.0)


def test_interleave_undoes_strided_split():
    items = list(range(7))
    assert interleave([items[k::3] for k in range(3)], 7) == items


def test_runner_config_rejects_nonsense():
    with pytest.raises(ConfigError, match="--workers"):
        RunnerConfig(backend="local", workers=2)
    with pytest.raises(ConfigError, match="--backend"):
        RunnerConfig(backend="slurm")
    with pytest.raises(ConfigError, match="--mpi-mode"):
        RunnerConfig(backend="mpi", mpi_mode="eventually")


def test_one_rank_mpi_runner_reproduces_the_local_runner(tmp_path, monkeypatch):
    """With one rank the flat Allreduce path must give exactly the local runner's weights and scores."""
    pytest.importorskip("mpi4py")
    from controllers import make_controller
    from search_spaces import get_space
    from n2nas.data.readers import load_physionet2017
    from n2nas.runners.local import LocalRunner
    from n2nas.runners.shared import SharedTrainingConfig
    from n2nas.runners.mpi import MpiRunner
    from tests.conftest import copy_sample_records

    copy_sample_records(tmp_path / "d", per_class=3)
    ds = load_physionet2017(tmp_path / "d")
    space_def = get_space("ecg-small")
    space = space_def.space.pinned({"window": "crop:5", "fs": 100})
    samples = [space.decode(s) for s in make_controller("random", space.tokens, seed=3).sample(3)]
    idx = np.arange(len(ds.ids))

    def build(kind):
        ctx = space_def.make_context(ds, idx[:9], idx[9:], tmp_path / "cache")
        torch.manual_seed(0)
        if kind == "local":
            return LocalRunner(space_def, ctx, SharedTrainingConfig(), torch.device("cpu"), 0)
        return MpiRunner(RunnerConfig(backend="mpi"), space_def, ctx, SharedTrainingConfig(), torch.device("cpu"), 0)

    local, mpi = build("local"), build("mpi")
    torch.manual_seed(1)  # dropout draws from the global generator: same state for both
    local_stats = local.train_shared(samples)
    torch.manual_seed(1)
    mpi_stats = mpi.train_shared(samples)
    assert local_stats["shared_failed"] == mpi_stats["shared_failed"] == 0
    assert mpi_stats["shared_loss"] == pytest.approx(local_stats["shared_loss"], rel=1e-6)  # float32 in transit
    assert weights_digest(local.supernet) == weights_digest(mpi.replica.supernet)
    records = idx[9:]  # one child: scoring counts its FLOPs, the slow part on 2 cores
    assert [r["metric"] for r in local.score(samples[:1], records)] == \
        [r["metric"] for r in mpi.score(samples[:1], records)]
    state = mpi.state_dict()
    assert len(state["workers"]) == 1 and state["digests"] == [weights_digest(mpi.replica.supernet)]
    mpi.close()


@pytest.mark.parametrize("kind", ["local", "mpi"])
def test_a_saved_state_is_a_snapshot_that_later_training_leaves_alone(tmp_path, kind):
    """The screen and the finals keep states to return to (fresh weights, each candidate's weights): training
    after ``state_dict()`` or after ``load_state_dict(state)`` must not change ``state``, or every candidate would
    go on from the one trained before it. Training twice from one state must give the same weights."""
    if kind == "mpi":
        pytest.importorskip("mpi4py")
    from search_spaces import get_space
    from n2nas.data.readers import load_physionet2017
    from n2nas.runners.local import LocalRunner
    from n2nas.runners.shared import SharedTrainingConfig
    from tests.conftest import copy_sample_records

    copy_sample_records(tmp_path / "d", per_class=3)
    ds = load_physionet2017(tmp_path / "d")
    space_def = get_space("ecg-small")
    sample = {**space_def.space.default_sample(), "fs": 100, "window": "crop:5"}
    idx = np.arange(len(ds.ids))
    ctx = space_def.make_context(ds, idx[:9], idx[9:], tmp_path / "cache")
    torch.manual_seed(0)
    if kind == "local":
        runner = LocalRunner(space_def, ctx, SharedTrainingConfig(), torch.device("cpu"), 0)
    else:
        from n2nas.runners.mpi import MpiRunner

        runner = MpiRunner(RunnerConfig(backend="mpi"), space_def, ctx, SharedTrainingConfig(), torch.device("cpu"), 0)
    replica = runner if kind == "local" else runner.replica
    try:
        fresh = runner.state_dict()
        fresh_digest = weights_digest(replica.supernet)
        runner.train_shared([sample] * 2)
        trained = runner.state_dict()
        moments = {k: v["exp_avg"].clone() for k, v in trained["optimizer"]["state"].items()}
        assert moments and weights_digest(replica.supernet) != fresh_digest
        runner.load_state_dict(fresh)
        assert weights_digest(replica.supernet) == fresh_digest  # the fresh state did not follow the training
        runner.load_state_dict(trained)
        torch.manual_seed(1)
        runner.train_shared([sample] * 2)
        once = weights_digest(replica.supernet)
        assert all(torch.equal(trained["optimizer"]["state"][k]["exp_avg"], m) for k, m in moments.items())
        runner.load_state_dict(trained)
        torch.manual_seed(1)
        runner.train_shared([sample] * 2)
        assert weights_digest(replica.supernet) == once
    finally:
        runner.close()
