"""n2nas: pipeline and architecture search for medical signals.

Python API: :func:`search`, :class:`SearchConfig`, :func:`load_dataset`, :func:`load_pipeline`, :func:`build_model`,
:func:`retrain` (with :class:`RetrainConfig`) and :func:`evaluate`; they live in :mod:`n2nas.searching.loop`,
:mod:`n2nas.models.retrain` and :mod:`n2nas.models.evaluate`. The search stage is the package ``n2nas.searching``
(not ``n2nas.search``) and retraining the module ``n2nas.models.retrain`` so that ``n2nas.search`` and
``n2nas.retrain`` stay these functions. This facade is the top layer (ARCHITECTURE.md): it imports lazily, and no
module of the library imports it.
"""
from __future__ import annotations

__all__ = ["search", "SearchConfig", "load_dataset", "load_pipeline", "build_model", "retrain", "RetrainConfig",
           "evaluate"]


def search(data="sample", config=None, out="runs/search", resume=False, progress=False):
    """Run or resume a pipeline search; returns a result with ``.best(k)``, ``.trials`` and ``.run_dir``.

    ``data`` is a data SPEC or a Dataset; ``config`` a :class:`SearchConfig` (default ``SearchConfig()``: 10
    epochs, no time budget); ``progress=True`` shows a live status line on stderr (a string: the same, with that
    label leading the line).
    """
    from n2nas.searching.loop import SearchConfig, search as run

    return run(data, config or SearchConfig(), out=out, resume=resume, progress=progress)


def load_dataset(spec: str, *, skip_bad: bool = False):
    """Read the data a SPEC names (``sample``, ``physionet2017:DIR``, ... see ``n2nas data summary --help``)."""
    from n2nas.data.spec import load_dataset as load

    return load(spec, skip_bad=skip_bad)


def load_pipeline(path):
    """Read and validate a pipeline JSON file (e.g. ``best_pipeline.json``)."""
    from n2nas.models.folder import load_pipeline as load

    return load(path)


def build_model(pipeline, n_leads=None, n_classes=None):
    """A plain ``nn.Module`` with the pipeline's architecture (freshly initialised)."""
    from n2nas.models.folder import build_model as build

    return build(pipeline, n_leads, n_classes)


def retrain(pipeline, data, out, config=None, log=print):
    """Train ``pipeline`` (a Pipeline or a pipeline JSON path) from scratch on ``data`` (a SPEC or a Dataset) into the
    model folder ``out``; returns its ``metrics.json`` (``config``: a :class:`RetrainConfig`, default 40 epochs)."""
    from n2nas.models.folder import load_pipeline as load
    from n2nas.models.retrain import RetrainConfig, retrain as run

    pipeline = load(pipeline) if isinstance(pipeline, (str, bytes)) or hasattr(pipeline, "__fspath__") else pipeline
    return run(pipeline, load_dataset(data) if isinstance(data, str) else data, out, config or RetrainConfig(), log)


def evaluate(model_dir, data):
    """Score a model folder on every record of ``data`` (a SPEC or a Dataset): the keys of ``n2nas evaluate``."""
    from n2nas.models.evaluate import evaluate as run

    return run(model_dir, load_dataset(data) if isinstance(data, str) else data)


def __getattr__(name: str):
    # SearchConfig is imported on first use: `import n2nas` stays light (no torch) for the command line.
    if name == "SearchConfig":
        from n2nas.searching.loop import SearchConfig

        return SearchConfig
    if name == "RetrainConfig":
        from n2nas.models.retrain import RetrainConfig

        return RetrainConfig
    raise AttributeError(f"module 'n2nas' has no attribute {name!r}")
