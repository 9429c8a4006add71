"""In-process runner: the weight-shared supernet trained and scored on one device."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from n2nas.checkpoint import numpy_rng_state, restore_numpy_rng
from n2nas.data.splits import class_weights
from n2nas.measure import MeasureConfig
from n2nas.measure.energy import EnergyMeter, UnmeasuredMeter, pick_meter
from n2nas.measure.flops import count_flops, count_params
from n2nas.measure.latency import measure_latency_ms
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
        self.supernet = space_def.build_supernet(space_def.input_size(ds), len(ds.classes)).to(device)
        self.optimizer = torch.optim.Adam(self.supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.metric = reward_metric_name(config.reward_metric, ds.classes, ds.multilabel)
        # params, FLOPs and latency per architecture + input (training tokens change none of them)
        self._arch_memo: dict[str, dict[str, Any]] = {}
        self._training_labels = {d.label for d in space_def.space.flat if getattr(d, "kind", "") == "training"}
        self.measure, self.reward, self.meter = MeasureConfig(), None, UnmeasuredMeter()
        y = ctx.targets[ctx.train_idx]
        self._class_weight = None if self.multilabel else torch.tensor(
            class_weights(y.argmax(1), y.shape[1]), dtype=torch.float32, device=device)

    def _data(self, sample):
        sd = self.space_def
        return self.ctx.pipeline_data(sd.preprocess_config(sample), sd.window_config(sample))

    def train_shared(self, samples):
        """One optimizer step per sampled child; steps whose loss is not finite are skipped and counted."""
        losses, failed = [], 0
        for sample in samples:
            loss = self.child_gradient(sample)
            if loss is None:
                failed += 1
                continue
            self.apply_gradients()
            losses.append(loss)
        return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed}

    def child_gradient(self, sample) -> float | None:
        """Forward/backward of one sampled child on one training batch, gradients left in ``.grad``.

        Returns the loss, or None (and no gradients) when it is not finite. Distributed runners call this and
        :meth:`apply_gradients` separately so they can average gradients in between.
        """
        from n2nas.data.augment import augment_batch

        self.supernet.train()
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
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return None
        loss.backward()
        return float(loss.detach())

    def apply_gradients(self) -> None:
        """Clip the gradient norm (ENAS's 5) and take one optimizer step with the gradients in ``.grad``."""
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.config.grad_clip)
        self.optimizer.step()

    def set_measurement(self, measure: MeasureConfig, reward=None, meter: EnergyMeter | None = None) -> None:
        """Measure latency and energy per scored child; with a ``RewardConfig``, children breaking its hard
        limits are reported infeasible without being scored. The meter is built here (``pick_meter`` for this
        runner's device) unless given, so remote workers build their own."""
        self.meter.close()
        self.measure, self.reward = measure, reward
        self.meter = meter or pick_meter(self.device, measure.joules_per_flop)

    def _child(self, sample) -> tuple[torch.nn.Module, tuple[int, ...]]:
        """A fresh standalone child and its batch-1 input shape. Its initialisation must not consume the global
        torch RNG: costs are memoised, so a resumed search would otherwise draw different dropout masks."""
        ds = self.ctx.dataset
        with torch.random.fork_rng(devices=[]):
            child = self.space_def.build_child(sample, self.space_def.input_size(ds), len(ds.classes))
        shape = (1,) + self._data(sample).record_windows(int(self.ctx.val_idx[0])).shape[1:]
        return child, shape

    def _measured(self, sample, latency: bool) -> dict[str, Any]:
        """Params, FLOPs (and latency when asked) of the sample's architecture: the standalone child is built
        once per architecture, however many of these numbers are needed."""
        key = json.dumps({k: v for k, v in sample.items() if k not in self._training_labels}, sort_keys=True,
                         default=str)
        entry = self._arch_memo.get(key)
        if entry is None or (latency and entry["latency_ms"] is None):
            child, shape = self._child(sample)
            if entry is None:
                entry = {"params": count_params(child), "flops": count_flops(child, shape), "latency_ms": None}
            if latency:
                entry["latency_ms"] = measure_latency_ms(child.to(self.device), shape, self.device,
                                                         self.measure.latency)
            self._arch_memo[key] = entry
        return entry

    def cost(self, sample) -> tuple[int, int]:
        """(parameters, FLOPs per input window) of the standalone child, memoised per architecture."""
        entry = self._measured(sample, latency=False)
        return entry["params"], entry["flops"]

    def latency_ms(self, sample) -> float | None:
        """Median per-record (batch-1) inference latency of the standalone child on this runner's device,
        memoised per architecture and input; None when measurement is off."""
        if not self.measure.latency.enabled:
            return None
        return self._measured(sample, latency=True)["latency_ms"]

    @torch.no_grad()
    def score(self, samples, records):
        """Multi-crop validation score of each child with the shared weights (eval mode)."""
        self.supernet.eval()
        results = []
        for sample in samples:
            latency = self.latency_ms(sample)  # first: on a new architecture it measures everything in one build
            params, flops = self.cost(sample)
            base = {"params": params, "flops": flops, "worker": self.worker, "latency_ms": latency,
                    "energy_j": None, "energy_source": "unmeasured", "records": len(records)}
            if self.reward is not None:
                from n2nas.reward import infeasibility

                reasons = infeasibility(self.reward, flops, params, latency)
                if reasons:  # not scored at all: the limit is known before any validation record is run
                    results.append({**base, "status": "infeasible", "reward": None, "metrics": {},
                                    "infeasible": reasons})
                    continue
            data = self._data(sample)
            windows = [0]

            def forward(x, s=sample):
                windows[0] += len(x)
                return self.supernet(x, s)

            started, start = time.time(), self.meter.begin()
            probs = predict_records(self.supernet, data, records, self.multilabel, self.device, forward=forward)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the window must hold the GPU work, not just its launch
            energy = self.meter.end(start, flops=flops * windows[0])
            base.update(energy_j=energy.joules, energy_source=energy.source, scored_at=[started, time.time()])
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
