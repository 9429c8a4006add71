"""Cost of a pipeline as deployed: parameters, FLOPs per model input, per record and per second of signal."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from n2nas.measure.flops import count_flops, count_params


def model_input_shape(space_def, sample: dict[str, Any], n_leads: int) -> tuple[int, ...]:
    """Shape of one model input without the batch dimension: ``(leads, samples)`` for windowed signals, the window
    length following from the space's ``preprocess_config`` (sampling rate) and ``window_config``; ``(features,)``
    for tabular rows (a space without preprocessing or windows; ``n_leads`` is then the features)."""
    from n2nas.data.windows import window_length

    pre = space_def.preprocess_config(sample)
    win = space_def.window_config(sample)
    if pre is None or win is None:  # tabular rows (EHR): one feature vector per record, ``n_leads`` features
        return (int(n_leads),)
    return (int(n_leads), window_length(win, pre.fs))


def windows_per_record(space_def, sample: dict[str, Any], record_seconds: float, n_leads: int = 1,
                       heart_rate_bpm: float = 75.0) -> int:
    """How many model inputs multi-crop evaluation cuts from a record of ``record_seconds`` (1 for spaces
    without windows, such as tabular EHR rows).

    Runs the evaluation windowing itself on an all-zero record, so the count cannot drift from it; beat windows
    assume R peaks at a steady ``heart_rate_bpm``.
    """
    from n2nas.data.prepared import PreparedSignals
    from n2nas.data.windows import eval_windows

    win = space_def.window_config(sample)
    if win is None:
        return 1
    fs = float(space_def.preprocess_config(sample).fs)
    n = max(int(round(record_seconds * fs)), 1)
    beat = fs * 60.0 / heart_rate_bpm
    peaks = np.arange(beat / 2, n, beat).astype(np.int64)
    prepared = PreparedSignals(ids=("record",), fs=fs, data=np.zeros((n_leads, n), np.float32),
                               offsets=np.array([0, n]), rpeaks=peaks, rpeak_offsets=np.array([0, len(peaks)]))
    return int(len(eval_windows(prepared, 0, win)))


RECORD_SECONDS = 30.0  # rewards compare FLOPs per 30 s record: what a deployed model spends per diagnosis


def architecture_cost(space_def, sample: dict[str, Any], child, input_shape: tuple[int, ...], n_leads: int,
                      record_seconds: float = RECORD_SECONDS, heart_rate_bpm: float = 75.0) -> dict[str, Any]:
    """The one count of a child's cost: ``params``, ``flops`` per model input of ``input_shape`` (batch included),
    ``windows`` that multi-crop evaluation cuts from a ``record_seconds`` record, and ``flops_per_record`` (their
    product: what one diagnosis costs)."""
    flops = count_flops(child, input_shape)
    windows = windows_per_record(space_def, sample, record_seconds, n_leads, heart_rate_bpm)
    return {"params": count_params(child), "flops": flops, "windows": windows, "flops_per_record": flops * windows}


def pipeline_cost(pipeline, record_seconds: float = RECORD_SECONDS, n_leads: int | None = None,
                  n_classes: int | None = None, heart_rate_bpm: float = 75.0) -> dict[str, Any]:
    """Parameters and FLOPs of an exported pipeline: per model input, per record (every multi-crop window of a
    ``record_seconds`` record) and per second of signal (per record / record seconds)."""
    from n2nas.models.folder import build_model
    from n2nas.errors import ConfigError
    from search_spaces import get_space

    space_def = get_space(pipeline.space)
    n_leads = n_leads or int(pipeline.data.get("n_leads", 0))
    n_classes = n_classes or len(pipeline.data.get("classes", ()))
    if not n_leads or not n_classes:
        raise ConfigError("pipeline", "the pipeline does not say how many leads and classes the model has "
                                      "(pass --n-leads and --n-classes)")
    model = build_model(pipeline, n_leads, n_classes)
    shape = model_input_shape(space_def, pipeline.sample, n_leads)
    cost = architecture_cost(space_def, pipeline.sample, model, (1,) + shape, n_leads, record_seconds, heart_rate_bpm)
    out: dict[str, Any] = {"space": pipeline.space, "params": cost["params"], "input_shape": list(shape),
                           "flops_per_window": cost["flops"], "windows_per_record": cost["windows"],
                           "flops_per_record": cost["flops_per_record"]}
    win = space_def.window_config(pipeline.sample)
    if win is None:  # tabular data: one input is one record, no signal seconds
        out["flops_per_second"] = None
        return out
    out.update(window_seconds=float(win.seconds), record_seconds=float(record_seconds),
               flops_per_second=cost["flops_per_record"] / float(record_seconds))
    if win.mode == "beats":
        out["assumed_heart_rate_bpm"] = heart_rate_bpm
    return out


class ArchitectureCosts:
    """Parameters, FLOPs per model input and multi-crop windows per 30 s record of a space's standalone children,
    measured once per architecture: the training tokens change none of them, so they are left out of the key.

    ``ctx`` is the search's data context (it gives each preprocessing's input shape); the search's driver and every
    runner replica each hold one, so a hard limit can be checked wherever a child is sampled or scored.
    """

    def __init__(self, space_def, ctx):
        self.space_def, self.ctx = space_def, ctx
        self._training = {d.label for d in space_def.space.flat if getattr(d, "kind", "") == "training"}
        self._memo: dict[str, dict[str, Any]] = {}

    def key(self, sample: dict[str, Any]) -> str:
        """The architecture-and-input part of ``sample`` as a memo key."""
        return json.dumps({k: v for k, v in sample.items() if k not in self._training}, sort_keys=True, default=str)

    def child(self, sample: dict[str, Any], device: str = "cpu"):
        """A fresh standalone child on ``device`` (``meta``: shapes only, nothing allocated or initialised) and its
        batch-1 input shape (from the data when the space cannot declare it). Its initialisation must not consume
        the global torch RNG: costs are memoised, so a resumed search would otherwise draw different dropout
        masks."""
        import torch

        ds, sd = self.ctx.dataset, self.space_def
        with torch.random.fork_rng(devices=[]), torch.device(device):
            child = sd.build_child(sample, sd.input_size(ds), len(ds.classes))
        try:  # the shape the space declares needs no preprocessing run
            return child, (1,) + model_input_shape(sd, sample, sd.input_size(ds))
        except (AttributeError, TypeError, KeyError):
            data = self.ctx.pipeline_data(sd.preprocess_config(sample), sd.window_config(sample))
            return child, (1,) + data.record_windows(int(self.ctx.val_idx[0])).shape[1:]

    def of(self, sample: dict[str, Any], built=None) -> dict[str, Any]:
        """``{"params", "flops", "windows", "flops_per_record"}`` of ``sample``'s architecture; ``built``: its
        ``(child, input_shape)`` when the caller has built it anyway."""
        key = self.key(sample)
        entry = self._memo.get(key)
        if entry is None:
            # counted on a meta child: building and initialising real weights cost more than the count itself
            child, shape = built or self.child(sample, device="meta")
            entry = architecture_cost(self.space_def, sample, child, shape, self.space_def.input_size(self.ctx.dataset))
            self._memo[key] = entry
        return entry
