"""ENAS controller (Pham et al. 2018): an LSTM samples every token; skip flags by attention over earlier layers;
trained with REINFORCE against a moving-average baseline.

Follows the released macro-search code where the paper is silent: the baseline is updated *before* the advantage
is computed, the sample entropy is added to the reward, and the skip-density penalty is the KL divergence between
each skip probability and ``skip_target``. Unlike the released code, the gradient clipping is really applied.
N2NAS's addition: an embedding of the decision kind (preprocessing / architecture / training) is added to every
LSTM input so the controller can tell pipeline stages apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from controllers.base import Controller, finite, single_thread
from n2nas.presets import preset
from n2nas.space import KINDS


@dataclass(frozen=True)
class ENASConfig:
    """Controller hyperparameters; the two presets carry the published numbers, which disagree."""

    lstm_size: int = 64
    lstm_layers: int = 1
    lr: float = 1e-3
    tanh_constant: float | None = 1.5
    temperature: float | None = None
    entropy_weight: float = 1e-4
    baseline_decay: float = 0.99
    skip_target: float = 0.4
    skip_weight: float = 0.8
    grad_clip: float = 5.0
    kind_embedding: bool = True
    # None: the released code's baseline, starting at zero. "first": the baseline starts at the first scored
    # children's mean reward instead, so that early advantages are not all positive (with zero and decay 0.99
    # it takes ~100 children before the baseline reaches the reward level).
    baseline_start: str | None = None

    @staticmethod
    @preset("few_updates")
    def few_updates() -> "ENASConfig":
        """For searches that afford tens, not thousands, of controller updates (CPU hours; the default): lr 0.005,
        baseline decay 0.9 started at the first rewards' mean; the script's LSTM, tanh constant and skip prior."""
        return ENASConfig(lr=5e-3, baseline_decay=0.9, baseline_start="first")

    @staticmethod
    @preset("paper")
    def paper() -> "ENASConfig":
        """ENAS paper, section 3: LSTM of 100 units, Adam lr 0.00035, tanh constant 2.5, temperature 5.0,
        entropy weight 1e-4, skip prior 0.4 (its weight, not given there, from the released script)."""
        return ENASConfig(lstm_size=100, lstm_layers=1, lr=3.5e-4, tanh_constant=2.5, temperature=5.0)

    @staticmethod
    @preset("enas_macro_script")
    def enas_macro_script() -> "ENASConfig":
        """Released scripts/cifar10_macro_search.sh: lstm_size 64, lr 0.001, tanh constant 1.5, no temperature,
        entropy 1e-4, skip target 0.4, skip weight 0.8, baseline decay 0.99 (the code's default)."""
        return ENASConfig()


class _Policy(nn.Module):
    def __init__(self, tokens, cfg: ENASConfig):
        super().__init__()
        h = cfg.lstm_size
        self.cells = nn.ModuleList(nn.LSTMCell(h, h) for _ in range(cfg.lstm_layers))
        self.start = nn.Parameter(torch.empty(1, h).uniform_(-0.1, 0.1))
        self.kind = nn.Embedding(len(KINDS), h) if cfg.kind_embedding else None
        self.heads = nn.ModuleDict()
        self.embeddings = nn.ModuleDict()
        for i, t in enumerate(tokens):
            if not t.is_skip:
                self.heads[str(i)] = nn.Linear(h, t.n_choices, bias=False)
                self.embeddings[str(i)] = nn.Embedding(t.n_choices, h)
        self.attn_prev = nn.Linear(h, h, bias=False)
        self.attn_curr = nn.Linear(h, h, bias=False)
        self.attn_v = nn.Linear(h, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)


class ENASController(Controller):
    """LSTM policy over the flat token list."""

    config_class = ENASConfig

    def __init__(self, tokens, seed: int = 0, config: ENASConfig = ENASConfig.enas_macro_script()):
        super().__init__(tokens)
        self.config = config
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # parameter init only; sampling uses the controller's own generator
        self.policy = _Policy(self.tokens, config)
        torch.random.set_rng_state(torch_state)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline = 0.0  # the released code starts its baseline variable at zero
        self.started = False  # whether any update has happened (for ``baseline_start``)
        self.last_grad_norm = math.nan

    def _logits(self, raw: torch.Tensor) -> torch.Tensor:
        if self.config.temperature is not None:
            raw = raw / self.config.temperature
        if self.config.tanh_constant is not None:
            raw = self.config.tanh_constant * torch.tanh(raw)
        return raw

    def _step(self, x, state):
        new_state = []
        for cell, (h, c) in zip(self.policy.cells, state):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        return x, new_state

    def _run(self, n: int, given: list[dict] | None):
        """Sample (``given`` None) or re-score ``given`` children; returns choices and per-child log-prob,
        entropy and mean skip KL penalty (all differentiable)."""
        p, cfg = self.policy, self.config
        zeros = torch.zeros(n, cfg.lstm_size)
        state = [(zeros, zeros) for _ in p.cells]
        x = p.start.expand(n, -1)
        anchors, anchors_w = [], []
        log_prob, entropy = torch.zeros(n), torch.zeros(n)
        penalties = []
        chosen: list[dict] = [{} for _ in range(n)]
        for i, t in enumerate(self.tokens):
            if p.kind is not None:
                x = x + p.kind(torch.full((n,), KINDS.index(t.kind), dtype=torch.long))
            h, state = self._step(x, state)
            if not t.is_skip:
                logits = self._logits(p.heads[str(i)](h))
                dist = torch.distributions.Categorical(logits=logits)
                if given is None:
                    pick = torch.multinomial(dist.probs, 1, generator=self.generator).squeeze(1)
                else:
                    pick = torch.tensor([int(g[t.label]) for g in given])
                log_prob = log_prob + dist.log_prob(pick)
                entropy = entropy + dist.entropy()
                x = p.embeddings[str(i)](pick)
                for row, v in zip(chosen, pick.tolist()):
                    row[t.label] = int(v)
                continue
            k = t.n_inputs
            if k > 0:
                prev = torch.stack(anchors_w[-k:], dim=1)                       # (n, k, h)
                q = p.attn_v(torch.tanh(prev + p.attn_curr(h)[:, None, :])).squeeze(-1)  # (n, k)
                logits = self._logits(torch.stack([-q, q], dim=-1))             # (n, k, 2): off / on
                dist = torch.distributions.Categorical(logits=logits)
                if given is None:
                    flags = torch.multinomial(dist.probs.reshape(-1, 2), 1, generator=self.generator).reshape(n, k)
                else:
                    flags = torch.tensor([list(g[t.label]) for g in given], dtype=torch.long).reshape(n, k)
                log_prob = log_prob + dist.log_prob(flags).sum(-1)
                entropy = entropy + dist.entropy().sum(-1)
                on = dist.probs[..., 1].clamp(1e-6, 1 - 1e-6)
                target = cfg.skip_target
                penalties.append((on * torch.log(on / target) + (1 - on) * torch.log((1 - on) / (1 - target)))
                                 .mean(-1))
                f = flags.float()
                x = (f[:, :, None] * torch.stack(anchors[-k:], dim=1)).sum(1) / (1.0 + f.sum(1, keepdim=True))
                for row, v in zip(chosen, flags.tolist()):
                    row[t.label] = tuple(int(b) for b in v)
            else:
                x = p.start.expand(n, -1)
                for row in chosen:
                    row[t.label] = ()
            anchors.append(h)
            anchors_w.append(p.attn_prev(h))
        penalty = torch.stack(penalties, 1).mean(1) if penalties else torch.zeros(n)
        return chosen, log_prob, entropy, penalty

    def sample(self, n):
        """``n`` children drawn from the current policy."""
        with torch.no_grad(), single_thread():
            chosen, *_ = self._run(n, None)
        return chosen

    def update(self, samples, rewards):
        """One REINFORCE step on the finite-reward children; failed children are left out entirely."""
        with single_thread():
            return self._update(samples, rewards)

    def _update(self, samples, rewards):
        keep = [i for i, r in enumerate(rewards) if finite(r)]
        if not keep:
            return {"controller_skipped": float(len(samples))}
        kept = [samples[i] for i in keep]
        _, log_prob, entropy, penalty = self._run(len(kept), kept)
        if self.config.baseline_start == "first" and not self.started:
            self.baseline = float(sum(float(rewards[i]) for i in keep) / len(keep))
        self.started = True
        advantages = []
        for r, e in zip((float(rewards[i]) for i in keep), entropy.detach().tolist()):
            r = r + self.config.entropy_weight * e
            self.baseline -= (1 - self.config.baseline_decay) * (self.baseline - r)  # updated before use, as released
            advantages.append(r - self.baseline)
        adv = torch.tensor(advantages)
        loss = -(log_prob * adv).mean() + self.config.skip_weight * penalty.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.last_grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip))
        self.optimizer.step()
        return {"loss": float(loss.detach()), "baseline": float(self.baseline),
                "entropy": float(entropy.detach().mean()), "grad_norm": self.last_grad_norm,
                "skip_penalty": float(penalty.detach().mean())}

    def state_dict(self):
        """Policy, optimizer, baseline and sampling generator."""
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "started": self.started, "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = float(state["baseline"])
        self.started = bool(state.get("started", True))
        self.generator.set_state(state["generator"])
