"""The one loop that trains a network alone: ``n2nas retrain`` (ECG and EHR), grid cells, Ray Tune trials and
family fine-tunes all run :func:`fit`.

What differs between callers is a field of :class:`FitConfig` (optimizer, lr schedule, early stopping, weight
averaging, pruning, QAT, a cap on steps per epoch) or a small object they pass in: the batches
(:class:`TrainingBatches`), the validation score, the data-parallel context, and an ``on_epoch`` hook that may
save :meth:`Training.state` to resume from. A fix to the loss, the schedule or the best-epoch rule is made here once.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn

from n2nas.compress.prune import Pruner, PruneConfig
from n2nas.compress.quantize import QATConfig, prepare_qat, set_qat_phase
from n2nas.errors import ConfigError
from n2nas.presets import preset
from n2nas.storage import numpy_rng_state, restore_numpy_rng
from n2nas.train.averaging import check_ema_decay, weight_average
from n2nas.train.lr_budget import BudgetProgress, clock_of
from n2nas.train.parallel import DistContext
from n2nas.train.primitives import loss_fn

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("budget", "plateau", "constant")


@dataclass(frozen=True)
class FitConfig:
    """How one network trains alone.

    ``schedule``: "budget" decays the lr linearly to zero over whichever ends first, ``epochs`` or ``max_minutes``
    (budgeted training, Li et al., ICLR 2020); "plateau" multiplies it by ``plateau_factor`` after
    ``plateau_patience`` epochs without a better validation score; "constant" keeps it. ``patience`` (None: off)
    stops after that many epochs without a validation score better by more than ``min_delta``. The weights of the
    best-scoring epoch are kept (with ``ema_decay``, of an exponential moving average of the weights, which is what
    is scored; not combined with ``prune`` or ``qat``, whose masks and observers belong to the raw weights).
    ``steps_per_epoch`` (None: one pass over the training items) caps the batches of an epoch.
    """

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    schedule: str = "budget"
    patience: int | None = None
    min_delta: float = 0.0
    plateau_patience: int = 3
    plateau_factor: float = 0.3
    max_minutes: float | None = None
    seed: int = 0
    ema_decay: float | None = None
    prune: PruneConfig | None = None
    qat: QATConfig | None = None
    steps_per_epoch: int | None = None
    metric: str = "score"  # the validation score's name in the history (``val_<metric>``)
    clock: str = "wall"  # what max_minutes counts: "wall" time or this process's "cpu" time

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("--epochs", "epochs, batch size and lr must be positive")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("--schedule", f"expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        clock_of(self.clock)
        if self.prune is not None and self.qat is not None:
            raise ConfigError("--qat", "pruning and quantization-aware training are separate runs; pick one")
        check_ema_decay("--ema-decay", self.ema_decay)

    @property
    def uses_ema(self) -> bool:
        """Whether a weight average is scored and kept (never with pruning or QAT)."""
        return self.ema_decay is not None and self.prune is None and self.qat is None

    @staticmethod
    @preset()
    def diagnosenet(lr: float = 1e-3, batch_size: int = 768, epochs: int = 40, seed: int = 0) -> "FitConfig":
        """DiagnoseNET's protocol for its MLP grid: Adam at a constant lr, stopped after 5 epochs without a better
        validation macro F1."""
        return FitConfig(epochs=epochs, lr=lr, batch_size=batch_size, optimizer="adam", schedule="constant",
                         patience=5, min_delta=1e-4, seed=seed, metric="macro_f1")


class TrainingBatches(Protocol):
    """The training data of one network: how many items a pass holds, its batches, and one example input."""

    n_train: int

    def batches(self, rng: np.random.Generator, generator: torch.Generator, batch_size: int,
                drop_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass: ``(inputs, targets)`` on the training device, whole global batches."""

    def example(self) -> torch.Tensor:
        """One input of the network's shape (QAT traces the network with it)."""


@dataclass
class Fitted:
    """What :func:`fit` leaves: the network with its kept weights loaded, and how it got there."""

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    best_score: float
    status: str  # "ok", or "diverged" (a loss stopped being finite; training ended at the last good epoch)
    improved: bool  # whether any epoch's score was eligible and finite (else the last weights are kept)
    steps: int
    train_seconds: float
    pruner: Pruner | None = None
    example: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Training:
    """The state of one :func:`fit` run (model, optimizer, averages, RNGs, best weights); :meth:`state` is what an
    ``on_epoch`` hook saves and ``fit(..., resume=state)`` continues from."""

    def __init__(self, model: nn.Module, data: TrainingBatches, config: FitConfig, device: torch.device,
                 dist: DistContext):
        self.config, self.device, self.dist = config, device, dist
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        n = max(1, data.n_train)
        self.drop_last = n > config.batch_size
        passes = max(1, n // config.batch_size if self.drop_last else 1)
        self.steps_per_epoch = min(passes, config.steps_per_epoch or passes)
        self.example = data.example()
        if config.qat is not None:
            model = prepare_qat(model, self.example, config.qat)
        self.pruner = None
        if config.prune is not None:
            ramp = max(1, int(round(config.prune.ramp * config.epochs * self.steps_per_epoch)))
            self.pruner = Pruner(model, config.prune, ramp)
        self.model = model
        self.wrapped = dist.wrap(model)
        self.averaged = weight_average(model, config.ema_decay) if config.uses_ema else None
        self.scored = model if self.averaged is None else self.averaged.module
        optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience)
            if config.schedule == "plateau" else None)
        self.clock = clock_of(config.clock)
        self.progress = BudgetProgress(config.epochs * self.steps_per_epoch, config.max_minutes,
                                       mean=lambda share: dist.sum(share) / dist.world, clock=self.clock)
        self.epoch, self.steps, self.history = 0, 0, []
        self.best_score, self.best_state, self.best_epoch, self.patience_from = -math.inf, None, 0, None
        self.diverged: dict[str, Any] | None = None

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (``torch.load(weights_only=True)``)."""
        # a copy: state_dict() hands out the live tensors, which the next step would change under a kept state
        return copy.deepcopy({
            "epoch": self.epoch, "steps": self.steps, "history": self.history, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "averaged": self.averaged.state_dict() if self.averaged is not None else None,
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
            "best_score": self.best_score, "best_state": self.best_state, "best_epoch": self.best_epoch,
            "patience_from": self.patience_from, "rng": numpy_rng_state(self.rng),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "time_share": self.progress.time_share})

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state` (pruning masks are not restored: a pruned run is not resumable)."""
        if self.pruner is not None:
            raise ConfigError("--prune", "a pruned training cannot resume from a checkpoint")
        self.epoch, self.steps, self.history = int(state["epoch"]), int(state["steps"]), list(state["history"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.averaged is not None and state["averaged"] is not None:
            self.averaged.load_state_dict(state["averaged"])
        if self.plateau is not None and state["plateau"] is not None:
            self.plateau.load_state_dict(state["plateau"])
        self.best_score, self.best_state = float(state["best_score"]), state["best_state"]
        self.best_epoch, self.patience_from = int(state["best_epoch"]), state["patience_from"]
        restore_numpy_rng(self.rng, state["rng"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.progress.time_share = float(state["time_share"])


def fit(make_model: Callable[[], nn.Module], data: TrainingBatches, validate: Callable[[nn.Module], float],
        config: FitConfig, *, device: torch.device, class_weight: torch.Tensor | None = None,
        multilabel: bool = False, dist: DistContext = DistContext(), log: Callable[[str], None] = lambda m: None,
        on_epoch: Callable[[dict[str, Any], Training], None] | None = None,
        resume: dict[str, Any] | None = None) -> Fitted:
    """Seed, build ``make_model()`` on ``device`` and train it on ``data`` (see :class:`FitConfig`), scoring
    ``validate(model)`` (higher is better) after every epoch; returns the network with the kept weights loaded.

    Every data-parallel worker (``dist``) draws the whole global batch and trains on its slice, its loss weighted
    so that the averaged gradient is the global batch's; stopping decisions are taken on values summed over the
    workers, so all stop together. ``log`` gets one JSON line per epoch; ``on_epoch(entry, training)`` runs after
    each epoch (checkpoints, progress reports); ``resume``: a :meth:`Training.state` to continue from. The calling
    thread computes with denormals flushed to zero from here on (:mod:`n2nas.train.numerics`).
    """
    import json

    from n2nas.train.numerics import flush_denormals

    flush_denormals()  # weights inherited from a supernet hold denormals: computing with them is ~5x slower
    torch.manual_seed(config.seed)  # the initial weights and dropout draw from torch's default generator
    run = Training(make_model().to(device), data, config, device, dist)
    if resume is not None:
        run.load_state(resume)
    model, c = run.model, config
    start, status, now = time.monotonic(), "ok", run.clock
    deadline = None if c.max_minutes is None else now() + 60 * c.max_minutes
    while run.epoch < c.epochs and status == "ok":
        run.epoch += 1
        epoch = run.epoch
        model.train()
        if c.qat is not None:
            set_qat_phase(model, (epoch - 1) / c.epochs, c.qat)
        losses, spent = [], 0.0
        for i, (x, y) in enumerate(data.batches(run.rng, run.generator, c.batch_size, run.drop_last)):
            lo, hi = dist.slice(len(x))
            out = run.wrapped(x[lo:hi] if dist.world > 1 else x)
            loss = loss_fn(out, y[lo:hi] if dist.world > 1 else y, multilabel, class_weight)
            if dist.world > 1:  # DDP averages gradients: weight each slice so that this is the global-batch mean
                loss = loss * ((hi - lo) * dist.world / len(x))
            batch_loss = dist.sum(float(loss.detach())) / dist.world
            if not math.isfinite(batch_loss):  # the same value on every worker, so all stop together
                status = "diverged"
                run.diverged = {"epoch": epoch, "loss": batch_loss}
                break
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.schedule == "budget":
                spent = run.progress.spent(run.steps)
                for group in run.optimizer.param_groups:
                    group["lr"] = c.lr * (1.0 - spent)
            run.optimizer.step()
            run.steps += 1
            if run.pruner is not None:
                run.pruner.step()
            if run.averaged is not None:
                run.averaged.update_parameters(model)
            losses.append(batch_loss)
            if i + 1 >= run.steps_per_epoch:
                break
            # the same decision on every worker: a rank that stopped alone would leave the others in all_reduce
            if deadline is not None and dist.sum(float(now() > deadline)) > 0:
                break
        if status != "ok":
            log(json.dumps({"epoch": epoch, "diverged": True, "loss": batch_loss}))
            break
        run.progress.epoch_end()
        run.scored.eval()  # the raw model goes back to train() at the next epoch; only ``scored`` is validated
        score = float(validate(run.scored))
        if run.plateau is not None:
            run.plateau.step(score)
        entry = {"epoch": epoch, "steps": len(losses), "loss": float(np.mean(losses)) if losses else math.nan,
                 f"val_{c.metric}": score, "lr": run.optimizer.param_groups[0]["lr"],
                 "elapsed_s": round(time.monotonic() - start, 2)}
        if run.pruner is not None:
            entry["sparsity_target"] = round(c.prune.sparsity_at(run.pruner.step_count, run.pruner.ramp_steps), 4)
        run.history.append(entry)
        log(json.dumps(entry))
        eligible = run.pruner is None or run.pruner.done  # a pruned net counts once its schedule is complete
        if eligible and run.patience_from is None:
            run.patience_from = epoch - 1
        value = score if math.isfinite(score) else -math.inf
        if eligible and value > run.best_score + c.min_delta:
            run.best_score, run.best_state, run.best_epoch = value, copy.deepcopy(run.scored.state_dict()), epoch
        if on_epoch is not None:
            on_epoch(entry, run)
        if c.patience is not None and eligible and epoch - max(run.best_epoch, run.patience_from) >= c.patience:
            break
        if deadline is not None and now() > deadline:
            break
        if c.schedule == "budget" and run.progress.spent(run.steps) >= 1.0:
            break  # the time budget is spent: every further step would run at lr 0
    improved = run.best_state is not None
    if improved:
        model.load_state_dict(run.best_state)
    else:  # no eligible finite score (time ran out before the pruning schedule finished, or only NaN scores)
        run.best_epoch = len(run.history)
        model.load_state_dict(run.scored.state_dict())
    if run.pruner is not None:
        run.pruner.finalize()
    extras = {"diverged": run.diverged} if status == "diverged" else {}
    return Fitted(model, run.history, run.best_epoch, run.best_score, status, improved, run.steps,
                  round(time.monotonic() - start, 2), run.pruner, run.example, extras)
