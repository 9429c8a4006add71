"""The weight average that retraining scores and keeps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from n2nas.train.averaging import weight_average


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
        assert float(averaged.module.weight) == pytest.approx(expected)
        assert float(averaged.module.running_mean) == pytest.approx(-expected)  # batch-norm statistics too
    assert float(averaged.module.weight) < 15.0  # not the last weights


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_weight_average_refuses_a_decay_outside_the_open_interval(decay):
    with pytest.raises(ValueError, match="decay"):
        weight_average(nn.Linear(1, 1), decay)
