"""n2nas: pipeline and architecture search for medical signals.

Python API: :func:`search`, :class:`SearchConfig`, :func:`load_dataset`, :func:`load_pipeline`, :func:`build_model`;
retraining lives in :mod:`n2nas.retrain` (``retrain``, ``RetrainConfig``), scoring a model folder in
:mod:`n2nas.evaluation` (``evaluate``, ``predict``). The search
stage is the package ``n2nas.searching`` (not ``n2nas.search``) so that ``n2nas.search`` stays this function; for the
same reason there is no ``n2nas.retrain`` function: importing the ``n2nas.retrain`` module would replace it. This
facade is the top layer (ARCHITECTURE.md): it imports lazily, and no module of the library imports it.
"""
from __future__ import annotations

__all__ = ["search", "SearchConfig", "load_dataset", "load_pipeline", "build_model"]


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
    from n2nas.artifacts import load_pipeline as load

    return load(path)


def build_model(pipeline, n_leads=None, n_classes=None):
    """A plain ``nn.Module`` with the pipeline's architecture (freshly initialised)."""
    from n2nas.artifacts import build_model as build

    return build(pipeline, n_leads, n_classes)


def __getattr__(name: str):
    # SearchConfig is imported on first use: `import n2nas` stays light (no torch) for the command line.
    if name == "SearchConfig":
        from n2nas.searching.loop import SearchConfig

        return SearchConfig
    raise AttributeError(f"module 'n2nas' has no attribute {name!r}")
