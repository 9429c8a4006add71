"""In-process runner: the weight-shared supernet trained and scored on one device."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from n2nas.checkpoint import numpy_rng_state, restore_numpy_rng
from n2nas.data.splits import class_weights
from n2nas.measure.flops import count_flops, count_params
from n2nas.metrics import evaluate_predictions, reward_metric
from n2nas.runners.base import Runner
from n2nas.training import DataContext, loss_fn, metric_inputs, predict_records


@dataclass(frozen=True)
class SharedTrainingConfig:
    """How the shared weights are trained (the children's own lr/weight decay only apply when retraining)."""

    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0  # ENAS clips the shared weights' gradient norm at 5
    reward_metric: str = "auto"


class LocalRunner(Runner):
    """Holds the supernet and its optimizer; every child is a path through it."""

    def __init__(self, space_def, ctx: DataContext, config: SharedTrainingConfig, device: torch.device,
                 seed: int, worker: int = 0):
        self.space_def, self.ctx, self.config, self.device, self.worker = space_def, ctx, config, device, worker
        ds = ctx.dataset
        self.multilabel = ds.multilabel
        self.classes = ds.classes
        n_leads = ds.records[0].signal.shape[0]
        self.supernet = space_def.build_supernet(n_leads, len(ds.classes)).to(device)
        self.optimizer = torch.optim.Adam(self.supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.metric = reward_metric_name(config.reward_metric, ds.classes, ds.multilabel)
        self._cost_memo: dict[str, tuple[int, int]] = {}
        y = ctx.targets[ctx.train_idx]
        self._class_weight = None if self.multilabel else torch.tensor(
            class_weights(y.argmax(1), y.shape[1]), dtype=torch.float32, device=device)

    def _data(self, sample):
        sd = self.space_def
        return self.ctx.pipeline_data(sd.preprocess_config(sample), sd.window_config(sample))

    def train_shared(self, samples):
        """One optimizer step per sampled child; steps whose loss is not finite are skipped and counted."""
        from n2nas.data.augment import augment_batch

        self.supernet.train()
        losses, failed = [], 0
        for sample in samples:
            settings = self.space_def.training_settings(sample)
            data = self._data(sample)
            idx = self.rng.choice(self.ctx.train_idx, size=min(settings["batch_size"], len(self.ctx.train_idx)),
                                  replace=False)
            x, y = data.train_batch(idx, self.rng)
            x = torch.from_numpy(x).to(self.device)
            y = torch.from_numpy(y).to(self.device)
            x, y = augment_batch(x, y, self.space_def.augment_config(sample), self.generator)
            weight = self._class_weight if settings.get("class_weighting") else None
            loss = loss_fn(self.supernet(x, sample), y, self.multilabel, weight)
            if not torch.isfinite(loss):
                failed += 1
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.config.grad_clip)
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed}

    def cost(self, sample) -> tuple[int, int]:
        """(parameters, FLOPs per input window) of the standalone child, memoised per architecture."""
        key = json.dumps(sample, sort_keys=True, default=str)
        if key not in self._cost_memo:
            ds = self.ctx.dataset
            child = self.space_def.build_child(sample, ds.records[0].signal.shape[0], len(ds.classes))
            data = self._data(sample)
            shape = (1,) + data.record_windows(int(self.ctx.val_idx[0])).shape[1:]
            self._cost_memo[key] = (count_params(child), count_flops(child, shape))
        return self._cost_memo[key]

    @torch.no_grad()
    def score(self, samples, records):
        """Multi-crop validation score of each child with the shared weights (eval mode)."""
        self.supernet.eval()
        results = []
        for sample in samples:
            params, flops = self.cost(sample)
            base = {"params": params, "flops": flops, "worker": self.worker}
            data = self._data(sample)
            probs = predict_records(self.supernet, data, records, self.multilabel, self.device,
                                    forward=lambda x, s=sample: self.supernet(x, s))
            if not np.isfinite(probs).all():
                results.append({**base, "status": "failed", "reward": None, "metrics": {},
                                "error": "non-finite outputs"})
                continue
            p, y = metric_inputs(probs, data.targets[records], self.multilabel)
            metrics = evaluate_predictions(p, y, self.classes, self.multilabel)
            reward = float(reward_metric(self.metric, p, y, self.classes, self.multilabel))
            if not math.isfinite(reward):
                results.append({**base, "status": "failed", "reward": None, "metrics": _scalars(metrics),
                                "error": f"{self.metric} undefined on these records"})
                continue
            results.append({**base, "status": "ok", "reward": reward, "metrics": _scalars(metrics)})
        return results

    def state_dict(self):
        """Shared weights, optimizer and RNG states."""
        return {"supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "numpy_rng": numpy_rng_state(self.rng), "torch_generator": self.generator.get_state()}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` (shared weights moved to this runner's device)."""
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_numpy_rng(self.rng, state["numpy_rng"])
        self.generator.set_state(state["torch_generator"])


def reward_metric_name(name: str, classes: tuple[str, ...], multilabel: bool) -> str:
    """``auto``: the CinC 2017 score for N/A/O/~ data, the challenge score for CinC 2021 classes, else macro F1."""
    if name != "auto":
        return name
    if not multilabel and tuple(classes) == ("N", "A", "O", "~"):
        return "cinc2017_f1"
    if multilabel and all(c[0].isdigit() for c in classes):
        return "challenge_score"
    return "macro_f1"


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Keep the per-trial metrics small: numbers and the per-class F1."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or k == "f1"}
