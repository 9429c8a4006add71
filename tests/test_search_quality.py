"""The parts of the search that decide its quality: per-child BatchNorm at scoring time, the fixed reward set,
the warm-up and derive plan, the budget arithmetic and the few-updates ENAS baseline."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from controllers.enas import ENASConfig, ENASController
from n2nas.data.readers import load_physionet2017
from n2nas.runners.local import LocalRunner
from n2nas.runners.shared import SharedTrainingConfig
from n2nas.searching.budget import Budget, PhaseClock, minimum_budget_minutes
from n2nas.searching.derivation import DERIVE_DRAW_ROUNDS, derive_candidates, derive_stops
from n2nas.searching.preparation import reward_set
from search_spaces import get_space
from tests.conftest import copy_sample_records


@pytest.fixture(scope="module")
def runner_parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bn2017")
    copy_sample_records(folder, per_class=4)
    dataset = load_physionet2017(folder)
    space_def = get_space("ecg-small")
    ctx = space_def.make_context(dataset, np.arange(0, 16, 2), np.arange(1, 16, 2), None, 1)
    sample = {**space_def.space.default_sample(), "fs": 100, "window": "crop:5"}
    return space_def, ctx, sample


def _runner(parts, bn: str) -> LocalRunner:
    space_def, ctx, _ = parts
    torch.manual_seed(0)
    return LocalRunner(space_def, ctx, SharedTrainingConfig(bn=bn, calibration_records=8, calibration_batch=4),
                       torch.device("cpu"), seed=0)


def _bn_state(runner):
    return {k: v.clone() for k, v in runner.supernet.state_dict().items() if "running" in k or "batches" in k}


def _poison(runner) -> None:
    for m in runner.supernet.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.fill_(50.0)
            m.running_var.fill_(1e-3)


def _outputs(runner, ctx, sample) -> torch.Tensor:
    x = torch.from_numpy(runner._data(sample).record_windows(int(ctx.val_idx[0])))
    with torch.no_grad(), runner.child_batchnorm(sample):
        return runner.supernet(x, sample)


@pytest.mark.parametrize("bn", ["recalibrate", "batch", "running"])
def test_a_childs_outputs_ignore_the_shared_running_statistics_unless_asked(runner_parts, bn):
    space_def, ctx, sample = runner_parts
    runner = _runner(runner_parts, bn)
    other = {**sample, "fs": 150, "layer0/op": "sep9", "width": 0.5}
    runner.train_shared([sample, other, sample])  # the shared statistics now mix two children
    before = _bn_state(runner)
    assert runner.score([sample], ctx.val_idx)[0]["status"] == "ok"
    assert all(torch.equal(before[k], v) for k, v in _bn_state(runner).items())  # restored after scoring
    clean = _outputs(runner, ctx, sample)
    _poison(runner)
    poisoned = _outputs(runner, ctx, sample)
    if bn == "running":  # the control: scored with the shared statistics, the poison shows
        assert not torch.allclose(clean, poisoned)
    else:
        assert torch.allclose(clean, poisoned, atol=1e-5)


def test_recalibration_uses_fixed_records_and_does_not_move_the_training_rng(runner_parts):
    runner = _runner(runner_parts, "recalibrate")
    _, ctx, sample = runner_parts
    state = runner.rng.bit_generator.state
    a = runner.score([sample], ctx.val_idx)[0]["metrics"]
    b = runner.score([sample], ctx.val_idx)[0]["metrics"]
    assert a == b
    assert runner.rng.bit_generator.state == state


def test_unknown_bn_mode_is_refused():
    with pytest.raises(Exception, match="bn"):
        SharedTrainingConfig(bn="magic")


class _Ctx:
    def __init__(self, labels):
        self.val_idx = np.arange(100, 100 + len(labels))
        self.targets = np.zeros((200, 3), np.float32)
        self.targets[self.val_idx, labels] = 1


def test_reward_set_is_fixed_stratified_and_within_validation():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    ctx = _Ctx(labels)
    a, b = reward_set(ctx, 40, seed=3), reward_set(ctx, 40, seed=3)
    assert np.array_equal(a, b) and len(a) == 40 and set(a) <= set(ctx.val_idx)
    counts = np.bincount(ctx.targets[a].argmax(1), minlength=3)
    assert list(counts) == [24, 12, 4]  # the validation proportions 60/30/10, exactly
    assert np.array_equal(reward_set(ctx, None, 0), ctx.val_idx)
    assert np.array_equal(reward_set(ctx, 1000, 0), ctx.val_idx)


def test_derive_rescores_the_best_controller_children_first_without_repeats():
    space_def = get_space("ecg-small")
    space = space_def.space
    rng = np.random.default_rng(0)
    samples = [space.random_sample(rng) for _ in range(5)]
    trials = [{"phase": "controller", "status": "ok", "reward": r, "step": i, "sample": s}
              for i, (r, s) in enumerate(zip([0.1, 0.9, 0.5, 0.9, None], samples))]
    trials[4]["status"] = "failed"

    class Repeating:  # a controller that proposes the best child again, then new ones
        def sample(self, n):
            fresh = [space.encode(samples[1])] + [space.encode(space.random_sample(rng)) for _ in range(n)]
            return fresh[:n]

    config = type("C", (), {"derive_top": 2, "derive_children": 4, "space": "ecg-small"})()
    chosen = list(itertools.islice(derive_candidates(trials, Repeating(), space, config), 4))
    assert chosen[0] == samples[1] and chosen[1] == samples[3]  # best first, ties by step
    assert len(chosen) == 4
    keys = [repr(sorted(c.items())) for c in chosen]
    assert len(set(keys)) == 4
    # the derive phase may go on past derive_children to replace unscored children, but only so far
    everything = list(derive_candidates(trials, Repeating(), space, config))
    assert 4 < len(everything) <= 2 + DERIVE_DRAW_ROUNDS * 4
    assert len({repr(sorted(c.items())) for c in everything}) == len(everything)


def test_budget_keeps_a_derive_reserve_and_an_epoch_warmup():
    b = Budget(minutes=10, epochs=None, warmup=0.3, elapsed=0.0)
    assert b.derive_reserve_s == pytest.approx(90)  # 15% until a child has been timed
    b.plan_derive(seconds_per_child=1.0, children=12)
    assert b.derive_reserve_s == pytest.approx(30)  # at least 5% of 600 s
    b.plan_derive(seconds_per_child=10.0, children=12, finals_s=60.0)
    assert b.derive_reserve_s == pytest.approx(180)  # derive and finals together
    b.plan_derive(seconds_per_child=30.0, children=12)
    assert b.derive_reserve_s == pytest.approx(240)  # at most 40%
    late = Budget(minutes=10, epochs=None, warmup=0.3, elapsed=500.0)
    late.plan_derive(10.0, 12)  # reserve 120 s: 500 s elapsed is past 600 - 120
    assert late.search_over(epoch=3) and not late.in_warmup(3, warmup_done=False)
    assert late.derive_over(seconds_per_child=200.0) and not late.derive_over(seconds_per_child=10.0)
    screened = Budget(minutes=10, epochs=None, warmup=0.5, elapsed=250.0)
    screened.start_warmup_at(200.0)  # the warm-up is half of the 400 s the screen left, so it ends at 400 s
    assert screened.in_warmup(0, warmup_done=False)
    screened.start = screened.start - 160.0  # 410 s elapsed
    assert not screened.in_warmup(0, warmup_done=False)
    epochs = Budget(minutes=None, epochs=10, warmup=0.3)
    assert [epochs.in_warmup(e, False) for e in range(5)] == [True, True, True, False, False]
    assert not epochs.search_over(9) and epochs.search_over(10)
    assert Budget(minutes=None, epochs=1, warmup=0.3).warmup_epochs() == 0


def test_derive_hands_the_finals_enough_children_before_their_reserve_counts():
    b = Budget(minutes=10, epochs=None, warmup=0.3, elapsed=500.0)  # 100 s left; finals estimated at 300 s
    assert not derive_stops(b, 0, 5.0, 300.0, finalists=3)  # the first child always
    assert not derive_stops(b, 2, 5.0, 300.0, finalists=3)  # too few for the finals: go on while time lasts
    assert derive_stops(b, 3, 5.0, 300.0, finalists=3)  # enough: the rest is the finals'
    assert derive_stops(b, 2, 150.0, 0.0, finalists=3)  # one more scoring would overrun the budget
    assert not derive_stops(b, 0, 150.0, 0.0, finalists=3, tried=0)  # nothing scored yet: the first always
    assert derive_stops(b, 0, 150.0, 0.0, finalists=3, tried=2)  # failed scorings spend the time too
    roomy = Budget(minutes=10, epochs=None, warmup=0.3, elapsed=100.0)
    assert not derive_stops(roomy, 5, 5.0, 300.0, finalists=3)


def test_minimum_budget_grows_with_the_data():
    assert minimum_budget_minutes(300) < minimum_budget_minutes(6000)
    assert minimum_budget_minutes(300) >= 1.0


def test_phase_clock_books_moves_and_resumes():
    clock = PhaseClock()
    clock.add("shared", 30)
    clock.add("scoring", 10)
    clock.move("scoring", "cost", 4)
    clock.move("scoring", "cost", 100)  # never more than was booked
    assert clock.seconds["scoring"] == 0 and clock.seconds["cost"] == 10
    assert clock.percent() == {"shared": 75.0, "cost": 25.0}
    assert PhaseClock(clock.state()).seconds == clock.seconds


def test_few_updates_baseline_starts_at_the_first_rewards():
    space = get_space("ecg-small").space
    ctrl = ENASController(space.tokens, seed=0, config=ENASConfig.few_updates())
    samples = ctrl.sample(4)
    ctrl.update(samples, [0.6, 0.7, 0.8, float("nan")])
    # first update: the baseline starts at 0.7, then moves 10% towards each (entropy-augmented) reward
    assert 0.69 < ctrl.baseline < 0.75
    released = ENASController(space.tokens, seed=0)
    released.update(samples, [0.6, 0.7, 0.8, float("nan")])
    assert released.baseline < 0.05  # the released code's zero start
    restored = ENASController(space.tokens, seed=0, config=ENASConfig.few_updates())
    restored.load_state_dict(ctrl.state_dict())
    assert restored.started and restored.baseline == ctrl.baseline


def test_a_budget_too_small_to_score_a_child_is_one_line_at_startup(tmp_path, capsys):
    from n2nas.cli import main

    run = tmp_path / "run"
    assert main(["search", "--data", "sample", "--budget-minutes", "0.1", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget-minutes" in err[0] and "at least 1.07" in err[0]
    assert not run.exists()  # refused before the run folder was made
