"""Pipelines and trained models on disk: JSON + tensors (``torch.load(weights_only=True)``), never pickles."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from n2nas.errors import ConfigError, DataError
from n2nas.space import Pipeline
from n2nas.storage import atomic_write_text

MODEL_WEIGHTS = "model.pt"
PIPELINE_FILE = "pipeline.json"


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
    """A plain, freshly initialised ``nn.Module`` with exactly the pipeline's architecture."""
    from search_spaces import get_space

    n_leads = n_leads or int(pipeline.data.get("n_leads") or pipeline.data.get("n_inputs", 0))  # EHR: n_inputs
    n_classes = n_classes or len(pipeline.data.get("classes", ()))
    if not n_leads or not n_classes:
        raise ConfigError("pipeline", "the pipeline does not say how many leads and classes the model has")
    model = get_space(pipeline.space).build_child(pipeline.sample, n_leads, n_classes)
    if pipeline.data.get("norm") == "none":  # retrained with RetrainConfig(norm="none")
        strip_batch_norm(model)
    return model


def strip_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every batch-norm layer of ``model`` by ``nn.Identity`` (in place; returns ``model``)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            strip_batch_norm(child)
    return model


def save_model_dir(folder: Path, pipeline: Pipeline, model: nn.Module, extra: dict[str, Any],
                   state: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``pipeline.json``, ``model.pt`` (``state``, by default ``model``'s state dict) and ``extra`` JSON
    files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = folder / f".{MODEL_WEIGHTS}.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / MODEL_WEIGHTS)
    atomic_write_text(folder / PIPELINE_FILE, json.dumps(pipeline.to_json(), indent=2))
    for name, obj in extra.items():
        atomic_write_text(folder / name, json.dumps(obj, indent=2))


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
