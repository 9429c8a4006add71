"""``ecg-res``: the residual space's FLOPs range, exact weight inheritance, per-child BatchNorm recalibration,
and the sandwich rule (distillation, gradients, determinism)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from n2nas.data.readers import load_physionet2017
from n2nas.measure.cost import pipeline_cost
from n2nas.runners.local import LocalRunner
from n2nas.runners.shared import SharedTrainingConfig, shrinking_children
from n2nas.space import Pipeline
from n2nas.train.sandwich import distillation_loss, sandwich_backward
from search_spaces import get_space
from tests.conftest import copy_sample_records

DATA = {"n_leads": 1, "classes": ["A", "N", "O", "~"]}


@pytest.fixture(scope="module")
def space_def():
    return get_space("ecg-res")


def _gflops(sample) -> float:
    return pipeline_cost(Pipeline("ecg-res", sample, DATA))["flops_per_record"] / 1e9


def test_space_spans_the_residual_nets_regime_down_to_a_tiny_child(space_def):
    base = space_def.space.default_sample()
    largest, smallest = space_def.largest(base), space_def.smallest(base)
    space_def.space.validate(largest)
    space_def.space.validate(smallest)
    for window in ("crop:5", "crop:10", "crop:30", "beats:5"):  # per 30 s record, as n2nas flops counts it
        assert _gflops({**largest, "fs": 300, "window": window}) >= 1.0
        assert _gflops({**smallest, "fs": 100, "window": window}) <= 0.03
    assert "stage3/stride" in space_def.space.describe()
    assert {t.label for t in space_def.space.tokens if t.kind == "preprocessing"} == {
        "fs", "filter", "normalise", "window", "augment"}


def _random_sample(space_def, seed):
    return {**space_def.space.random_sample(np.random.default_rng(seed)), "dropout": 0.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inherited_weights_give_the_standalone_childs_outputs_exactly(space_def, seed):
    torch.manual_seed(seed)
    supernet = space_def.build_supernet(2, 4)
    for m in supernet.modules():  # non-trivial statistics, so that slicing them wrongly would show
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    supernet.eval()
    sample = _random_sample(space_def, seed)
    child = space_def.build_child(sample, 2, 4).eval()
    space_def.copy_shared_weights(supernet, child, sample)
    x = torch.randn(3, 2, 997)  # an odd length: strides round up the same way in both
    with torch.no_grad():
        assert torch.equal(child(x), supernet(x, sample))
    assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in supernet.parameters())


def test_a_stage_of_depth_d_runs_the_first_d_blocks_only(space_def):
    supernet = space_def.build_supernet(1, 4).eval()
    sample = {**space_def.smallest(space_def.space.default_sample()), "dropout": 0.0}
    x = torch.randn(2, 1, 500)
    with torch.no_grad():
        before = supernet(x, sample)
        supernet.stages[0][1].conv1.weight.add_(1.0)  # block 1 of stage 0: unused at depth 1
        assert torch.equal(before, supernet(x, sample))
        supernet.stages[0][0].conv1.weight.add_(1.0)
        assert not torch.equal(before, supernet(x, sample))


@pytest.fixture(scope="module")
def parts(tmp_path_factory, space_def):
    folder = tmp_path_factory.mktemp("res2017")
    copy_sample_records(folder, per_class=4)
    dataset = load_physionet2017(folder)
    ctx = space_def.make_context(dataset, np.arange(0, 16, 2), np.arange(1, 16, 2), None, 1)
    sample = {**space_def.space.default_sample(), "fs": 100, "window": "crop:5", "filter": "none",
              "batch_size": 32}
    return ctx, sample


def _runner(space_def, ctx, rule, seed=0, bn="recalibrate"):
    torch.manual_seed(seed)
    cfg = SharedTrainingConfig(rule=rule, bn=bn, calibration_records=8, calibration_batch=4)
    return LocalRunner(space_def, ctx, cfg, torch.device("cpu"), seed=seed)


def test_rule_auto_is_the_sandwich_for_ecg_res_and_uniform_for_the_older_spaces(space_def):
    assert SharedTrainingConfig().rule_for(space_def) == "sandwich"
    assert SharedTrainingConfig().rule_for(get_space("ecg-cpu")) == "uniform"
    assert SharedTrainingConfig.uniform().rule_for(space_def) == "uniform"


def test_sandwich_loss_is_teacher_labels_plus_students_distilled_from_the_teacher(space_def):
    torch.manual_seed(0)
    supernet = space_def.build_supernet(1, 4)
    base = {**space_def.space.default_sample(), "dropout": 0.0}
    children = [space_def.largest(base), space_def.smallest(base)]
    x, y = torch.randn(6, 1, 400), torch.tensor([0, 1, 2, 3, 1, 2])
    parts = sandwich_backward(supernet, children, x, y, multilabel=False)
    with torch.no_grad():
        teacher, student = supernet(x, children[0]), supernet(x, children[1])
    expected_kd = float(-(torch.softmax(teacher, -1) * torch.log_softmax(student, -1)).sum(-1).mean())
    assert parts["kd0"] == pytest.approx(expected_kd, rel=1e-5)
    assert parts["teacher"] == pytest.approx(float(torch.nn.functional.cross_entropy(teacher, y)), rel=1e-5)
    assert parts["loss"] == pytest.approx((parts["teacher"] + parts["kd0"]) / 2, rel=1e-6)
    # the student learns from the teacher, not the labels: other labels, the same student loss
    supernet.zero_grad()
    again = sandwich_backward(supernet, children, x, torch.tensor([3, 3, 3, 3, 3, 3]), multilabel=False)
    assert again["kd0"] == pytest.approx(parts["kd0"], rel=1e-6) and again["teacher"] != parts["teacher"]
    assert distillation_loss(teacher, teacher, multilabel=True) > 0  # multi-label: sigmoid soft targets


def test_the_smallest_childs_distillation_gradient_reaches_its_slice_only(space_def):
    torch.manual_seed(0)
    supernet = space_def.build_supernet(1, 4)
    base = {**space_def.space.default_sample(), "dropout": 0.0}
    largest, smallest = space_def.largest(base), space_def.smallest(base)
    x, y = torch.randn(6, 1, 400), torch.tensor([0, 1, 2, 3, 1, 2])
    sandwich_backward(supernet, [largest], x, y, multilabel=False)
    alone = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
    supernet.zero_grad(set_to_none=True)
    sandwich_backward(supernet, [largest, smallest], x, y, multilabel=False)
    conv = dict(supernet.named_parameters())["stages.0.0.conv1.weight"]
    diff = conv.grad - alone["stages.0.0.conv1.weight"]
    c, k = smallest["stage0/width"] * 16, smallest["stage0/kernel"]  # 4 channels, 3 centre taps of 15
    c, start = int(c), (15 - k) // 2
    assert diff[:c, :c, start:start + k].abs().sum() > 0  # the student's KD gradient reaches its slice ...
    outside = diff.clone()
    outside[:c, :c, start:start + k] = 0
    assert torch.allclose(outside, torch.zeros_like(outside), atol=1e-6)  # ... and nothing else of the tensor


def test_sandwich_training_is_deterministic_with_a_seed_and_differs_from_uniform(space_def, parts):
    ctx, sample = parts
    states = []
    for rule in ("sandwich", "sandwich", "uniform"):
        runner = _runner(space_def, ctx, rule)
        stats = runner.train_shared([sample, sample])
        assert np.isfinite(stats["shared_loss"]) and stats["shared_failed"] == 0
        states.append({k: v.clone() for k, v in runner.supernet.state_dict().items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])
    # a step may ask for the child alone (a screen's or the finals' training): then it is the uniform step
    runner = _runner(space_def, ctx, "sandwich")
    for _ in range(2):
        assert runner.child_gradient(sample, rule="uniform") is not None
        runner.apply_gradients()
    assert all(torch.equal(states[2][k], v) for k, v in runner.supernet.state_dict().items())


def test_recalibration_scores_a_child_with_its_own_sliced_statistics(space_def, parts):
    ctx, sample = parts
    runner = _runner(space_def, ctx, "sandwich")
    runner.train_shared([sample])
    saved = {k: v.clone() for k, v in runner.supernet.state_dict().items() if "running" in k}
    small = space_def.smallest(sample)
    x = torch.from_numpy(runner._data(small).record_windows(int(ctx.val_idx[0])))
    with torch.no_grad():
        with runner.child_batchnorm(small):
            recalibrated = runner.supernet(x, small)
            # the standalone child with the recalibrated statistics gives the same outputs
            child = space_def.build_child(small, 1, 4).eval()
            space_def.copy_shared_weights(runner.supernet, child, small)
            assert torch.allclose(child(x), recalibrated, atol=1e-5)
        plain = runner.supernet(x, small)
    assert not torch.allclose(recalibrated, plain)  # the shared statistics mix every child
    assert all(torch.equal(saved[k], v) for k, v in runner.supernet.state_dict().items() if "running" in k)
    assert runner.score([small], ctx.val_idx)[0]["status"] == "ok"


def test_the_sandwich_rule_refuses_a_space_without_largest_and_smallest_children(parts):
    from n2nas.errors import ConfigError

    ctx, _ = parts
    with pytest.raises(ConfigError, match="sandwich"):
        LocalRunner(get_space("ecg-small"), ctx, SharedTrainingConfig.sandwich(), torch.device("cpu"), 0)


def test_a_tiny_search_over_ecg_res_trains_sandwiches_and_writes_a_pipeline_that_builds(tmp_path):
    import json

    import n2nas
    from n2nas.models.folder import build_model, load_pipeline
    from tests.test_search import tiny_config

    copy_sample_records(tmp_path / "d", per_class=3)
    dataset = load_physionet2017(tmp_path / "d")
    result = n2nas.search(dataset, tiny_config(space="ecg-res", budget_epochs=2, shared_steps=2,
                                               children_per_step=2, derive_children=2), out=tmp_path / "run")
    trials = [json.loads(x) for x in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    assert trials and all(t["status"] == "ok" for t in trials)
    pipeline = load_pipeline(tmp_path / "run" / "best_pipeline.json")
    assert pipeline.space == "ecg-res" and result.best(1)[0].space == "ecg-res"
    assert isinstance(build_model(pipeline, 1, 4), torch.nn.Module)


def test_progressive_shrinking_opens_kernel_then_depth_then_width_and_counts_in_the_weights(space_def, parts):
    ctx, sample = parts
    torch.manual_seed(0)
    cfg = SharedTrainingConfig(rule="progressive", shrink_steps=2, calibration_records=8, calibration_batch=4)
    runner = LocalRunner(space_def, ctx, cfg, torch.device("cpu"), seed=0)
    small = space_def.smallest(sample)
    largest = space_def.largest(sample)
    phases = [shrinking_children(space_def, small, cfg, runner.rng, runner.supernet.shrink_steps_done)
              for _ in range(8)]
    assert all(p == [largest] for p in phases[:2])  # phase 0: the largest child alone
    for step, opened in ((2, {"kernel"}), (4, {"kernel", "depth"}), (6, {"kernel", "depth", "width", "stride"})):
        teacher, student = phases[step][:2]
        assert teacher == largest and len(phases[step]) == 3  # the largest, the sample, one random child
        for label, value in student.items():
            field = label.rpartition("/")[2]
            expected = small[label] if (field in opened or not label.startswith("stage")) else largest[label]
            assert value == expected, (step, label)
    assert int(runner.state_dict()["supernet"]["shrink_steps_done"]) == 8  # checkpointed with the weights
    assert np.isfinite(runner.train_shared([sample])["shared_loss"])
