"""The finals: the best derived children and the default architecture, trained from the same fresh weights for the
same passes, decide the search's result."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

import n2nas
from n2nas.errors import ConfigError
from n2nas.searching.finals import FinalsConfig, finalists, run_finals
from n2nas.searching.loop import SearchConfig
from n2nas.searching.run_folder import ranked_finals
from n2nas.searching.screen import ScreenConfig
from tests.test_screen import CountingRunner, tiny_data  # noqa: F401  (tiny_data: a fixture)


def _trial(step, phase, window, reward, status="ok"):
    return {"step": step, "phase": phase, "sample": {"window": window}, "reward": reward, "status": status}


def test_finalists_are_the_best_derived_children_then_the_reference():
    trials = [_trial(0, "controller", "z", 0.9), _trial(1, "derive", "a", 0.3), _trial(2, "derive", "b", 0.5),
              _trial(3, "derive", "c", 0.4), _trial(4, "derive", "d", None, "failed")]
    assert finalists(trials, {"window": "ref"}, 2) == [{"window": "b"}, {"window": "c"}, {"window": "ref"}]
    assert finalists(trials, {"window": "b"}, 2) == [{"window": "b"}, {"window": "c"}]  # no repeats
    assert finalists(trials, None, 5) == [{"window": "b"}, {"window": "c"}, {"window": "a"}]
    # spread: the best of each value of a token first, then the rest by reward
    kinds = [{**t, "sample": {**t["sample"], "act": act}} for t, act in zip(trials, "xxxyy")]
    assert [s["window"] for s in finalists(kinds, None, 2, spread="act")] == ["b", "c"]
    kinds[3]["sample"]["act"] = "x"  # one value only: plain reward order
    assert [s["window"] for s in finalists(kinds, None, 2, spread="act")] == ["b", "c"]
    kinds[1]["sample"]["act"] = "y"
    assert [s["window"] for s in finalists(kinds, None, 2, spread="act")] == ["b", "a"]


def test_finals_train_from_the_initial_weights_for_equal_passes_and_restore_the_runner(tmp_path):
    runner = CountingRunner()
    runner.current = {"shared": 500}  # the trained supernet
    scores = {"a": 0.4, "b": 0.7, "c": 0.5}
    candidates = [{"window": w} for w in scores]
    result = run_finals(FinalsConfig(passes=2.0, min_steps=1, survivors=0, ema_decay=None), runner, {"steps": {}}, candidates, 10,
                        lambda s: scores[s["window"]], tmp_path / "final", lambda: None, scale=[1.0, 0.5, 2.0])
    assert result.winner == {"window": "b"}
    assert dict(runner.steps) == {"a": 20, "b": 10, "c": 40}  # 2 passes: half the steps at twice the batch
    assert result.state == {"steps": {"b": 10}}  # from the initial weights, not the supernet's
    assert runner.current == {"shared": 500}
    assert run_finals(FinalsConfig(), runner, {"steps": {}}, candidates[:1], 10, lambda s: 0.0, tmp_path / "x",
                      lambda: None) is None


def test_the_survivors_train_longer_and_their_longer_score_decides(tmp_path):
    runner = CountingRunner()
    early = {"a": 0.4, "b": 0.7, "c": 0.5}
    late = {"b": 0.72, "c": 0.8}  # c converges slower but ends higher: the second rung must see that

    def score(sample):
        w = sample["window"]
        return late[w] if runner.current.get(w, 0) > 20 * (0.5 if w == "b" else 2.0 if w == "c" else 1.0) else early[w]

    candidates = [{"window": w} for w in early]
    result = run_finals(FinalsConfig(passes=2.0, min_steps=1, survivors=2, growth=3.0, ema_decay=None), runner, {"steps": {}},
                        candidates, 10, score, tmp_path / "final", lambda: None, scale=[1.0, 0.5, 2.0])
    assert dict(runner.steps) == {"a": 20, "b": 30, "c": 120}  # the best two go on to 3x the passes
    assert result.winner == {"window": "c"} and result.state == {"steps": {"c": 120}}
    assert [len(r) for r in result.rungs] == [3, 2]
    assert FinalsConfig(survivors=2).rungs(2) == [2] and FinalsConfig(survivors=0).rungs(4) == [4]


def test_a_carried_reference_reaches_the_survivors_rung_whatever_its_first_score(tmp_path, monkeypatch):
    from types import SimpleNamespace

    early = {"a": 0.7, "b": 0.6, "ref": 0.5}
    runner = CountingRunner()

    def score(sample):
        w = sample["window"]
        return 0.8 if w == "ref" and runner.current.get(w, 0) > 20 else early[w]

    candidates = [{"window": w} for w in early]
    config = FinalsConfig(passes=2.0, min_steps=1, survivors=1, growth=3.0, ema_decay=None)
    result = run_finals(config, runner, {"steps": {}}, candidates, 10, score, tmp_path / "carried", lambda: None,
                        carried=2)
    assert [[r["preprocessing"]["window"] for r in rung] for rung in result.rungs] == [["ref", "a", "b"], ["ref", "a"]]
    assert result.winner == {"window": "ref"} and dict(runner.steps) == {"a": 60, "b": 20, "ref": 60}
    plain = run_finals(config, CountingRunner(), {"steps": {}}, candidates, 10, lambda s: early[s["window"]],
                       tmp_path / "plain", lambda: None)
    # a first rung cut short by the time left still trains the carried reference (it goes first)
    clock = {"t": 0.0}
    monkeypatch.setattr("n2nas.searching.screen.time", SimpleNamespace(monotonic=lambda: clock["t"]))

    class TimedRunner(CountingRunner):
        def train_shared(self, samples, rule=None):
            clock["t"] += len(samples)
            return super().train_shared(samples, rule)

    timed = TimedRunner()
    cut = run_finals(config, timed, {"steps": {}}, candidates, 10, lambda s: early[s["window"]], tmp_path / "cut",
                     lambda: 50.0 - clock["t"], carried=2)
    assert [r["preprocessing"]["window"] for r in cut.rungs[0]] == ["ref", "a"] and "b" not in timed.steps
    assert [len(r) for r in plain.rungs] == [3, 1] and plain.winner == {"window": "a"}


def _timed_finals(tmp_path, monkeypatch, stretch, left_s, step_s=None, clock=None):
    """Finals of three candidates where a step takes 1 s (or ``step_s[window]``) of a clock that only training
    advances."""
    from types import SimpleNamespace

    clock = {"t": 0.0} if clock is None else clock
    monkeypatch.setattr("n2nas.searching.screen.time", SimpleNamespace(monotonic=lambda: clock["t"]))

    class TimedRunner(CountingRunner):
        def train_shared(self, samples, rule=None):
            clock["t"] += sum((step_s or {}).get(s["window"], 1.0) for s in samples)
            return super().train_shared(samples, rule)

    runner = TimedRunner()
    scores = {"a": 0.4, "b": 0.7, "c": 0.5}
    config = FinalsConfig(passes=2.0, min_steps=1, survivors=2, growth=3.0, ema_decay=None, stretch=stretch)
    run_finals(config, runner, {"steps": {}}, [{"window": w} for w in scores], 10, lambda s: scores[s["window"]],
               tmp_path / f"final{stretch}-{left_s}", lambda: left_s - clock["t"])
    return dict(runner.steps)


def test_the_survivors_rung_stretches_into_the_time_left_up_to_its_cap(tmp_path, monkeypatch):
    # rung one: 3 x 20 steps (60 s); the survivors b and c then add 40 steps each (80 s) at 1 s per step
    assert _timed_finals(tmp_path, monkeypatch, 1.0, 1000.0) == {"a": 20, "b": 60, "c": 60}  # no stretch asked
    assert _timed_finals(tmp_path, monkeypatch, 2.0, 1000.0) == {"a": 20, "b": 100, "c": 100}  # capped: twice the 40 added
    # 150 s left after rung one: 90% of it is 135 s for 80 steps -> factor 1.6875 -> 67 added steps each
    assert _timed_finals(tmp_path, monkeypatch, 2.0, 150.0 + 60.0) == {"a": 20, "b": 87, "c": 87}
    assert _timed_finals(tmp_path, monkeypatch, 2.0, 60.0 + 70.0) == {"a": 20, "b": 20, "c": 20}  # 80 s do not fit in 70: no rung two
    with pytest.raises(ConfigError, match="finals.stretch"):
        FinalsConfig(stretch=0.5)


def test_a_first_rung_candidate_that_would_overrun_is_not_started(tmp_path, monkeypatch):
    clock = {"t": 0.0}
    # 50 s left, 20 s a candidate: a and b fit, c (20 s with 10 left) is left out and a and b are ranked
    assert _timed_finals(tmp_path, monkeypatch, 1.0, 50.0, clock=clock) == {"a": 20, "b": 20}
    assert clock["t"] == 40.0


def test_the_stretch_is_sized_by_each_survivors_own_step_time(tmp_path, monkeypatch):
    # rung one: a and b at 1 s a step, c at 4 s (20 + 20 + 80 s); survivors b and c add 40 steps each = 200 s, which
    # the rung's mean step time (2 s) would put at 160 s. With 250 s left, 90% covers 200 s x 1.125: 45 steps each.
    clock = {"t": 0.0}
    steps = _timed_finals(tmp_path, monkeypatch, 2.0, 120.0 + 250.0, step_s={"c": 4.0}, clock=clock)
    assert steps == {"a": 20, "b": 65, "c": 65}
    assert clock["t"] <= 120.0 + 250.0  # a mean step time would have trained 56 more each: 280 s, past the budget


def test_a_later_rung_outranks_an_earlier_higher_score():
    trials = [_trial(0, "final", "a", 0.9), _trial(1, "final", "b", 0.7), _trial(2, "final", "c", 0.6),
              _trial(3, "final", "d", 0.65), _trial(4, "final", "b", 0.72), _trial(5, "final", "c", 0.75),
              _trial(6, "final", "d", None, "failed"), _trial(7, "derive", "e", 0.99)]
    assert [t["sample"]["window"] for t in ranked_finals(trials)] == ["c", "b", "a"]


def test_the_best_trained_finalist_is_the_best_pipeline(tiny_data, tmp_path):
    config = replace(SearchConfig(), budget_epochs=2, shared_steps=2, controller_steps=1, children_per_step=2,
                     reward_records=8, derive_children=3, top_k=3, device="cpu",
                     fixed={"fs": 100, "window": "crop:5"}, screen=ScreenConfig.off(),
                     finals=FinalsConfig(children=2, passes=0.5, min_steps=2))
    result = n2nas.search(tiny_data, config, out=tmp_path / "run")
    final = [t for t in result.trials if t["phase"] == "final"]
    derived = sorted((t for t in result.trials if t["phase"] == "derive"), key=lambda t: (-t["reward"], t["step"]))
    assert [t["sample"] for t in final[:2]] == [t["sample"] for t in derived[:2]]
    first = len({json.dumps(t["sample"], sort_keys=True) for t in final})
    assert first in (2, 3)  # the default architecture joins unless it was one of the two
    assert len(final) == first + (2 if first == 3 else 0)  # the best two of three are trained on and rescored
    best = json.loads((tmp_path / "run" / "best_pipeline.json").read_text())
    last_rung = final[first:] or final
    # the noise rule: the cheapest finalist of the last rung whose interval against the best reaches 0
    pick = json.loads((tmp_path / "run" / "comparisons.json").read_text())["pick"]
    assert sorted(c["key"] for c in pick["candidates"]) == sorted(t["step"] for t in last_rung)
    within = [c for c in pick["candidates"] if c["interval"][1] >= 0]
    cheapest = min(within, key=lambda c: (c["flops_per_record"], c["params"], -c["score"]))
    assert [c["key"] for c in pick["candidates"] if c["picked"]] == [cheapest["key"]]
    top = next(t for t in last_rung if t["step"] == cheapest["key"])
    assert best["sample"] == top["sample"]
    assert json.loads(json.dumps(result.best(1)[0].sample)) == top["sample"]
    assert not (tmp_path / "run" / "checkpoint" / "final").exists()


def test_the_finals_estimate_covers_both_rungs():
    from types import SimpleNamespace

    from n2nas.searching.finals import finals_seconds
    from search_spaces import get_space

    ctx = SimpleNamespace(train_idx=list(range(3200)))  # ecg-cpu trains at batch 32: 100 steps per pass
    # 4 finalists x (300 steps x 0.1 s + 2 s scoring), then 2 survivors x (600 more steps x 0.1 s + 2 s)
    assert finals_seconds(FinalsConfig(), get_space("ecg-cpu"), ctx, 0.1, 2.0) == pytest.approx(128 + 124)
    assert finals_seconds(FinalsConfig(survivors=0), get_space("ecg-cpu"), ctx, 0.1, 2.0) == pytest.approx(128)
    assert finals_seconds(FinalsConfig(), get_space("ecg-cpu"), ctx, None, 2.0) == 0.0  # no step timed yet
    # a carried reference is one more candidate in the survivors' rung
    assert finals_seconds(FinalsConfig(carry_reference=True), get_space("ecg-cpu"), ctx, 0.1, 2.0) == \
        pytest.approx(128 + 3 * 62)
    # vary="dropout" on ehr-mlp-small (options 0, 0.2, 0.5): two more finalists in the first rung
    ehr = SimpleNamespace(train_idx=list(range(7680)))  # batch 768: 10 steps a pass, the 90-step minimum applies
    plain = finals_seconds(FinalsConfig(survivors=0), get_space("ehr-mlp-small"), ehr, 0.1, 2.0)
    assert plain == pytest.approx(4 * 11)
    assert finals_seconds(FinalsConfig(survivors=0, vary="dropout"), get_space("ehr-mlp-small"), ehr, 0.1,
                          2.0) == pytest.approx(6 * 11)


def test_vary_adds_the_best_finalist_with_each_other_option_once():
    from n2nas.searching.finals import options_of, varied
    from search_spaces import get_space

    best, other = {"units": 256, "dropout": 0.2}, {"units": 64, "dropout": 0.2}
    out = varied([best, other, {"units": 256, "dropout": 0.5}], "dropout", (0.0, 0.2, 0.5))
    assert out == [best, other, {"units": 256, "dropout": 0.5}, {"units": 256, "dropout": 0.0}]
    assert options_of(get_space("ehr-mlp-small").space.pinned({"dropout": 0.2}), "dropout") == (0.0, 0.2, 0.5)
    with pytest.raises(ConfigError, match="finals.vary"):
        options_of(get_space("ehr-mlp-small").space, "nope")


@pytest.mark.parametrize("make,name", [(lambda d: ScreenConfig(ema_decay=d), "screen.ema_decay"),
                                       (lambda d: FinalsConfig(ema_decay=d), "finals.ema_decay")])
def test_a_weight_average_decay_outside_the_open_interval_is_refused(make, name):
    from n2nas.errors import ConfigError

    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=name):
            make(bad)
    assert make(None).ema_decay is None and make(0.99).ema_decay == 0.99
