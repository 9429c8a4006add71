"""The one trainer (:func:`n2nas.train.trainer.fit`): early stopping and the kept epoch, the budget schedule, a
diverging loss, the steps-per-epoch cap, and an exact resume from a saved state."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from n2nas.train.trainer import FitConfig, fit


class Blobs:
    """Two separable Gaussian blobs as training batches (the TrainingBatches protocol)."""

    def __init__(self, n: int = 96, fill: float | None = None):
        gen = np.random.default_rng(0)
        self.x = np.concatenate([gen.normal(-1, 1, (n // 2, 4)), gen.normal(1, 1, (n // 2, 4))]).astype(np.float32)
        if fill is not None:
            self.x[:] = fill
        self.y = np.repeat(np.eye(2, dtype=np.float32), n // 2, axis=0)
        self.n_train = n

    def batches(self, rng, generator, batch_size, drop_last):
        order = rng.permutation(self.n_train)
        stop = self.n_train - (self.n_train % batch_size if drop_last else 0)
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            yield torch.from_numpy(self.x[idx]), torch.from_numpy(self.y[idx])

    def example(self):
        return torch.from_numpy(self.x[:1])


def _net():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_patience_stops_early_and_keeps_the_best_epoch():
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])  # best at epoch 2, then never better
    kept = {}

    def validate(model):
        score = next(scores)
        kept[score] = _weights(model)
        return score

    fitted = fit(_net, Blobs(), validate, FitConfig(epochs=8, lr=1e-2, batch_size=32, patience=2),
                 device=torch.device("cpu"))
    assert fitted.best_epoch == 2 and fitted.best_score == 0.7 and len(fitted.history) == 4
    assert all(h["steps"] == 3 for h in fitted.history)
    assert all(torch.equal(v, kept[0.7][k]) for k, v in fitted.model.state_dict().items())  # epoch 2's weights
    scores = iter([0.5] * 8)
    assert len(fit(_net, Blobs(), lambda m: next(scores), FitConfig(epochs=8, lr=1e-2, batch_size=32),
                   device=torch.device("cpu")).history) == 8


def test_budget_schedule_decays_the_lr_to_zero_over_the_epochs_and_learns():
    fitted = fit(_net, Blobs(), lambda m: 0.0, FitConfig(epochs=4, lr=1e-2, batch_size=32),
                 device=torch.device("cpu"))
    lrs = [h["lr"] for h in fitted.history]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(1e-2 / 12)  # the last step's lr
    constant = fit(_net, Blobs(), lambda m: 0.0, FitConfig(epochs=4, lr=1e-2, batch_size=32, schedule="constant"),
                   device=torch.device("cpu"))
    assert {h["lr"] for h in constant.history} == {1e-2}
    assert fitted.history[-1]["loss"] < fitted.history[0]["loss"]


def test_a_diverging_loss_ends_training_at_the_last_good_epoch():
    calls = []

    def validate(model):
        calls.append(1)
        return 0.5

    fitted = fit(_net, Blobs(fill=np.inf), validate, FitConfig(epochs=3, lr=1e-2, batch_size=32),
                 device=torch.device("cpu"))
    assert fitted.status == "diverged" and fitted.extras["diverged"]["epoch"] == 1
    assert not fitted.improved and calls == []  # the diverged epoch is never scored
    assert all(torch.isfinite(v).all() for v in fitted.model.state_dict().values())


def test_steps_per_epoch_caps_an_epoch():
    fitted = fit(_net, Blobs(), lambda m: 0.0, FitConfig(epochs=2, lr=1e-2, batch_size=16, steps_per_epoch=2),
                 device=torch.device("cpu"))
    assert [h["steps"] for h in fitted.history] == [2, 2] and fitted.steps == 4


@pytest.mark.parametrize("ema", [None, 0.9])
def test_a_resumed_training_ends_with_the_same_weights(ema):
    config = FitConfig(epochs=4, lr=1e-2, batch_size=16, seed=3, ema_decay=ema)
    score = lambda m: float(-sum(p.detach().abs().sum() for p in m.parameters()))  # noqa: E731 - varies with the weights
    whole = fit(_net, Blobs(), score, config, device=torch.device("cpu"))
    saved = {}

    def keep(entry, training):
        if entry["epoch"] == 2:
            saved["state"] = training.state()

    fit(_net, Blobs(), score, config, device=torch.device("cpu"), on_epoch=keep)
    # the kept state is epoch 2's, not a view of the weights that trained on
    assert not all(torch.equal(v, whole.model.state_dict()[k]) for k, v in saved["state"]["model"].items())
    resumed = fit(_net, Blobs(), score, config, device=torch.device("cpu"), resume=saved["state"])
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4] and resumed.best_epoch == whole.best_epoch
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_seeded_runs_are_identical_and_seeds_differ():
    config = FitConfig(epochs=2, lr=1e-2, batch_size=16, seed=1)
    a = fit(_net, Blobs(), lambda m: 0.0, config, device=torch.device("cpu")).model.state_dict()
    b = fit(_net, Blobs(), lambda m: 0.0, config, device=torch.device("cpu")).model.state_dict()
    c = fit(_net, Blobs(), lambda m: 0.0, FitConfig(epochs=2, lr=1e-2, batch_size=16, seed=2),
            device=torch.device("cpu")).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bad_recipes_are_refused():
    from n2nas.errors import ConfigError

    with pytest.raises(ConfigError):
        FitConfig(epochs=1, lr=1e-3, batch_size=8, optimizer="sgd")
    with pytest.raises(ConfigError):
        FitConfig(epochs=1, lr=1e-3, batch_size=8, schedule="cosine")
    assert not math.isnan(FitConfig.diagnosenet().lr)
