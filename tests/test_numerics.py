"""Denormal floats (:mod:`n2nas.train.numerics`): found and zeroed in a model's weights whether or not the process
flushes them, and flushed while the trainer runs."""
from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from n2nas.train.numerics import denormal_mask, zero_denormals
from n2nas.train.trainer import FitConfig, fit
from tests.test_trainer import Blobs

DENORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


def denormals(n: int) -> torch.Tensor:
    """``n`` float32 denormals made from their bits: arithmetic in a flushing thread would turn them into zeros."""
    return torch.arange(1, n + 1, dtype=torch.int32).mul(4099).view(torch.float32)


def in_a_thread(fn, flush: bool):
    """``fn()`` run in a fresh thread with denormal flushing set to ``flush`` (the flag is per thread)."""
    out = {}

    def run():
        torch.set_flush_denormal(flush)
        out["value"] = fn()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["value"]


@pytest.mark.parametrize("flush", [False, True])
def test_only_denormal_values_are_set_to_zero_whether_or_not_the_thread_flushes(flush):
    def zeroed():
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        with torch.no_grad():
            weight = torch.tensor([[0.5, 0.0, 2e-38]] * 4)
            weight[:, 1] = denormals(4)  # copies keep their bits; only arithmetic flushes
            model[0].weight.copy_(weight)
            model[1].running_var[0] = denormals(1)[0]
        assert int(denormal_mask(model[0].weight).sum()) == 4
        first = zero_denormals(model)
        return first, model, zero_denormals(model)

    first, model, second = in_a_thread(zeroed, flush)
    assert first == 5 and second == 0
    w = model[0].weight.view(torch.int32)
    assert (w[:, 1] == 0).all() and (model[0].weight[:, 0] == 0.5).all()  # 0.5 and 2e-38 are normal: kept
    assert (model[0].weight[:, 2] == torch.tensor(2e-38)).all() and model[1].running_var.view(torch.int32)[0] == 0
    assert model[1].num_batches_tracked == 0  # integer buffers left alone


def test_the_trainer_computes_with_denormals_flushed_to_zero():
    def around_fit():
        before = float(torch.tensor([DENORMAL]) * 1.5)
        fit(lambda: nn.Linear(4, 2), Blobs(), lambda m: 0.0, FitConfig(epochs=1, lr=1e-2, batch_size=32),
            device=torch.device("cpu"))
        return before, float(torch.tensor([DENORMAL]) * 1.5)

    before, after = in_a_thread(around_fit, flush=False)
    assert before != 0  # this CPU computes denormals when not told otherwise
    assert after == 0
