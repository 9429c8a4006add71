"""The weight average that retraining scores and keeps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from n2nas.train.averaging import StateAverage, warmed_decay, weight_average


def test_weight_average_is_an_ema_whose_decay_warms_up():
    model = nn.BatchNorm1d(1)
    averaged = weight_average(model, decay=0.5)
    expected = None
    for step, value in enumerate([1.0, 3.0, 7.0, 15.0]):
        with torch.no_grad():
            model.weight.fill_(value)
            model.running_mean.fill_(-value)
        averaged.update_parameters(model)
        if expected is None:
            expected = value  # the first update copies
        else:
            d = min(0.5, (1.0 + step) / (10.0 + step))  # n_averaged == step before this update
            expected = d * expected + (1 - d) * value
        assert float(averaged.module.weight.detach()) == pytest.approx(expected)
        assert float(averaged.module.running_mean) == pytest.approx(-expected)  # batch-norm statistics too
    assert float(averaged.module.weight.detach()) < 15.0  # not the last weights


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_weight_average_refuses_a_decay_outside_the_open_interval(decay):
    with pytest.raises(ValueError, match="decay"):
        weight_average(nn.Linear(1, 1), decay)


def test_state_average_folds_several_steps_as_if_each_had_ended_there():
    start = {"w": torch.zeros(2), "count": torch.tensor(0)}
    chunked, stepwise = StateAverage(0.9, start), StateAverage(0.9, start)
    for value in (4.0, 10.0):
        state = {"w": torch.full((2,), value), "count": torch.tensor(int(value))}
        chunked.update(state, 8)
        for _ in range(8):
            stepwise.update(state, 1)
    assert torch.allclose(chunked.state["w"], stepwise.state["w"])
    assert chunked.steps == stepwise.steps == 16
    assert 4.0 < float(chunked.state["w"][0]) < 10.0  # between the two states: an average, not the last weights
    assert int(chunked.state["count"]) == 10  # integer entries follow the latest state
    assert float(start["w"][0]) == 0.0  # the starting state is copied, not updated in place
    keep = 1.0
    for n in range(8, 16):
        keep *= warmed_decay(0.9, n)
    first = 4.0 * (1 - torch.prod(torch.tensor([warmed_decay(0.9, n) for n in range(8)])))
    assert float(chunked.state["w"][0]) == pytest.approx(keep * float(first) + (1 - keep) * 10.0)
