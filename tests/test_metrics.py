"""Metrics: CinC 2017 F1, the CinC 2020/2021 challenge score, macro AUROC/AUPRC/F1, evaluate, reward."""
import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from n2nas.data.snomed import SINUS_RHYTHM, ScoringTable, default_scoring_table
from n2nas.errors import ConfigError
from n2nas.metrics import (
    challenge_score,
    cinc2017_f1,
    cinc2017_scores,
    evaluate_predictions,
    macro_auprc,
    macro_auroc,
    macro_f1,
    paired_bootstrap,
    per_class_auroc,
    reward_metric,
)

AF, AFL = "164889003", "164890007"  # weight 0.5 between them in the 2021 table
NSR = SINUS_RHYTHM


def records_from_confusion(matrix):
    """y_true, y_pred with exactly this confusion matrix (rows true, columns predicted)."""
    pairs = [(i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


# ---------------------------------------------------------------- CinC 2017

CONFUSION = [  # true \ predicted:  N  A  O  ~
    [5, 1, 1, 1],  # N  row 8
    [0, 3, 1, 0],  # A  row 4
    [1, 0, 4, 1],  # O  row 6
    [1, 0, 0, 1],  # ~  row 2
]  # column sums:    7  4  6  3


def test_cinc2017_hand_computed():
    scores = cinc2017_scores(*records_from_confusion(CONFUSION))
    assert scores["confusion"] == CONFUSION
    # F1_c = 2 C[c,c] / (row + col): N 10/15, A 6/8, O 8/12, ~ 2/5
    assert scores["f1"] == pytest.approx({"N": 2 / 3, "A": 3 / 4, "O": 2 / 3, "~": 2 / 5})
    # mean of N, A, O only: (8/12 + 9/12 + 8/12) / 3 = 25/36; with ~ it would be lower
    assert scores["cinc2017_f1"] == pytest.approx(25 / 36)
    assert scores["cinc2017_f1"] != pytest.approx(np.mean(list(scores["f1"].values())))


def test_cinc2017_noisy_records_still_cost_normal_class():
    fixed = [row[:] for row in CONFUSION]
    fixed[3] = [0, 0, 0, 2]  # the noisy record called N is now called ~
    scores = cinc2017_scores(*records_from_confusion(fixed))
    # N column sum drops to 6: F1_N = 10/14; A and O untouched
    assert scores["f1"]["N"] == pytest.approx(5 / 7)
    assert scores["cinc2017_f1"] == pytest.approx((5 / 7 + 3 / 4 + 2 / 3) / 3)


# ---------------------------------------------------------------- CinC 2020/2021

TINY = ScoringTable(
    classes=("1", "2", NSR),
    weights=np.array([[1.0, 0.5, 0.0],
                      [0.5, 1.0, 0.2],
                      [0.0, 0.2, 1.0]]),
    abbreviations={},
)


def test_challenge_score_hand_computed_tiny_table():
    labels = np.array([[1, 0, 0],
                       [1, 1, 0],
                       [0, 0, 1]], dtype=bool)
    outputs = np.array([[1, 1, 0],
                        [0, 1, 0],
                        [0, 0, 1]], dtype=bool)
    # observed: r1 |{1,2}|=2: (1*1 + 0.5)/2 = .75; r2 |{1,2}|=2: (.5 + 1)/2 = .75; r3: 1  -> 2.5
    # correct:  r1: 1; r2 four pairs /2: (1 + .5 + .5 + 1)/2 = 1.5; r3: 1                -> 3.5
    # inactive (NSR only): r1 /2: 0; r2 |{1,2,NSR}|=3: (0 + .2)/3 = 1/15; r3: 1           -> 16/15
    # score = (2.5 - 16/15) / (3.5 - 16/15) = 21.5 / 36.5 = 43/73
    assert challenge_score(labels, outputs, TINY.classes, TINY) == pytest.approx(43 / 73)


def test_challenge_score_matches_official_loop():
    rng = np.random.default_rng(0)
    labels, outputs = rng.random((40, 3)) < 0.4, rng.random((40, 3)) < 0.4

    def official_matrix(lab, out):  # the loop of evaluate_model.py, restated
        a = np.zeros((3, 3))
        for i in range(len(lab)):
            norm = max(np.sum(np.any((lab[i], out[i]), axis=0)), 1)
            for j in np.flatnonzero(lab[i]):
                for k in np.flatnonzero(out[i]):
                    a[j, k] += 1.0 / norm
        return a

    inactive = np.zeros_like(labels)
    inactive[:, 2] = True
    obs, cor, ina = (np.sum(TINY.weights * official_matrix(labels, o)) for o in (outputs, labels, inactive))
    assert challenge_score(labels, outputs, TINY.classes, TINY) == pytest.approx((obs - ina) / (cor - ina))


def test_challenge_score_perfect_and_sinus_only():
    classes = [AF, AFL, "6374002", NSR]
    labels = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 0]], dtype=bool)
    assert challenge_score(labels, labels, classes) == pytest.approx(1.0)
    sinus = np.zeros_like(labels)
    sinus[:, 3] = True
    assert challenge_score(labels, sinus, classes) == pytest.approx(0.0)
    # all-normal data: perfect equals the baseline, the official code returns 0
    assert challenge_score(sinus, sinus, classes) == 0.0


def test_challenge_score_partial_credit_for_related_class():
    labels = np.array([[1, 0, 0]] * 4, dtype=bool)  # AF
    outputs = np.array([[0, 1, 0]] * 4, dtype=bool)  # AFL: weight 0.5, NSR: 0.25 for true AF
    # a wrong prediction touches two classes, so each record's credit is halved:
    # observed 0.5/2 = 0.25, inactive 0.25/2 = 0.125, correct 1 -> (0.25 - 0.125) / (1 - 0.125) = 1/7
    score = challenge_score(labels, outputs, [AF, AFL, NSR])
    assert 0.0 < score < 1.0 and score == pytest.approx(1 / 7)


def test_challenge_score_equivalent_codes_are_one_class():
    merged = "713427006|59118001"  # complete RBBB | RBBB
    assert merged in default_scoring_table().classes
    labels = np.array([[1, 0], [0, 1]], dtype=bool)
    assert challenge_score(labels, labels, [merged, NSR]) == pytest.approx(1.0)
    # the two codes as separate columns: predicting one when the other is true is fully correct
    truth = np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)
    swapped = np.array([[0, 1, 0], [0, 0, 1]], dtype=bool)
    assert challenge_score(truth, swapped, ["713427006", "59118001", NSR]) == pytest.approx(1.0)


def test_challenge_score_unknown_class_is_named():
    with pytest.raises(ConfigError, match="999999"):
        challenge_score(np.ones((1, 2), bool), np.ones((1, 2), bool), [AF, "999999"])


# ---------------------------------------------------------------- macro metrics


def test_macro_auroc_auprc_skip_classes_without_both_outcomes():
    y = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 0, 1], [0, 0, 0, 1], [1, 0, 0, 1]])
    s = np.array([[.9, .2, .1, .5], [.3, .8, .2, .4], [.6, .4, .3, .6], [.2, .1, .9, .5], [.4, .6, .1, .7]])
    # class 2 has no positives, class 3 no negatives: only 0 and 1 count
    assert macro_auroc(y, s) == pytest.approx(roc_auc_score(y[:, :2], s[:, :2], average="macro"))
    assert macro_auprc(y, s) == pytest.approx(average_precision_score(y[:, :2], s[:, :2], average="macro"))
    per_class = per_class_auroc(y, s, ["a", "b", "c", "d"])
    assert per_class["a"] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert math.isnan(per_class["c"]) and math.isnan(per_class["d"])
    assert math.isnan(macro_auroc(y[:, 2:], s[:, 2:]))


def test_macro_f1_skips_only_undefined_classes():
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0]])
    p = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    # class 0: F1 2/3; class 1: no positives but predicted -> 0; class 2: never true nor predicted -> skipped
    assert macro_f1(y, p) == pytest.approx((2 / 3 + 0) / 2)


# ---------------------------------------------------------------- evaluate / reward


def test_evaluate_single_label_cinc2017():
    y_true, y_pred = records_from_confusion(CONFUSION)
    probs = np.full((len(y_true), 4), 0.1)
    probs[np.arange(len(y_true)), y_pred] = 0.7
    result = evaluate_predictions(probs, y_true, ["N", "A", "O", "~"], multilabel=False)
    json.dumps(result)
    assert result["n_records"] == 20
    assert result["accuracy"] == pytest.approx(13 / 20)
    assert result["cinc2017_f1"] == pytest.approx(25 / 36)
    assert result["confusion"] == CONFUSION
    assert result["f1"]["~"] == pytest.approx(0.4)
    assert "challenge_score" not in result
    assert reward_metric("cinc2017_f1", probs, y_true, "NAO~", False) == pytest.approx(25 / 36)


def test_evaluate_multilabel_adds_challenge_score_for_scored_classes():
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
    probs = np.where(y == 1, 0.9, 0.1)
    result = evaluate_predictions(probs, y, [AF, AFL, NSR], multilabel=True)
    assert result["accuracy"] == 1.0 and result["challenge_score"] == pytest.approx(1.0)
    assert "cinc2017_f1" not in result
    other = evaluate_predictions(probs, y, ["x", "y", "z"], multilabel=True)
    assert "challenge_score" not in other and other["macro_f1"] == 1.0


def test_reward_metric_refuses_auroc_but_whole_set_macro_auroc():
    probs, y = np.array([[0.8, 0.2], [0.3, 0.7]]), np.array([0, 1])
    assert reward_metric("macro_auroc", probs, y, ["a", "b"], False) == 1.0
    for name in ("auroc", "AUC", "macro_auprc"):
        with pytest.raises(ConfigError, match="too noisy"):
            reward_metric(name, probs, y, ["a", "b"], False)
    with pytest.raises(ConfigError, match="unknown"):
        reward_metric("loss", probs, y, ["a", "b"], False)
    assert reward_metric("accuracy", probs, y, ["a", "b"], False) == 1.0


def test_the_fast_cinc2017_f1_equals_the_scikit_learn_one():
    rng = np.random.default_rng(3)
    for n in (7, 50, 400):
        truth, predicted = rng.integers(0, 4, n), rng.integers(0, 3, n)  # '~' never predicted: an empty column
        assert cinc2017_f1(predicted, truth) == pytest.approx(cinc2017_scores(truth, predicted)["cinc2017_f1"])


def test_a_paired_bootstrap_separates_a_real_gap_from_noise():
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=900, p=[0.6, 0.1, 0.25, 0.05])

    def model(accuracy):
        return np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 4, len(y)))

    good, poor, equal = model(0.8), model(0.6), model(0.8)
    gap = paired_bootstrap(cinc2017_f1, good, poor, y)
    assert gap["difference"] == pytest.approx(cinc2017_f1(good, y) - cinc2017_f1(poor, y))
    assert 0 < gap["low"] < gap["difference"] < gap["high"]
    same = paired_bootstrap(cinc2017_f1, good, equal, y)
    assert same["low"] < 0 < same["high"] and same["low"] < same["difference"] < same["high"]
    assert paired_bootstrap(cinc2017_f1, good, equal, y, seed=5)["low"] != same["low"]  # resampling is seeded
    # the percentile method (no jackknife, for large test sets) separates the same gap, with a different interval
    quick = paired_bootstrap(cinc2017_f1, good, poor, y, method="percentile")
    assert 0 < quick["low"] < quick["difference"] < quick["high"] and quick["low"] != gap["low"]


def test_macro_auroc_from_draw_counts_equals_the_ranks_of_each_resample():
    """Ties, a class without positives in some resamples and multi-label targets: every resample's value equals
    macro_auroc_ranks on the records it drew, repeated as often as drawn."""
    from n2nas.metrics import macro_auroc_counts, macro_auroc_ranks

    rng = np.random.default_rng(3)
    n = 60
    y = rng.random((n, 3)) < [0.5, 0.3, 0.05]
    scores = np.round(rng.random((n, 3)), 1)  # one decimal: many ties
    picks = [rng.integers(0, n, n) for _ in range(40)]
    counts = np.stack([np.bincount(p, minlength=n) for p in picks])
    fast = macro_auroc_counts(y, scores, counts)
    assert fast == pytest.approx([macro_auroc_ranks(y[p], scores[p]) for p in picks], abs=1e-12)
    assert any(not y[p, 2].any() for p in picks)  # the rare class drops out of some resamples, as in the ranks
    assert np.isnan(macro_auroc_counts(y[:, 2:], scores[:, 2:], np.zeros((1, n)) + (~y[:, 2])))  # negatives only
