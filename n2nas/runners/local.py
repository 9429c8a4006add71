"""In-process runner: the weight-shared supernet trained and scored on one device."""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from n2nas.data.splits import loss_class_weights
from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.measure import MeasureConfig
from n2nas.measure.energy import EnergyMeter, UnmeasuredMeter, pick_meter
from n2nas.measure.cost import ArchitectureCosts
from n2nas.measure.latency import measure_latency_ms
from n2nas.measure.reward import limits_broken
from n2nas.metrics import evaluate_predictions, reward_metric, reward_metric_name
from n2nas.runners.base import Runner
from n2nas.storage import numpy_rng_state, restore_numpy_rng
from n2nas.train.primitives import DataContext, loss_fn, metric_inputs, predict_records, recalibrate_batchnorm
from n2nas.train.sandwich import sandwich_backward


BN_MODES = ("recalibrate", "batch", "running")
RULES = ("auto", "uniform", "sandwich", "progressive")


@dataclass(frozen=True)
class SharedTrainingConfig:
    """How the shared weights are trained and children scored (the children's own lr / weight decay only apply
    when retraining).

    ``bn`` decides which BatchNorm statistics a child is scored with. The shared running statistics mix every
    child the supernet trained, so a child scored with them is judged partly on other children's statistics:

    - ``recalibrate`` (default; SPOS, Once-for-All): before scoring, the running statistics are reset and
      re-estimated on ``calibration_records`` fixed training records passed through that child alone;
    - ``batch``: BatchNorm uses each scoring batch's own statistics;
    - ``running``: the shared running statistics as they are (the behaviour before recalibration existed).

    Either way the supernet's own statistics are restored after scoring, so scoring never changes shared state
    (replicas of distributed runners stay identical).

    ``rule`` decides what one shared-weight step trains (:meth:`LocalRunner.child_gradient`, which the Ray and
    MPI runners call too, so every backend trains with the same rule):

    - ``uniform``: the sampled child alone, one batch (SPOS / ENAS single path);
    - ``sandwich`` (BigNAS): the largest child, the smallest and ``sandwich_random`` random children (the sampled
      one and ``sandwich_random - 1`` drawn by the runner), all on the sampled preprocessing and one batch, the
      largest learning from the labels and the others from its soft outputs (weight ``distill``; ``1 - distill``
      from the labels); their gradients add up into one optimizer step. The space must offer ``largest``,
      ``smallest`` and ``random_architecture`` (``ecg-res`` does);
    - ``progressive`` (Once-for-All's progressive shrinking): the first ``shrink_steps`` steps train the largest
      child alone; then the space's ``shrink_phases`` open one group of elastic dimensions every ``shrink_steps``
      steps (``ecg-res``: kernel, then depth, then width and stride). Each step trains the largest child and
      ``sandwich_random`` children restricted to the dimensions opened so far (the others at their largest), the
      latter distilled from the former as in the sandwich. The step count lives in the supernet (a buffer), so
      it is checkpointed and kept identical across Ray / MPI replicas;
    - ``auto`` (default): the space's ``shared_rule`` when it names one (``ecg-res``: sandwich), else uniform.
    """

    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0  # ENAS clips the shared weights' gradient norm at 5
    reward_metric: str = "auto"
    bn: str = "recalibrate"
    calibration_records: int = 256
    calibration_batch: int = 64
    rule: str = "auto"
    sandwich_random: int = 2
    distill: float = 1.0
    shrink_steps: int = 300

    @staticmethod
    @preset()
    def sandwich() -> "SharedTrainingConfig":
        """BigNAS's sandwich rule: largest + smallest + 2 random children per step, in-place distillation."""
        return SharedTrainingConfig(rule="sandwich")

    @staticmethod
    @preset()
    def uniform() -> "SharedTrainingConfig":
        """One uniformly sampled single path per step (SPOS), whatever the space prefers."""
        return SharedTrainingConfig(rule="uniform")

    def rule_for(self, space_def) -> str:
        """The rule this config trains ``space_def`` with (``auto`` resolved)."""
        if self.rule != "auto":
            return self.rule
        return getattr(space_def, "shared_rule", "uniform")

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError("rule", f"expected one of {', '.join(RULES)}, got {self.rule!r}")
        if self.sandwich_random < 1 or not 0.0 <= self.distill <= 1.0 or self.shrink_steps < 1:
            raise ConfigError("sandwich_random", "sandwich_random and shrink_steps must be >= 1, distill in [0, 1]")
        if self.bn not in BN_MODES:
            raise ConfigError("bn", f"expected one of {', '.join(BN_MODES)}, got {self.bn!r}")
        if self.calibration_records < 1 or self.calibration_batch < 1:
            raise ConfigError("calibration_records", "calibration records and batch must be at least 1")


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
        self._class_weight = torch.tensor(loss_class_weights(y, self.multilabel), dtype=torch.float32, device=device)
        # one fixed set of calibration records for every child, drawn with its own seed so that scoring never
        # moves the training RNG (a resumed search then draws the same batches)
        pick = np.random.default_rng(seed + 7919)
        n_cal = min(config.calibration_records, len(ctx.train_idx))
        self._calibration_idx = np.sort(pick.choice(ctx.train_idx, size=n_cal, replace=False))
        self._calibration_seed = seed + 104729
        self.rule = config.rule_for(space_def)
        needs = {"sandwich": ("largest", "smallest", "random_architecture"),
                 "progressive": ("largest", "random_architecture", "restrict", "shrink_phases")}.get(self.rule, ())
        if not all(hasattr(space_def, m) for m in needs):
            raise ConfigError("rule", f"the {self.rule} rule needs a space with {', '.join(needs)}; "
                                      f"{getattr(space_def, 'name', space_def)} has none")
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
        ``.grad``: the sampled child alone (``uniform``) or its sandwich (see ``SharedTrainingConfig.rule``).

        Returns the loss (the sandwich's mean over its children), or None (and no gradients) when it is not
        finite. Distributed runners call this and :meth:`apply_gradients` separately so they can average
        gradients in between, and so train with the same rule as this runner. ``rule`` overrides the runner's rule
        for this step (e.g. ``"uniform"`` to train one child alone, as a screen or the finals mean to).
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
        rule = rule or self.rule
        if rule in ("sandwich", "progressive"):
            children = self.sandwich(sample) if rule == "sandwich" else self.shrinking(sample)
            parts = sandwich_backward(self.supernet, children, x, y, self.multilabel, weight, self.config.distill)
            if parts is None:
                self.optimizer.zero_grad(set_to_none=True)
                return None
            return parts["loss"]
        loss = loss_fn(self.supernet(x, sample), y, self.multilabel, weight)
        if not torch.isfinite(loss):
            return None
        loss.backward()
        return float(loss.detach())

    def sandwich(self, sample) -> list[dict[str, Any]]:
        """The children of one sandwich step around ``sample``: largest, smallest, ``sample`` and
        ``sandwich_random - 1`` random architectures (all with ``sample``'s preprocessing and training tokens)."""
        sd = self.space_def
        extra = [sd.random_architecture(sample, self.rng) for _ in range(self.config.sandwich_random - 1)]
        return [sd.largest(sample), sd.smallest(sample), sample, *extra]

    def shrinking(self, sample) -> list[dict[str, Any]]:
        """The children of one progressive-shrinking step (and the step counted): the largest alone in phase 0,
        then the largest, ``sample`` and random architectures restricted to the dimensions opened so far."""
        sd, done = self.space_def, self.supernet.shrink_steps_done
        phase = min(int(done) // self.config.shrink_steps, len(sd.shrink_phases))
        done.add_(1)
        if phase == 0:
            return [sd.largest(sample)]
        opened = tuple(f for group in sd.shrink_phases[:phase] for f in group)
        extra = [sd.random_architecture(sample, self.rng) for _ in range(self.config.sandwich_random - 1)]
        return [sd.largest(sample), *(sd.restrict(s, opened) for s in (sample, *extra))]

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
