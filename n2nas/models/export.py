"""``n2nas export``: a trained model folder as an ONNX or TorchScript file, checked against PyTorch.

The exported graph is the network only: input ``x`` of shape ``(batch, leads, window_samples)`` float32 (EHR
models: ``(batch, n_inputs)``, rows encoded by the model folder's ``encoder.json``, copied into the JSON file),
output ``logits`` ``(batch, classes)``; the batch dimension is dynamic, the window length is fixed.
Preprocessing is a separate step whose parameters are written next to the file as
``FILE.preprocessing.json``: resample to ``fs``, band-pass / baseline filter, normalise (with the training-set
statistics for ``global_z``), cut windows, run the model on every window of a record and average the
softmax (sigmoid for multi-label data) over the windows — exactly what ``n2nas evaluate`` does
(:func:`n2nas.train.primitives.predict_records`).

After writing the file the exporter loads it (onnxruntime / ``torch.jit.load``), runs it next to the PyTorch
model on seeded random windows at two batch sizes, and reports the largest absolute logit difference; a
difference above the tolerance is an error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.models.folder import model_inputs
from n2nas.data.record import ROWS
from n2nas.errors import ConfigError, DataError
from n2nas.storage import atomic_write_text

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # float32 graphs: observed differences are ~1e-6; int8 TorchScript runs the same kernels


def preprocessing_spec(model_dir: Path, pipeline) -> dict[str, Any]:
    """Everything needed to turn a raw record into model inputs, as plain JSON."""
    from search_spaces import get_space

    modality, n_inputs = model_inputs(pipeline)
    if modality == ROWS:  # EHR rows: the model folder's table encoder is the whole preprocessing
        encoder_file = model_dir / "encoder.json"
        return {"input": "x: float32 (batch, n_inputs), one encoded encounter per row (encoder.json: "
                         "n2nas.data.table_encoder.encode)", "output": "logits: float32 (batch, classes)",
                "classes": list(pipeline.data.get("classes", [])), "multilabel": bool(pipeline.data.get("multilabel")),
                "n_inputs": n_inputs,
                "encoder": json.loads(encoder_file.read_text()) if encoder_file.is_file() else None,
                "record_score": "softmax(logits) (sigmoid if multilabel)",
                "reference": "n2nas.data.table.reencode + n2nas.train.rows.predict_rows / n2nas evaluate"}
    space_def = get_space(pipeline.space)
    pre = space_def.preprocess_config(pipeline.sample)
    window = space_def.window_config(pipeline.sample)
    norm_file = model_dir / "normalisation.json"
    from n2nas.models.folder import THRESHOLDS_FILE

    thresholds_file = model_dir / THRESHOLDS_FILE
    thresholds = json.loads(thresholds_file.read_text()) if thresholds_file.is_file() else None
    return {"input": "x: float32 (batch, leads, window_samples), channel-first, mV",
            "output": "logits: float32 (batch, classes)",
            "classes": list(pipeline.data.get("classes", [])), "multilabel": bool(pipeline.data.get("multilabel")),
            "n_leads": n_inputs, "window_samples": window_samples(pipeline),
            # 12-lead spaces: the input holds the 12 standard leads in order; the network reads only these
            "leads_used": _leads_used(pipeline),
            "preprocess": dataclasses.asdict(pre), "window": dataclasses.asdict(window),
            "global_stats": json.loads(norm_file.read_text()) if norm_file.is_file() else None,
            "record_score": "mean over every window of the record of softmax(logits) (sigmoid if multilabel)",
            "decision": ("class c is present when record_score[c] >= thresholds[c] (chosen on the validation split)"
                         if thresholds else "argmax of record_score" if not pipeline.data.get("multilabel")
                         else "record_score >= 0.5"),
            "thresholds": dict(zip(thresholds["classes"], thresholds["thresholds"])) if thresholds else None,
            "reference": "n2nas.train.primitives.predict_records / n2nas evaluate"}


def _leads_used(pipeline) -> list[str] | None:
    if "leads" not in pipeline.sample:
        return None
    from search_spaces.leads import lead_names

    return list(lead_names(pipeline.sample["leads"]))


def window_samples(pipeline) -> int:
    """Samples per model input window at the pipeline's sampling rate."""
    from search_spaces import get_space

    space_def = get_space(pipeline.space)
    fs = space_def.preprocess_config(pipeline.sample).fs
    return int(round(space_def.window_config(pipeline.sample).seconds * fs))


@contextlib.contextmanager
def _quiet():
    # exporters print progress and deprecation notes; the command prints one JSON line instead
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed" notes on every export
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_log.setLevel(level)


def export_model(model_dir: str | Path, fmt: str, out: str | Path, seed: int = 0) -> dict[str, Any]:
    """Write ``out`` (ONNX or TorchScript) and ``out.preprocessing.json``; verify; return a report."""
    from n2nas.models.folder import load_model_dir
    from n2nas.compress.quantize import is_quantized

    if fmt not in FORMATS:
        raise ConfigError("--format", f"expected one of {FORMATS}, got {fmt!r}")
    model_dir, out = Path(model_dir), Path(out)
    pipeline, model = load_model_dir(model_dir)
    model.eval()
    int8 = is_quantized(model)
    if int8 and fmt == "onnx":
        raise ConfigError("--format", "int8 (QAT) models export as torchscript only; torch.onnx has no "
                                      "exporter for torch.ao quantized modules")
    modality, n_inputs = model_inputs(pipeline)
    # EHR: one dense row of encoded features per encounter; ECG: one window of every lead
    shape = (n_inputs,) if modality == ROWS else (n_inputs, window_samples(pipeline))
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(2, *shape, generator=gen)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _quiet(), torch.no_grad():
        if fmt == "onnx":
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(model, (example,), str(out), dynamo=True, input_names=["x"], output_names=["logits"],
                              dynamic_shapes={"x": {0: batch}}, verbose=False, external_data=False)
        else:
            torch.jit.save(torch.jit.trace(model, example), str(out))
    spec = preprocessing_spec(model_dir, pipeline)
    spec.update({"format": fmt, "int8": int8})
    atomic_write_text(out.with_name(out.name + ".preprocessing.json"), json.dumps(spec, indent=2))
    diffs = verify(model, out, fmt, shape, seed)
    report = {"file": str(out), "format": fmt, "bytes": out.stat().st_size, "int8": int8,
              "input_shape": ["batch", *shape], "max_abs_diff": max(diffs.values()),
              "max_abs_diff_by_batch": diffs, "preprocessing": str(out.with_name(out.name + ".preprocessing.json"))}
    if report["max_abs_diff"] > TOLERANCE:
        raise DataError(out, f"exported outputs differ from PyTorch by {report['max_abs_diff']:.3g} "
                             f"(tolerance {TOLERANCE})")
    return report


def run_exported(path: str | Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """Logits of an exported file on ``x`` (onnxruntime on the CPU, or ``torch.jit.load``)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()


def verify(model, path: Path, fmt: str, shape: tuple[int, ...], seed: int = 0) -> dict[str, float]:
    """Largest absolute logit difference between ``model`` and the exported file, per batch size (``shape``: one
    input without its batch dimension)."""
    gen = torch.Generator().manual_seed(seed + 1)
    diffs = {}
    for batch in (1, 5):  # batch sizes other than the tracing example's, to exercise the dynamic dimension
        x = torch.randn(batch, *shape, generator=gen)
        with torch.no_grad(), _quiet():
            expected = model(x).numpy()
        try:
            got = run_exported(path, fmt, x.numpy())
        except Exception as err:  # noqa: BLE001 - any runtime failure means the export is unusable
            raise DataError(path, f"exported file does not run: {str(err).splitlines()[0]}") from None
        diffs[str(batch)] = float(np.abs(got - expected).max())
    return diffs
