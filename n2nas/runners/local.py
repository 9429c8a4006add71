"""In-process runner: the weight-shared supernet trained and scored on one device."""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from n2nas.measure import MeasureConfig
from n2nas.measure.energy import EnergyMeter, UnmeasuredMeter, pick_meter
from n2nas.measure.cost import ArchitectureCosts
from n2nas.measure.latency import measure_latency_ms
from n2nas.measure.reward import limits_broken
from n2nas.metrics import evaluate_predictions, reward_metric, reward_metric_name
from n2nas.runners.runner import Runner
from n2nas.runners.shared import SharedTrainingConfig, shared_backward
from n2nas.storage import numpy_rng_state, restore_numpy_rng
from n2nas.train.primitives import DataContext, loss_weights, metric_inputs, predict_records, recalibrate_batchnorm


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
        self.costs = ArchitectureCosts(space_def, ctx)
        self._latency_memo: dict[str, float | None] = {}
        self.measure, self.reward, self.meter = MeasureConfig(), None, UnmeasuredMeter()
        y = ctx.targets[ctx.train_idx]
        self._class_weight = loss_weights(y, self.multilabel, device)
        # one fixed set of calibration records for every child, drawn with its own seed so that scoring never
        # moves the training RNG (a resumed search then draws the same batches)
        pick = np.random.default_rng(seed + 7919)
        n_cal = min(config.calibration_records, len(ctx.train_idx))
        self._calibration_idx = np.sort(pick.choice(ctx.train_idx, size=n_cal, replace=False))
        self._calibration_seed = seed + 104729
        self.rule = config.rule_for(space_def)  # ConfigError when the rule needs an elastic space
        if self.rule == "progressive":  # a buffer: saved with the weights, averaged (identical) across replicas
            self.supernet.register_buffer("shrink_steps_done", torch.zeros((), dtype=torch.long, device=device))

    def _data(self, sample):
        sd = self.space_def
        return self.ctx.pipeline_data(sd.preprocess_config(sample), sd.window_config(sample))

    def train_shared(self, samples, rule=None):
        """One optimizer step per sampled child (``rule`` overrides the configured one); steps whose loss is not
        finite are skipped and counted."""
        losses, failed = [], 0
        for sample in samples:
            loss = self.child_gradient(sample, rule)
            if loss is None:
                failed += 1
                continue
            self.apply_gradients()
            losses.append(loss)
        return {"shared_loss": float(np.mean(losses)) if losses else math.nan, "shared_failed": failed}

    def child_gradient(self, sample, rule: str | None = None) -> float | None:
        """Forward/backward of one shared-weight step around ``sample`` on one training batch, gradients left in
        ``.grad`` (:func:`n2nas.runners.shared.shared_backward`, with the runner's rule unless ``rule`` overrides
        it, e.g. ``"uniform"`` to train one child alone, as a screen or the finals mean to).

        Returns the loss, or None (and no gradients) when it is not finite. Distributed runners call this and
        :meth:`apply_gradients` separately so they can average gradients in between, and so train with the same
        rule as this runner.
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
        self.optimizer.zero_grad(set_to_none=True)
        loss = shared_backward(self.supernet, self.space_def, sample, rule or self.rule, self.config, x, y,
                               self.multilabel, weight, self.rng)
        if loss is None:
            self.optimizer.zero_grad(set_to_none=True)
        return loss

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

    def measured_cost(self, sample) -> dict[str, Any]:
        """The standalone child's ``ArchitectureCosts`` entry (params, FLOPs per input and per 30 s record), with
        its median batch-1 ``latency_ms`` on this runner's device (None when timing is off), memoised per
        architecture: the child is built once however many of these numbers are needed."""
        key = self.costs.key(sample)
        if self.measure.latency.enabled and key not in self._latency_memo:
            child, shape = self.costs.child(sample)
            self.costs.of(sample, built=(child, shape))
            self._latency_memo[key] = measure_latency_ms(child.to(self.device), shape, self.device,
                                                         self.measure.latency)
        return {**self.costs.of(sample), "latency_ms": self._latency_memo.get(key)}

    @contextmanager
    def child_batchnorm(self, sample):
        """BatchNorm statistics of ``sample`` alone while the block runs (see ``SharedTrainingConfig.bn``); the
        supernet's running statistics are restored afterwards."""
        bns = [m for m in self.supernet.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in bns]
        try:
            if self.config.bn == "recalibrate":
                self._recalibrate(sample)
            elif self.config.bn == "batch":
                for m in bns:
                    m.train()
            yield
        finally:
            for m, (mean, var, count, momentum) in zip(bns, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
                m.momentum = momentum
            self.supernet.eval()

    def calibration_batches(self, sample):
        """The fixed calibration records as model inputs of ``sample``'s pipeline, batch by batch (same records and
        crops for every child, so that scoring never moves the training RNG)."""
        data = self._data(sample)
        rng = np.random.default_rng(self._calibration_seed)
        step = self.config.calibration_batch
        for start in range(0, len(self._calibration_idx), step):
            x, _ = data.train_batch(self._calibration_idx[start:start + step], rng)
            yield torch.from_numpy(x).to(self.device)

    def _recalibrate(self, sample) -> None:
        """Re-estimate the BatchNorm statistics on the calibration records through this child only (no
        augmentation, no dropout)."""
        plain = {**sample, "dropout": 0.0}
        recalibrate_batchnorm(self.supernet, lambda x: self.supernet(x, plain), self.calibration_batches(sample))

    @torch.no_grad()
    def score(self, samples, records, limits=True):
        """Multi-crop validation score of each child with the shared weights (eval mode, BatchNorm as
        ``config.bn`` says): its bare ``metric`` and ``metric_name`` with its cost, never a reward (the search
        folds cost into that, :mod:`n2nas.measure.reward`); ``limits=False`` scores children beyond the hard
        limits too. Each result carries ``cost_s``: the seconds spent measuring its params, FLOPs and latency (zero once its architecture is
        memoised)."""
        self.supernet.eval()
        results = []
        for sample in samples:
            started_cost = time.monotonic()
            cost = self.measured_cost(sample)
            base = {"params": cost["params"], "flops": cost["flops"], "flops_per_record": cost["flops_per_record"],
                    "latency_ms": cost["latency_ms"], "worker": self.worker, "metric_name": self.metric,
                    "energy_j": None, "energy_source": "unmeasured", "records": len(records),
                    "cost_s": round(time.monotonic() - started_cost, 4)}
            reasons = limits_broken(self.reward, cost) if self.reward is not None and limits else []
            if reasons:  # not scored at all: the limit is known before any validation record is run
                results.append({**base, "status": "infeasible", "metric": None, "metrics": {},
                                "infeasible": reasons})
                continue
            data = self._data(sample)
            windows = [0]

            def forward(x, s=sample):
                windows[0] += len(x)
                return self.supernet(x, s)

            with self.child_batchnorm(sample):
                started, start = time.time(), self.meter.begin()
                probs = predict_records(self.supernet, data, records, self.multilabel, self.device,
                                        forward=forward)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the window must hold the GPU work, not just its launch
            energy = self.meter.end(start, flops=cost["flops"] * windows[0])
            base.update(energy_j=energy.joules, energy_source=energy.source, scored_at=[started, time.time()])
            if not np.isfinite(probs).all():
                results.append({**base, "status": "failed", "metric": None, "metrics": {},
                                "error": "non-finite outputs"})
                continue
            p, y = metric_inputs(probs, data.targets[records], self.multilabel)
            metrics = evaluate_predictions(p, y, self.classes, self.multilabel)
            metric = float(reward_metric(self.metric, p, y, self.classes, self.multilabel))
            if not math.isfinite(metric):
                results.append({**base, "status": "failed", "metric": None, "metrics": _scalars(metrics),
                                "error": f"{self.metric} undefined on these records"})
                continue
            # the per-record probabilities go to the driver, which keeps those of compared phases and drops the rest
            results.append({**base, "status": "ok", "metric": metric, "metrics": _scalars(metrics),
                            "probs": probs.astype(np.float32)})
        return results

    def state_dict(self):
        """A snapshot of the shared weights, optimizer and RNG states (later training does not change it)."""
        return {**weights_and_optimizer(self), "numpy_rng": numpy_rng_state(self.rng),
                "torch_generator": self.generator.get_state()}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` (shared weights moved to this runner's device); ``state`` stays unchanged."""
        load_weights_and_optimizer(self, state)
        restore_numpy_rng(self.rng, state["numpy_rng"])
        self.generator.set_state(state["torch_generator"])


def weights_and_optimizer(runner) -> dict[str, Any]:
    """A copy of a replica's weights and optimizer state: the part every synchronous replica shares (RNG states
    are per worker).

    A copy, because ``Module.state_dict()`` and ``Optimizer.state_dict()`` return the live tensors: a state kept to
    return to (the fresh weights the finals start from, each screened candidate's weights) would otherwise follow
    every later step, and each candidate would go on from the one trained before it."""
    return copy.deepcopy({"supernet": runner.supernet.state_dict(), "optimizer": runner.optimizer.state_dict()})


def load_weights_and_optimizer(runner, state: dict[str, Any]) -> None:
    """Inverse of :func:`weights_and_optimizer`. The optimizer gets a copy: ``Optimizer.load_state_dict`` keeps the
    given moment tensors and updates them in place, which would change ``state`` at the next step."""
    runner.supernet.load_state_dict(state["supernet"])
    runner.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Keep the per-trial metrics small: numbers and the per-class F1."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or k == "f1"}
