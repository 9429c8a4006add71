"""Picking within the noise (n2nas/searching/noise.py): paired-bootstrap intervals against the best and the rule that
takes the cheapest candidate within them."""
from __future__ import annotations

import numpy as np
import pytest

from n2nas.metrics import CINC2017_CLASSES, reward_metric
from n2nas.searching.noise import (Compared, cheapest_within_noise, compare, compare_trials, metric_scorer,
                                   read_comparisons, record_comparison, save_predictions)


def _model(y: np.ndarray, hit_rate: float, seed: int) -> np.ndarray:
    """Probabilities that put most mass on the true class for about ``hit_rate`` of the records."""
    rng = np.random.default_rng(seed)
    p = rng.random((len(y), 4))
    hit = rng.random(len(y)) < hit_rate
    p[np.arange(len(y))[hit], y[hit]] += 2.0
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def three():
    y = np.random.default_rng(0).integers(0, 4, 900)
    return y, [_model(y, 0.80, 1), _model(y, 0.79, 2), _model(y, 0.55, 3)]


@pytest.mark.parametrize("name", ["cinc2017_f1", "macro_f1", "accuracy"])
def test_scores_are_the_reward_metric_and_the_fast_path_agrees_with_the_plain_one(three, name):
    y, probs = three
    fast = metric_scorer(name, CINC2017_CLASSES, False)
    plain = lambda p, t: float(reward_metric(name, p, t, CINC2017_CLASSES, False))  # noqa: E731 - no fast path
    cands = [{"key": i, "flops": f, "params": 1} for i, f in enumerate((3.0, 1.0, 0.5))]
    a, b = compare(cands, probs, y, fast, resamples=200), compare(cands, probs, y, plain, resamples=200)
    for x, z, p in zip(a, b, probs):
        assert x.score == pytest.approx(float(reward_metric(name, p, y, CINC2017_CLASSES, False)))
        assert (x.low, x.high) == pytest.approx((z.low, z.high))  # the same resamples either way


def test_the_cheapest_candidate_within_the_noise_is_picked(three):
    y, probs = three
    compared = compare([{"key": k, "flops": f, "params": 1} for k, f in zip("abc", (3.0, 1.0, 0.5))], probs, y,
                       metric_scorer("cinc2017_f1", CINC2017_CLASSES, False))
    by_key = {c.key: c for c in compared}
    assert by_key["a"].difference == 0 and by_key["a"].within_noise  # the best is within its own noise
    assert by_key["b"].low < 0 < by_key["b"].high  # one point of accuracy apart: noise on 900 records
    assert not by_key["c"].within_noise and by_key["c"].high < 0  # far worse: outside it
    assert cheapest_within_noise(compared).key == "b"  # cheaper than the best, and not worse beyond the noise
    alone = [Compared("x", 0.9, 0.0, 0.0, 0.0, 5.0, 1), Compared("y", 0.5, -0.4, -0.5, -0.3, 1.0, 1)]
    assert cheapest_within_noise(alone).key == "x"  # a cheap candidate clearly worse is never picked


def test_kept_predictions_and_comparisons_round_trip(three, tmp_path):
    y, probs = three
    trials = [{"step": s, "flops_per_record": f, "params": 10} for s, f in ((4, 2e6), (7, 1e6))]
    for t, p in zip(trials, probs):
        save_predictions(tmp_path, t["step"], p)
    compared = compare_trials(tmp_path, trials, y, metric_scorer("cinc2017_f1", CINC2017_CLASSES, False))
    assert [c.key for c in compared] == [4, 7]
    assert compare_trials(tmp_path, trials[:1], y, metric_scorer("accuracy", CINC2017_CLASSES, False)) is None
    record_comparison(tmp_path, "pick", compared, cheapest_within_noise(compared).key, {4: "reference"})
    kept = read_comparisons(tmp_path)["pick"]
    assert "cheapest" in kept["rule"] and [c["picked"] for c in kept["candidates"]].count(True) == 1
    assert kept["candidates"][0]["label"] == "reference"
