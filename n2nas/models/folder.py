"""Pipelines and trained models on disk: JSON + tensors (``torch.load(weights_only=True)``), never pickles."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from n2nas.data.record import ROWS, SIGNALS
from n2nas.errors import ConfigError, DataError
from n2nas.space import Pipeline
from n2nas.storage import atomic_write_text

MODEL_WEIGHTS = "model.pt"
PIPELINE_FILE = "pipeline.json"
METRICS_FILE = "metrics.json"  # how the weights were obtained, validation scores, sizes


def load_pipeline(path: str | Path) -> Pipeline:
    """Read ``best_pipeline.json`` (or any pipeline JSON) and validate it against its search space."""
    from search_spaces import get_space

    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        space_name = obj["space"]
    except FileNotFoundError:
        raise DataError(path, "pipeline file is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(path, f"not a pipeline JSON file ({err})") from None
    try:
        return Pipeline.from_json(obj, get_space(space_name).space)
    except ConfigError as err:
        raise ConfigError(path, f"{err.where}: {err.problem}") from None


def build_model(pipeline: Pipeline, n_leads: int | None = None, n_classes: int | None = None) -> nn.Module:
    """A plain, freshly initialised ``nn.Module`` with exactly the pipeline's architecture (``n_leads``: its input
    channels or, for rows, feature columns; default: what the pipeline's data card says)."""
    from search_spaces import get_space

    n_inputs = n_leads or model_inputs(pipeline)[1]
    n_classes = n_classes or len(pipeline.data.get("classes", ()))
    if not n_inputs or not n_classes:
        raise ConfigError("pipeline", "the pipeline does not say how many inputs and classes the model has")
    model = get_space(pipeline.space).build_child(pipeline.sample, n_inputs, n_classes)
    if pipeline.data.get("norm") == "none":  # retrained with RetrainConfig(norm="none")
        strip_batch_norm(model)
    return model


# a pipeline's data card names its model's input size under the key of the data's modality
INPUT_KEYS = {SIGNALS: "n_leads", ROWS: "n_inputs"}


def data_card(dataset, n_inputs: int | None = None, **extra: Any) -> dict[str, Any]:
    """What a pipeline records of the data its model is for: classes, multi-label or not, the input size under its
    modality's key (``n_leads`` or ``n_inputs``; default the dataset's own) and the source, plus ``extra``."""
    size = dataset.n_inputs if n_inputs is None else n_inputs
    return {"classes": list(dataset.classes), "multilabel": dataset.multilabel,
            INPUT_KEYS[dataset.modality]: int(size), "source": dataset.source, **extra}


def model_inputs(pipeline: Pipeline) -> tuple[str, int]:
    """``(modality, input size)`` of a pipeline's model, read from its data card (``(signals, 0)`` when unknown)."""
    for modality, key in INPUT_KEYS.items():
        if pipeline.data.get(key):
            return modality, int(pipeline.data[key])
    return SIGNALS, 0


def strip_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every batch-norm layer of ``model`` by ``nn.Identity`` (in place; returns ``model``)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            strip_batch_norm(child)
    return model


def write_model_folder(folder: str | Path, pipeline: Pipeline, model: nn.Module, *, weights: str,
                       metrics: dict[str, Any], files: dict[str, Any] | None = None,
                       state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The one writer of model folders (a retrained model, a family member): ``model.pt`` (``state``, by default
    ``model``'s state dict), ``pipeline.json``, the JSON ``files`` and, last, ``metrics.json``: ``metrics`` with
    ``weights`` (how they were obtained: ``"trained from scratch"``, ``"inherited"``, ``"fine-tuned (N epochs)"``)
    and the measured ``size.model_pt_bytes``. Returns what ``metrics.json`` holds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = folder / f".{MODEL_WEIGHTS}.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / MODEL_WEIGHTS)
    atomic_write_text(folder / PIPELINE_FILE, json.dumps(pipeline.to_json(), indent=2))
    for name, obj in (files or {}).items():
        atomic_write_text(folder / name, json.dumps(obj, indent=2))
    written = {**metrics, "weights": weights,
               "size": {**metrics.get("size", {}), "model_pt_bytes": (folder / MODEL_WEIGHTS).stat().st_size}}
    atomic_write_text(folder / METRICS_FILE, json.dumps(written, indent=2))
    return written


def load_model_dir(folder: str | Path) -> tuple[Pipeline, nn.Module]:
    """The pipeline and trained model of a ``retrain`` output folder (pruned weights unpacked; an int8 folder
    gives the int8 module, which runs on the CPU only)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "model folder does not exist")
    weights = folder / MODEL_WEIGHTS
    if not weights.is_file():
        raise DataError(weights, "model weights are missing (is this a folder written by `n2nas retrain`?)")
    from n2nas.compress.prune import unpack_state
    from n2nas.compress.quantize import QUANT_FILE, load_int8_state, rebuild_int8

    pipeline = load_pipeline(folder / PIPELINE_FILE)
    model = build_model(pipeline)
    try:
        state = unpack_state(torch.load(weights, map_location="cpu", weights_only=True))
        if (folder / QUANT_FILE).is_file():  # int8: rebuild the quantized module around the float architecture
            model = rebuild_int8(model, json.loads((folder / QUANT_FILE).read_text()))
            load_int8_state(model, state)
        else:
            model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as err:
        raise DataError(weights, f"weights do not fit the pipeline's architecture ({str(err).splitlines()[0]})") \
            from None
    return pipeline, model.eval()


NORM_FILE = "normalisation.json"  # a model folder's global normalisation statistics (null: per-record norms)
ENCODER_FILE = "encoder.json"  # a clinical table's encoder, fitted on the training rows (n2nas.data.table)
THRESHOLDS_FILE = "thresholds.json"  # multi-label: per-class decision thresholds chosen on the validation split


def stats_json(stats) -> dict[str, Any] | None:
    """Global normalisation statistics (``GlobalStats`` or None) as the JSON of :data:`NORM_FILE`."""
    if stats is None:
        return None
    import dataclasses

    import numpy as np

    return {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(stats).items()}


def stats_from_json(obj: dict[str, Any] | None):
    """Inverse of :func:`stats_json`."""
    if obj is None:
        return None
    import numpy as np

    from n2nas.data.windows import GlobalStats

    return GlobalStats(**{k: np.asarray(v, dtype=np.float32) for k, v in obj.items()})
