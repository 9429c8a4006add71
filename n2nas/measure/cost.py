"""Cost of a pipeline as deployed: parameters, FLOPs per model input, per record and per second of signal."""
from __future__ import annotations

from typing import Any

import numpy as np

from n2nas.measure.flops import count_flops, count_params


def model_input_shape(space_def, sample: dict[str, Any], n_leads: int) -> tuple[int, ...]:
    """Shape of one model input without the batch dimension: ``(leads, samples)`` for windowed signals.

    A space may define ``input_shape(sample, n_leads)`` (e.g. tabular spaces); otherwise the window length
    follows from its ``preprocess_config`` (sampling rate) and ``window_config``.
    """
    hook = getattr(space_def, "input_shape", None)
    if hook is not None:
        return tuple(int(d) for d in hook(sample, n_leads))
    from n2nas.data.windows import window_length

    fs = space_def.preprocess_config(sample).fs
    return (int(n_leads), window_length(space_def.window_config(sample), fs))


def windows_per_record(space_def, sample: dict[str, Any], record_seconds: float, n_leads: int = 1,
                       heart_rate_bpm: float = 75.0) -> int:
    """How many model inputs multi-crop evaluation cuts from a record of ``record_seconds`` (1 for spaces
    without windows, such as tabular EHR rows).

    Runs the evaluation windowing itself on an all-zero record, so the count cannot drift from it; beat windows
    assume R peaks at a steady ``heart_rate_bpm``.
    """
    from n2nas.data.prepared import PreparedSignals
    from n2nas.data.windows import eval_windows

    win = space_def.window_config(sample) if hasattr(space_def, "window_config") else None
    if win is None:
        return 1
    fs = float(space_def.preprocess_config(sample).fs)
    n = max(int(round(record_seconds * fs)), 1)
    beat = fs * 60.0 / heart_rate_bpm
    peaks = np.arange(beat / 2, n, beat).astype(np.int64)
    prepared = PreparedSignals(ids=("record",), fs=fs, data=np.zeros((n_leads, n), np.float32),
                               offsets=np.array([0, n]), rpeaks=peaks, rpeak_offsets=np.array([0, len(peaks)]))
    return int(len(eval_windows(prepared, 0, win)))


def pipeline_cost(pipeline, record_seconds: float = 30.0, n_leads: int | None = None,
                  n_classes: int | None = None, heart_rate_bpm: float = 75.0) -> dict[str, Any]:
    """Parameters and FLOPs of an exported pipeline: per model input, per record (every multi-crop window of a
    ``record_seconds`` record) and per second of signal (per record / record seconds)."""
    from n2nas.artifacts import build_model
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
    per_window = count_flops(model, (1,) + shape)
    out: dict[str, Any] = {"space": pipeline.space, "params": count_params(model), "input_shape": list(shape),
                           "flops_per_window": per_window}
    win = space_def.window_config(pipeline.sample) if hasattr(space_def, "window_config") else None
    if win is None:  # tabular data: one input is one record, no signal seconds
        out.update(windows_per_record=1, flops_per_record=per_window, flops_per_second=None)
        return out
    k = windows_per_record(space_def, pipeline.sample, record_seconds, n_leads, heart_rate_bpm)
    out.update(window_seconds=float(win.seconds), record_seconds=float(record_seconds), windows_per_record=k,
               flops_per_record=k * per_window, flops_per_second=k * per_window / float(record_seconds))
    if win.mode == "beats":
        out["assumed_heart_rate_bpm"] = heart_rate_bpm
    return out
