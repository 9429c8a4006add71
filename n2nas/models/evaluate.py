"""Scoring a model folder on new records: predictions with the folder's own preprocessing, normalisation,
encoder and decision thresholds, and the checks that the data fits the model (classes, leads)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2nas.models.folder import ENCODER_FILE, NORM_FILE, THRESHOLDS_FILE, load_model_dir, model_inputs, stats_from_json
from n2nas.compress.quantize import is_quantized
from n2nas.data.record import ROWS, SIGNALS, Dataset
from n2nas.errors import DataError
from n2nas.metrics import evaluate_predictions
from n2nas.space import Pipeline
from n2nas.train.primitives import metric_inputs, pick_device, predict_records, targets_of
from search_spaces.protocol import ChecksRecords


def evaluate(model_dir: str | Path, dataset: Dataset, device: str = "auto", model=None) -> dict[str, Any]:
    """Score a trained model on every record of ``dataset`` (multi-crop over whole records); ``model``
    replaces the folder's network (e.g. a post-training quantized copy) while its pipeline and
    normalisation still come from ``model_dir``."""
    p, y = predict(model_dir, dataset, device, model)
    return evaluate_predictions(p, y, dataset.classes, dataset.multilabel, load_thresholds(model_dir))


def load_thresholds(model_dir: str | Path):
    """The per-class decision thresholds kept in a multi-label model folder (0.5 for folders without them)."""
    path = Path(model_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return 0.5
    try:
        return np.asarray(json.loads(path.read_text())["thresholds"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(path, f"not a thresholds file ({err})") from None


def predict(model_dir: str | Path, dataset: Dataset, device: str = "auto",
            model=None) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, targets)`` of a trained model on every record of ``dataset``, as :func:`evaluate` scores
    them (targets: class indices, or 0/1 rows for multi-label data)."""
    from n2nas.data.cache import prepare
    from n2nas.data.spec import default_cache_root
    from n2nas.train.primitives import PipelineData
    from search_spaces import get_space

    pipeline, loaded = load_model_dir(model_dir)
    model = loaded if model is None else model
    if dataset.modality == ROWS:
        return _predict_ehr(Path(model_dir), pipeline, model, dataset, device)
    check_classes(pipeline, dataset)
    space_def = get_space(pipeline.space)
    check_leads(pipeline, dataset, space_def)
    prepared = prepare(dataset, space_def.preprocess_config(pipeline.sample),
                       cache_dir=default_cache_root() / "prepared")
    stats = stats_from_json(json.loads((Path(model_dir) / NORM_FILE).read_text()))
    data = PipelineData(prepared, targets_of(dataset), space_def.window_config(pipeline.sample), stats)
    dev = torch.device("cpu") if is_quantized(model) else pick_device(device)  # int8 kernels: CPU only
    probs = predict_records(model.to(dev), data, np.arange(len(dataset)), dataset.multilabel, dev)
    return metric_inputs(probs, data.targets, dataset.multilabel)


def _predict_ehr(model_dir: Path, pipeline: Pipeline, model, dataset, device: str):
    """EHR rows: a clinical table is re-encoded with the model folder's ``encoder.json`` first."""
    from n2nas.data.table import reencode
    from n2nas.train.rows import predict_rows

    encoder_path = model_dir / ENCODER_FILE
    if encoder_path.is_file():
        dataset = reencode(dataset, json.loads(encoder_path.read_text()))
    check_classes(pipeline, dataset)
    _, need = model_inputs(pipeline)
    if need and dataset.n_inputs != need:
        raise DataError(dataset.source, f"{dataset.n_inputs} feature columns, the model takes {need}")
    dev = pick_device(device)
    probs = predict_rows(model.to(dev), dataset, np.arange(len(dataset)), dataset.multilabel, dev)
    return metric_inputs(probs, dataset.label_matrix().astype(np.float32), dataset.multilabel)


def check_classes(pipeline: Pipeline, dataset: Dataset) -> None:
    """The data's classes must be the model's, in the same order: another order would swap outputs silently."""
    trained = pipeline.data.get("classes")
    if trained is not None and list(trained) != list(dataset.classes):
        raise DataError(dataset.source, f"classes {list(dataset.classes)} differ from the model's {list(trained)}")


def check_leads(pipeline: Pipeline, dataset: Dataset, space_def) -> None:
    """Records must carry the leads the model reads: a missing lead is an error naming the record, never a
    silent zero channel."""
    if dataset.modality != SIGNALS:
        return
    _, need = model_inputs(pipeline)
    for record in dataset.records:
        if need and record.signal.shape[0] != need:
            where = (record.meta.get("files") or [record.id])[0] if record.meta else record.id
            raise DataError(where, f"record {record.id} has {record.signal.shape[0]} lead(s) "
                                   f"({', '.join(record.leads)}); this model takes {need}")
    if isinstance(space_def, ChecksRecords):
        space_def.check_records(dataset)
