"""Controllers: determinism, exact resume, and the ENAS math pinned (log-prob, entropy, baseline, clipping)."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from controllers import CONTROLLERS, controller_presets, make_controller
from controllers.enas import ENASConfig, ENASController
from controllers.evolution import EvolutionConfig, EvolutionController
from controllers.exhaustive import GridController
from n2nas.errors import ConfigError
from n2nas.space import KINDS, Choice, Repeat, SearchSpace, Skips

SPACE = SearchSpace("toy", (Choice("fs", (100, 150, 300), "preprocessing"),
                            Repeat("layer", 4, (Choice("op", ("a", "b", "c", "d")), Skips("skip"))),
                            Choice("lr", (1e-3, 1e-2), "training")))
# every registered controller with each of its presets (None: one without any): a new one is covered here too
VARIANTS = [(name, preset) for name in CONTROLLERS for preset in (controller_presets(name) or [None])]


def roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name,preset", VARIANTS)
def test_seeded_valid_and_resumable(name, preset):
    a, b = (make_controller(name, SPACE.tokens, seed=3, preset=preset) for _ in range(2))
    first = a.sample(5)
    assert first == b.sample(5)
    for s in first:
        SPACE.validate(SPACE.decode(s))
    rewards = [0.1, float("nan"), 0.5, 0.3, 0.2]
    a.update(first, rewards)
    saved = roundtrip(a.state_dict())
    expected = [a.sample(4) for _ in range(3)]
    c = make_controller(name, SPACE.tokens, seed=99, preset=preset)
    c.load_state_dict(saved)
    assert [c.sample(4) for _ in range(3)] == expected


def one_token_controller(**cfg):
    space = SearchSpace("one", (Choice("x", (0, 1, 2)),))
    return ENASController(space.tokens, seed=0, config=ENASConfig(**cfg)), space


def log_prob_and_entropy(ctl: ENASController, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability and entropy of ``samples`` (index dicts) under ``ctl``'s policy, computed here from its
    public pieces for spaces of choices only: the LSTM stepped token by token from ``policy.start`` (plus the kind
    embedding), each head's logits divided by the temperature and bounded by ``tanh_constant * tanh``, the chosen
    option's embedding fed to the next step. ``test_update_optimises_these_log_probs_and_entropies`` ties them to
    what the controller trains on."""
    p, cfg, n = ctl.policy, ctl.config, len(samples)
    zeros = torch.zeros(n, cfg.lstm_size)
    state = [(zeros, zeros) for _ in p.cells]
    x = p.start.expand(n, -1)
    log_prob, entropy = torch.zeros(n), torch.zeros(n)
    with torch.no_grad():
        for i, t in enumerate(ctl.tokens):
            assert not t.is_skip, "choices only"
            if p.kind is not None:
                x = x + p.kind(torch.full((n,), KINDS.index(t.kind), dtype=torch.long))
            stepped = []
            for cell, hc in zip(p.cells, state):
                x, c = cell(x, hc)
                stepped.append((x, c))
            state = stepped
            logits = p.heads[str(i)](x)
            if cfg.temperature is not None:
                logits = logits / cfg.temperature
            if cfg.tanh_constant is not None:
                logits = cfg.tanh_constant * torch.tanh(logits)
            log_p = torch.log_softmax(logits, -1)
            pick = torch.tensor([int(s[t.label]) for s in samples])
            log_prob += log_p[torch.arange(n), pick]
            entropy -= (log_p.exp() * log_p).sum(-1)
            x = p.embeddings[str(i)](pick)
    return log_prob, entropy


CHOICES = SearchSpace("choices", (Choice("fs", (100, 150, 300), "preprocessing"), Choice("op", ("a", "b")),
                                  Choice("lr", (1e-3, 1e-2, 1e-1, 1.0), "training")))


@pytest.mark.parametrize("cfg", [{"tanh_constant": None, "kind_embedding": False}, {"tanh_constant": 0.5},
                                 {"tanh_constant": None, "temperature": 1e6}, {"temperature": 5.0}])
@pytest.mark.parametrize("space", ["one", "choices"])
def test_update_optimises_these_log_probs_and_entropies(cfg, space):
    # one child, reward 1, entropy weight 0, baseline decay 0.9: the baseline becomes 0.1 before use, the advantage
    # 0.9, and the REINFORCE loss -0.9 log p(child), positive: minimising it raises a rewarded child's log-prob
    if space == "one":
        ctl, _ = one_token_controller(entropy_weight=0.0, baseline_decay=0.9, **cfg)
        child = {"x": 1}
    else:
        ctl = ENASController(CHOICES.tokens, seed=0, config=ENASConfig(entropy_weight=0.0, baseline_decay=0.9, **cfg))
        child = {"fs": 2, "op": 0, "lr": 1}
    lp, ent = log_prob_and_entropy(ctl, [child])
    stats = ctl.update([child], [1.0])
    assert stats["entropy"] == pytest.approx(ent.item(), rel=1e-5)
    assert stats["loss"] == pytest.approx(-0.9 * lp.item(), rel=1e-5) and stats["loss"] > 0


def test_enas_log_prob_and_entropy_match_the_softmax():
    ctl, _ = one_token_controller(tanh_constant=None, kind_embedding=False)
    lp, ent = log_prob_and_entropy(ctl, [{"x": 0}, {"x": 1}, {"x": 2}])
    probs = lp.exp()
    assert torch.all(lp <= 0) and probs.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.all(ent > 0)
    assert torch.allclose(ent, -(probs * probs.log()).sum().expand(3), atol=1e-6)


def test_tanh_constant_bounds_the_logits_and_temperature_flattens():
    hot, _ = one_token_controller(tanh_constant=0.5)
    lp, _ = log_prob_and_entropy(hot, [{"x": 0}, {"x": 1}, {"x": 2}])
    # logits in [-0.5, 0.5] cannot make any probability exceed e^1 / (e^1 + 2 e^0) ... bound the ratio instead
    assert (lp.max() - lp.min()).item() <= 1.0 + 1e-6
    cold, _ = one_token_controller(tanh_constant=None, temperature=1e6)
    _, ent = log_prob_and_entropy(cold, [{"x": 0}])
    assert ent.item() == pytest.approx(math.log(3), abs=1e-4)


def test_baseline_follows_the_released_update_rule():
    ctl, _ = one_token_controller(baseline_decay=0.9, entropy_weight=0.0)
    ctl.update([{"x": 1}], [1.0])
    assert ctl.baseline == pytest.approx(0.1)  # 0 - 0.1 * (0 - 1)
    ctl.update([{"x": 1}, {"x": 2}], [0.5, float("nan")])
    assert ctl.baseline == pytest.approx(0.1 - 0.1 * (0.1 - 0.5))  # NaN child ignored


def test_gradient_clipping_is_applied():
    ctl, _ = one_token_controller(grad_clip=1e-3, lr=1.0)
    before = [q.detach().clone() for q in ctl.policy.parameters()]
    seen = []
    original = torch.optim.Adam.step

    def spy(opt, *a, **k):
        seen.append(torch.sqrt(sum((q.grad ** 2).sum() for q in ctl.policy.parameters() if q.grad is not None)))
        return original(opt, *a, **k)

    torch.optim.Adam.step = spy
    try:
        stats = ctl.update([{"x": 2}] * 4, [1e6] * 4)
    finally:
        torch.optim.Adam.step = original
    assert stats["grad_norm"] > 1e-3  # the raw gradient was large ...
    assert seen[0].item() <= 1e-3 * 1.0001  # ... and the optimizer only saw the clipped one
    assert all(torch.isfinite(q).all() for q in ctl.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, ctl.policy.parameters()))


def test_reinforce_learns_a_toy_reward_up_to_the_tanh_cap():
    space = SearchSpace("t", (Choice("a", (0, 1, 2, 3)), Choice("b", (0, 1))))
    for tanh, floor in ((None, 0.97), (1.5, 0.8)):
        ctl = ENASController(space.tokens, seed=0, config=ENASConfig(lr=0.02, tanh_constant=tanh))
        for _ in range(150):
            samples = ctl.sample(8)
            ctl.update(samples, [1.0 if s["a"] == 2 else 0.0 for s in samples])
        hits = np.mean([s["a"] == 2 for s in ctl.sample(400)])
        assert hits > floor
        if tanh is not None:
            # logits squashed into [-1.5, 1.5] cap the best of 4 options at e^1.5 / (e^1.5 + 3 e^-1.5)
            cap = math.exp(1.5) / (math.exp(1.5) + 3 * math.exp(-1.5))
            assert hits < cap + 0.05


def test_skip_penalty_pulls_density_toward_target():
    space = SearchSpace("s", (Repeat("layer", 6, (Choice("op", ("a",)), Skips("skip"))),))
    ctl = ENASController(space.tokens, seed=1, config=ENASConfig(lr=0.05, skip_target=0.1, skip_weight=5.0,
                                                                 entropy_weight=0.0))

    def density():
        flags = [b for s in ctl.sample(100) for t in space.tokens if t.is_skip for b in s[t.label]]
        return np.mean(flags)

    start = density()
    for _ in range(60):
        samples = ctl.sample(4)
        ctl.update(samples, [0.5] * 4)  # constant reward: only the penalty teaches
    assert density() < min(start, 0.3)


def test_failed_children_do_not_poison_enas():
    ctl, _ = one_token_controller()
    stats = ctl.update([{"x": 0}, {"x": 1}], [float("nan"), None])
    assert stats == {"controller_skipped": 2.0} and ctl.baseline == 0.0


def test_evolution_beats_random_and_never_breeds_failures():
    space = SearchSpace("e", tuple(Choice(f"g{i}", tuple(range(6))) for i in range(6)))

    def reward(s):
        if s["g0"] == 5:
            return float("nan")  # a failing region
        return sum(v == 3 for k, v in s.items() if k != "g0") / 5

    def best_after(name, seed, n=150):
        kw = {"config": EvolutionConfig(population=20, sample_size=5)} if name == "evolution" else {}
        ctl = make_controller(name, space.tokens, seed=seed, **kw)
        best = 0.0
        for _ in range(n // 5):
            samples = ctl.sample(5)
            rs = [reward(s) for s in samples]
            ctl.update(samples, rs)
            best = max([best] + [r for r in rs if not math.isnan(r)])
        return best, ctl

    evo = [best_after("evolution", s) for s in range(4)]
    rnd = [best_after("random", s)[0] for s in range(4)]
    assert np.mean([b for b, _ in evo]) > np.mean(rnd)
    for _, ctl in evo:
        parents = [m for m in ctl.population if not math.isnan(m[1])]
        assert all(m[0]["g0"] != 5 for m in parents) or parents


def test_grid_enumerates_the_space_and_refuses_huge_grids():
    space = SearchSpace("g", (Choice("a", (1, 2, 3)), Choice("b", ("x", "y"))))
    grid = GridController(space.tokens)
    combos = grid.sample(5)
    assert not grid.exhausted
    combos += grid.sample(1)
    assert len({tuple(sorted(c.items())) for c in combos}) == space.size() == 6
    assert grid.exhausted and grid.sample(1) == combos[:1]  # then it starts again
    big = SearchSpace("big", tuple(Choice(f"c{i}", tuple(range(10))) for i in range(6)))
    with pytest.raises(ConfigError, match="1e\\+06 combinations"):
        GridController(big.tokens)


def test_unknown_controller_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown controller 'ppo'"):
        make_controller("ppo", SPACE.tokens)


def test_presets_configure_the_controller_and_unknown_ones_are_refused():
    assert make_controller("enas", SPACE.tokens, preset="paper").config == ENASConfig.paper()
    assert make_controller("enas", SPACE.tokens).config == ENASConfig.few_updates()  # the first preset
    assert make_controller("evolution", SPACE.tokens, preset="real2019").config == EvolutionConfig.real2019()
    with pytest.raises(ConfigError, match="--controller-preset.*'random' has no preset 'paper' \\(known: none\\)"):
        make_controller("random", SPACE.tokens, preset="paper")
