"""Training primitives shared by the search, retraining and evaluation: data for one pipeline, losses,
multi-crop prediction over whole records, and device choice."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from n2nas.data.record import Dataset
from n2nas.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes the GPU when there is one; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device", f"{name} requested but no CUDA device is available")
    return torch.device(name)


def targets_of(dataset: Dataset) -> np.ndarray:
    """``(n, C)`` float32 targets: one-hot for single-label data, 0/1 rows for multi-label."""
    return dataset.label_matrix().astype(np.float32)


@dataclass
class PipelineData:
    """Model inputs of one preprocessing + window choice over a whole dataset.

    Filtered, resampled signals come from the cache (:mod:`n2nas.data.cache`); per-record normalisation is
    applied to each window as it is cut (``prepared.normalise``); global z-score statistics come from the
    training records only, so validation data never leaks into normalisation.
    """

    prepared: object  # PreparedSignals
    targets: np.ndarray
    window: object  # WindowConfig
    stats: object | None = None  # GlobalStats when normalise == global_z

    def _finish(self, x: np.ndarray) -> np.ndarray:
        from n2nas.data.windows import apply_global_stats

        return apply_global_stats(x, self.stats) if self.stats is not None else x

    def train_batch(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One random window per record: ``(B, leads, L)`` inputs and ``(B, C)`` targets."""
        from n2nas.data.windows import train_windows

        x = train_windows(self.prepared, indices, self.window, rng)
        return self._finish(x), self.targets[indices]

    def record_windows(self, i: int) -> np.ndarray:
        """Every window of record ``i`` for multi-crop evaluation, ``(K, leads, L)``."""
        from n2nas.data.windows import eval_windows

        return self._finish(eval_windows(self.prepared, i, self.window))


@dataclass
class DataContext:
    """A dataset, its split, and the prepared signals of every preprocessing choice seen so far.

    :meth:`prepare_all` computes every choice a search can sample up front (in ``workers`` processes);
    :meth:`pipeline_data` then only looks them up, and otherwise prepares just the one choice it is asked for.
    """

    dataset: Dataset
    train_idx: np.ndarray
    val_idx: np.ndarray
    cache_dir: Path | None
    workers: int = 1
    _prepared: dict = field(default_factory=dict, repr=False)

    @property
    def targets(self) -> np.ndarray:
        """Targets of every record."""
        if "targets" not in self._prepared:
            self._prepared["targets"] = targets_of(self.dataset)
        return self._prepared["targets"]

    def prepare_all(self, configs, progress=None) -> None:
        """Prepare every ``PreprocessConfig`` in ``configs`` now, so later :meth:`pipeline_data` calls compute
        nothing; ``progress(done, total, label)`` as in :func:`n2nas.data.cache.prepare_variants`."""
        from n2nas.data.cache import prepare_variants

        todo = [cfg for cfg in dict.fromkeys(configs) if cfg.cache_key() not in self._prepared]
        for cfg, prepared in prepare_variants(self.dataset, todo, self.cache_dir, self.workers, progress).items():
            self._keep(cfg, prepared)

    def pipeline_data(self, preprocess, window) -> PipelineData:
        """Inputs for one (preprocessing, window) choice; prepared once per key in this process (only this
        choice's filter and rate, and R peaks if its windows need them, when :meth:`prepare_all` did not)."""
        from n2nas.data.cache import prepare

        key = preprocess.cache_key()
        if key not in self._prepared:
            self._keep(preprocess, prepare(self.dataset, preprocess, cache_dir=self.cache_dir, workers=self.workers))
        prepared, stats = self._prepared[key]
        return PipelineData(prepared, self.targets, window, stats)

    def _keep(self, preprocess, prepared) -> None:
        from n2nas.data.windows import global_stats

        stats = global_stats(prepared, self.train_idx) if preprocess.normalise == "global_z" else None
        self._prepared[preprocess.cache_key()] = (prepared, stats)


@dataclass
class WindowBatches:
    """Training batches of one pipeline's windows for :func:`n2nas.train.trainer.fit`: one random window per record
    (``data.train_batch``), augmented on the device with the trainer's generator."""

    data: PipelineData
    indices: np.ndarray
    augment: object  # AugmentConfig
    device: torch.device

    @property
    def n_train(self) -> int:
        """Training records in one pass."""
        return len(self.indices)

    def batches(self, rng: np.random.Generator, generator: torch.Generator, batch_size: int, drop_last: bool):
        """One seeded pass of ``(windows, targets)`` batches; every data-parallel worker draws the same ones."""
        from n2nas.data.augment import augment_batch
        from n2nas.data.splits import micro_batches

        for idx in micro_batches(self.indices, batch_size, rng, drop_last=drop_last):
            x, y = self.data.train_batch(idx, rng)
            yield augment_batch(torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device),
                                self.augment, generator)

    def example(self) -> torch.Tensor:
        """One training window (a fixed draw that leaves the training RNG alone)."""
        return torch.from_numpy(self.data.train_batch(self.indices[:1], np.random.default_rng(0))[0])


def loss_weights(targets: np.ndarray, multilabel: bool, device, power: float = 1.0) -> torch.Tensor | None:
    """The class weights :func:`loss_fn` takes for training ``targets`` (:func:`n2nas.data.splits.loss_class_weights`:
    balanced weights for single-label data, BCE's ``pos_weight`` for multi-label data) raised to ``power``: 0 off
    (None), 0.5 their square root, 1 as they are."""
    from n2nas.data.splits import loss_class_weights

    if not power:
        return None
    weights = loss_class_weights(targets, multilabel)
    return torch.tensor(weights if power == 1 else weights ** power, dtype=torch.float32, device=device)


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool,
            class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with (possibly soft, mixup) targets for single-label data; BCE for multi-label."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=class_weight)
    return F.cross_entropy(logits, targets, weight=class_weight)


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Sigmoid for multi-label outputs, softmax otherwise."""
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)


@torch.no_grad()
def predict_records(model, data: PipelineData, indices: np.ndarray, multilabel: bool, device: torch.device,
                    max_windows: int = 512, forward=None) -> np.ndarray:
    """Record-level probabilities: mean over every window of each record (multi-crop), ``(n, C)``.

    Windows of several records are packed into one forward pass of at most ``max_windows`` windows.
    ``forward(x)`` overrides ``model(x)`` (the supernet passes its sample this way).
    """
    forward = forward or model
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush():
        if not pending:
            return
        x = torch.from_numpy(np.concatenate(pending)).to(device)
        probs = probabilities(forward(x), multilabel).float().cpu().numpy()
        counts = np.array([len(p) for p in pending])
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        out.extend(np.add.reduceat(probs, starts, axis=0) / counts[:, None])
        pending.clear()

    for i in indices:
        w = data.record_windows(int(i))
        if pending and sum(len(p) for p in pending) + len(w) > max_windows:
            flush()
        pending.append(w)
    flush()
    return np.stack(out) if out else np.zeros((0, data.targets.shape[1]), np.float32)


def record_scores(model, data: PipelineData, indices: np.ndarray, metric: str, classes, multilabel: bool,
                  device: torch.device) -> tuple[float, dict]:
    """Reward metric ``metric`` and every score of ``evaluate_predictions`` of ``model``'s record-level predictions
    (:func:`predict_records`) on records ``indices``."""
    return scores_of(predict_records(model, data, indices, multilabel, device), data.targets[indices], metric,
                     classes, multilabel)


def scores_of(probs: np.ndarray, targets: np.ndarray, metric: str, classes, multilabel: bool) -> tuple[float, dict]:
    """Reward metric ``metric`` and every score of ``evaluate_predictions`` of record-level ``probs`` against
    ``targets`` (one-hot rows)."""
    from n2nas.metrics import evaluate_predictions, reward_metric

    p, y = metric_inputs(probs, targets, multilabel)
    return float(reward_metric(metric, p, y, classes, multilabel)), evaluate_predictions(p, y, classes, multilabel)


def metric_inputs(probs: np.ndarray, targets: np.ndarray, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``(probs, y)`` pair metrics expect: class indices for single-label data, 0/1 rows otherwise."""
    return probs, (targets.astype(np.int64) if multilabel else targets.argmax(axis=1))


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, forward, batches) -> None:
    """Re-estimate every BatchNorm's running statistics of ``model`` as an exact average over ``batches`` (inputs
    passed through ``forward(x)``, in train mode, without gradients); the model is left in eval mode with its
    momenta as they were. Why: statistics trained on (or shared with) other children judge a network partly on
    theirs (SPOS, Once-for-All)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # None = exact cumulative average over the calibration batches
    model.train()
    for x in batches:
        forward(x)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.eval()
