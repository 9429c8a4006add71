"""Stage one of a search: the preprocessing screen (balanced candidates, successive halving, resume) and a search
that runs it."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

import n2nas
from n2nas.data.readers import load_physionet2017
from n2nas.presets import named
from n2nas.searching.finals import FinalsConfig
from n2nas.searching.loop import SearchConfig
from n2nas.searching.screen import (HalvingPlan, ScreenConfig, balanced_candidates, rung_sizes, run_screen,
                                    screen_candidates, screened_labels, successive_halving)
from search_spaces import get_space
from tests.conftest import copy_sample_records, default_child_flops


def test_screened_labels_are_the_free_preprocessing_tokens_but_augmentation():
    space = get_space("ecg-small").space
    assert screened_labels(space) == ["fs", "filter", "normalise", "window"]
    assert screened_labels(space.pinned({"fs": 100, "window": "crop:30"})) == ["filter", "normalise"]
    assert screened_labels(get_space("ehr-mlp-small").space) == []


def test_balanced_candidates_show_every_option_and_never_repeat():
    space = get_space("ecg-small").space
    labels = screened_labels(space)
    picks = balanced_candidates(space, labels, 9, np.random.default_rng(0))
    assert len(picks) == len({json.dumps(p, sort_keys=True) for p in picks}) == 9
    for d in space.flat:
        if d.label in labels:
            counts = Counter(str(p[d.label]) for p in picks)
            assert set(counts) == {str(o) for o in d.options}, d.label
            assert max(counts.values()) - min(counts.values()) <= 1, (d.label, counts)
    small = space.pinned({"fs": 100, "filter": "none", "normalise": "record_z"})
    assert len(balanced_candidates(small, screened_labels(small), 9, np.random.default_rng(0))) == 5  # whole grid


def test_balanced_candidates_do_not_pair_same_size_tokens_in_lockstep():
    space = get_space("ecg-12lead").space  # fs, filter and normalise have two options each
    labels = screened_labels(space)
    for seed in range(3):
        picks = balanced_candidates(space, labels, 15, np.random.default_rng(seed))
        assert len({json.dumps(p, sort_keys=True) for p in picks}) == 15
        pairs = {(p["fs"], p["filter"], p["normalise"]) for p in picks}
        assert len(pairs) > 2, pairs  # cycled in step they only ever met as two combinations
        for label in labels:
            counts = Counter(str(p[label]) for p in picks)
            assert max(counts.values()) - min(counts.values()) <= 1, (label, counts)


def test_the_default_preprocessing_leads_the_candidates_when_asked():
    space = get_space("ecg-12lead").space
    labels, base = screened_labels(space), space.default_sample()
    default = {k: base[k] for k in labels}
    assert default == {"leads": 12, "fs": 100, "filter": "none", "normalise": "record_z", "window": "crop:5"}
    for seed in range(3):
        plain = screen_candidates(ScreenConfig(candidates=9), space, labels, base, np.random.default_rng(seed))
        led = screen_candidates(ScreenConfig(candidates=9, default_candidate=True), space, labels, base,
                                np.random.default_rng(seed))
        assert len(plain) == 9 and led[0] == default and led.count(default) == 1 and len(led) in (8, 9)
        assert len({json.dumps(p, sort_keys=True) for p in led}) == len(led)
    assert named(SearchConfig, "12-lead").screen.default_candidate
    assert not named(SearchConfig, "cpu-hour").screen.default_candidate


def test_rung_sizes_narrow_to_one():
    assert rung_sizes(9, 1 / 3) == [9, 3, 1]
    assert rung_sizes(4, 0.5) == [4, 2, 1]
    assert rung_sizes(1, 0.5) == [1]


class CountingRunner:
    """Stands in for a runner: its 'weights' count the steps trained per preprocessing setting."""

    def __init__(self, fail_on_train: bool = False):
        self.steps: Counter = Counter()
        self.current: dict = {}
        self.fail_on_train = fail_on_train

    def state_dict(self):
        return {"steps": dict(self.current)}

    def load_state_dict(self, state):
        self.current = dict(state["steps"])

    def train_shared(self, samples, rule=None):
        assert not self.fail_on_train, "a resumed screen retrained a finished candidate"
        assert rule == "uniform", "a screen candidate trains its own child alone, never a sandwich"
        key = samples[0]["window"]
        self.current[key] = self.current.get(key, 0) + len(samples)
        self.steps[key] += len(samples)
        return {"shared_loss": 1.0, "shared_failed": 0}


def _screen(runner, folder, scores, calls):
    candidates = [{"window": w} for w in scores]

    def score(sample):
        calls.append(sample["window"])
        return scores[sample["window"]]

    return run_screen(ScreenConfig(candidates=len(candidates), min_steps=1, ema_decay=None), runner, {"fs": 100}, candidates, 10, score, folder,
                      lambda: None)


def test_successive_halving_trains_survivors_longer_and_picks_the_best(tmp_path):
    scores = {"a": 0.2, "b": 0.6, "c": 0.4, "d": 0.1, "e": 0.5, "f": 0.3}
    runner, calls = CountingRunner(), []
    result = _screen(runner, tmp_path / "screen", scores, calls)
    assert result.winner == {"window": "b"}
    assert [len(r) for r in result.rungs] == [6, 2]  # 6 -> 2 survivors; the shared stage trains the last one
    assert sorted(runner.steps) == sorted(scores)
    # one pass (10 steps) each, then the two best ("b", "e") to three passes in all
    assert {k: v for k, v in runner.steps.items()} == {"a": 10, "b": 30, "c": 10, "d": 10, "e": 30, "f": 10}
    assert result.state == {"steps": {"b": 30}}  # the winner's own weights, never another candidate's
    assert calls == list(scores) + ["b", "e"]


def test_the_default_candidate_trains_in_every_rung_and_wins_when_it_ends_best(tmp_path):
    runner = CountingRunner()
    early = {"a": 0.1, "b": 0.6, "c": 0.4, "d": 0.2, "e": 0.5, "f": 0.3}  # a, the default, is last after one pass

    def score(sample, late=30):
        w, steps = sample["window"], runner.current.get(sample["window"], 0)
        return early[w] if w != "a" or steps <= 10 else 0.55 if steps <= late else 0.9

    candidates = [{"window": w} for w in early]
    config = ScreenConfig(candidates=6, min_steps=1, ema_decay=None, default_candidate=True)
    result = run_screen(config, runner, {"fs": 100}, candidates, 10, score, tmp_path / "carried", lambda: None)
    # 6 -> 2 (+ the default) -> the best other alone against the default, at 1, 3 and 9 passes
    assert [[r["preprocessing"]["window"] for r in rung] for rung in result.rungs] == \
        [list(early), ["a", "b", "e"], ["a", "b"]]
    assert result.winner == {"window": "a"} and runner.steps["a"] == runner.steps["b"] == 90
    runner = CountingRunner()  # the default leads after three passes: no duel is left to run
    leading = run_screen(config, runner, {"fs": 100}, candidates, 10, lambda s: score(s, late=10),
                         tmp_path / "leading", lambda: None)
    assert [len(r) for r in leading.rungs] == [6, 3] and leading.winner == {"window": "a"} and runner.steps["a"] == 30
    plain = run_screen(replace(config, default_candidate=False), CountingRunner(), {"fs": 100}, candidates, 10,
                       lambda s: early[s["window"]], tmp_path / "plain", lambda: None)
    assert [len(r) for r in plain.rungs] == [6, 2] and plain.winner == {"window": "b"}


def test_a_killed_screen_resumes_without_retraining(tmp_path):
    scores = {"a": 0.2, "b": 0.6, "c": 0.4}
    first = _screen(CountingRunner(), tmp_path / "screen", scores, [])
    again = _screen(CountingRunner(fail_on_train=True), tmp_path / "screen", scores, [])
    assert again.winner == first.winner and again.state == first.state


def test_failed_candidates_rank_last(tmp_path):
    scores = {"a": None, "b": 0.1, "c": float("nan")}
    assert _screen(CountingRunner(), tmp_path / "screen", scores, []).winner == {"window": "b"}


class DriftingRunner:
    """Stands in for a runner whose one weight grows by one per step; scoring reads the weight loaded then."""

    def __init__(self):
        self.w = torch.zeros(1)
        self.seen: list[float] = []

    def state_dict(self):
        return {"supernet": {"w": self.w.clone()}}

    def load_state_dict(self, state):
        self.w = state["supernet"]["w"].clone()

    def train_shared(self, samples, rule=None):
        self.w += len(samples)
        return {"shared_loss": 1.0, "shared_failed": 0}


def test_halving_scores_an_average_of_the_weights_and_trains_on_from_the_raw_ones(tmp_path):
    runner = DriftingRunner()

    def score(sample):
        runner.seen.append(float(runner.w))
        return {"a": 0.5, "b": 0.4}[sample["window"]]

    candidates = [{"window": "a"}, {"window": "b"}]
    result = successive_halving(runner, HalvingPlan([2, 1], 40, 2.0, ema_decay=0.9), {}, candidates, score,
                                tmp_path / "s", lambda: None)
    first_a, first_b, second_a = runner.seen
    assert 30.0 < first_a < 40.0 and first_a == first_b  # an average of 0..40 that leans to the recent weights
    assert 70.0 < second_a < 80.0  # rung two trained on from the raw 40, not from the average
    assert float(result.state["supernet"]["w"]) == 80.0  # the winner's state is its raw weights
    plain = DriftingRunner()
    successive_halving(plain, HalvingPlan([2], 40, 2.0), {}, candidates,
                       lambda s: plain.seen.append(float(plain.w)) or 0.1, tmp_path / "raw2", lambda: None)
    assert plain.seen == [40.0, 40.0]  # without ema_decay the raw weights are scored


def test_a_resumed_halving_keeps_the_weight_average(tmp_path):
    candidates = [{"window": "a"}, {"window": "b"}]
    runs = []
    for _ in range(2):
        runner = DriftingRunner()
        successive_halving(runner, HalvingPlan([2], 40, 2.0, ema_decay=0.9), {}, candidates,
                           lambda s, r=runner: r.seen.append(float(r.w)) or 0.1, tmp_path / "s", lambda: None)
        runs.append(runner.seen)
    assert runs[1] == runs[0]  # the second run loaded each candidate's saved average instead of training again


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screen2017")
    copy_sample_records(folder, per_class=4)
    return load_physionet2017(folder)


def test_a_search_screens_then_shares_weights_only_within_the_winner(tiny_data, tmp_path):
    # short finals (the default's 90-step minimum is 720 steps here): the screen is under test, the finals only
    # have to train on the winner's preprocessing
    config = replace(SearchConfig(), budget_epochs=2, shared_steps=2, controller_steps=1, children_per_step=2,
                     reward_records=8, derive_children=2, top_k=1, device="cpu",
                     fixed={"fs": 100, "filter": "none"}, screen=ScreenConfig(candidates=4, keep=0.5,
                                                                              first_passes=0.5, min_steps=2),
                     finals=FinalsConfig(passes=0.5, min_steps=4))
    result = n2nas.search(tiny_data, config, out=tmp_path / "run")
    screen = [t for t in result.trials if t["phase"] == "screen"]
    assert [t["step"] for t in screen] == list(range(6))  # four candidates, then the best two again
    keys = ("normalise", "window")

    def setting(t):
        return {k: t["sample"][k] for k in keys}

    def best(trials):
        return max(trials, key=lambda t: (t["reward"], -t["step"]))

    top_two = sorted(screen[:4], key=lambda t: (-t["reward"], t["step"]))[:2]
    assert [setting(t) for t in screen[4:]] == [setting(t) for t in top_two]
    # the winner by the noise rule: the cheaper of the last rung's two unless the other beats it beyond the noise
    comparison = json.loads((tmp_path / "run" / "comparisons.json").read_text())["screen"]["candidates"]
    assert sorted(c["key"] for c in comparison) == [4, 5]
    within = [c for c in comparison if c["interval"][1] >= 0]
    assert any(c["key"] == best(screen[4:])["step"] for c in within)  # the best is always within its own noise
    picked = min(within, key=lambda c: (c["flops_per_record"], c["params"], -c["score"]))
    assert [c["key"] for c in comparison if c["picked"]] == [picked["key"]]
    winner = setting(screen[picked["key"]])
    later = [t for t in result.trials if t["phase"] != "screen"]
    assert later and all({k: t["sample"][k] for k in keys} == winner for t in later)
    assert not (tmp_path / "run" / "checkpoint" / "screen").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["phase_seconds"]["screen"] > 0


def test_hard_limits_below_the_probe_still_let_the_screen_rank_the_preprocessing(tiny_data, tmp_path):
    from n2nas.measure.reward import RewardConfig
    from n2nas.searching.preparation import pins
    from n2nas.searching.progress import score_board

    fixed = {"fs": 100, "filter": "none", "window": "crop:10"}  # one window: every probe costs the same FLOPs
    config = replace(SearchConfig(), budget_epochs=2, shared_steps=2, controller_steps=1, children_per_step=2,
                     reward_records=8, derive_children=4, top_k=1, device="cpu", fixed=fixed,
                     screen=ScreenConfig(candidates=4, keep=0.5, first_passes=0.5, min_steps=2),
                     finals=FinalsConfig(passes=0.5, min_steps=4))
    space_def = get_space(config.space)
    probe = default_child_flops(config.space, space_def.space.pinned(pins(space_def, config)), tiny_data)
    limit = 0.9 * probe  # the screen's probe, the default architecture, breaks it; smaller kernels do not
    result = n2nas.search(tiny_data, replace(config, reward=RewardConfig(max_flops=limit)), out=tmp_path / "run")
    screen = [t for t in result.trials if t["phase"] == "screen"]
    # scored (not skipped as infeasible), so the ranking is by F1 and not by candidate order
    assert screen and all(t["status"] == "ok" and t["reward"] is not None for t in screen)
    assert all("flops" in t["limits_waived"][0] for t in screen)
    keys = ("normalise",)
    winner = max(screen[4:], key=lambda t: (t["reward"], -t["step"]))
    later = [t for t in result.trials if t["phase"] != "screen"]
    assert later and all({k: t["sample"][k] for k in keys} == {k: winner["sample"][k] for k in keys}
                         for t in later)
    # the probe is not trained again as a finalist, and no result breaks the limit
    assert all(t["sample"] != winner["sample"] for t in later if t["phase"] == "final")
    assert all(t["status"] == "infeasible" for t in later if (t.get("flops_per_record") or 0) > limit)
    assert result.pipelines and all(p.scores["flops_per_record"] <= limit for p in result.pipelines)
    # nor does the progress display show the probe as the best so far
    scored, _, _, best_flops = score_board(screen)
    assert scored == len(screen) and best_flops is None
    assert score_board(result.trials)[3] <= limit


def test_finals_leave_out_a_reference_that_breaks_the_hard_limits(tiny_data, tmp_path):
    from n2nas.measure.reward import RewardConfig
    from n2nas.searching.preparation import pins

    # every preprocessing label pinned, so no screen runs and nothing marks the default architecture beforehand
    fixed = {"fs": 100, "filter": "none", "window": "crop:10", "normalise": "record_z"}
    config = replace(SearchConfig(), budget_epochs=2, shared_steps=2, controller_steps=1, children_per_step=2,
                     reward_records=8, derive_children=3, derive_top=0, top_k=1, device="cpu", fixed=fixed,
                     screen=ScreenConfig.off(), finals=FinalsConfig(passes=0.5, min_steps=4, survivors=0))
    space_def = get_space(config.space)
    space = space_def.space.pinned(pins(space_def, config))
    limit = 0.9 * default_child_flops(config.space, space, tiny_data)
    result = n2nas.search(tiny_data, replace(config, reward=RewardConfig(max_flops=limit)), out=tmp_path / "run")
    final = [t for t in result.trials if t["phase"] == "final"]
    assert len(final) >= 2  # the finals ran, on the derived children alone
    reference = json.dumps(space.default_sample(), sort_keys=True)  # skips: tuples here, lists in the log
    assert all(json.dumps(t["sample"], sort_keys=True) != reference for t in final)
    assert all(t["status"] == "ok" and t["flops_per_record"] <= limit for t in final)
    assert result.pipelines and all(p.scores["flops_per_record"] <= limit for p in result.pipelines)
