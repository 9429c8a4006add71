"""n2nas: pipeline and architecture search for medical signals.

Python API: :func:`search`, :func:`load_pipeline`, :func:`build_model`. The search loop lives in
``n2nas.search_loop`` (not ``n2nas.search``) so that ``n2nas.search`` stays this function.
"""
from __future__ import annotations

__all__ = ["search", "load_pipeline", "build_model"]


def search(data="sample", config=None, out="runs/search", resume=False, progress=False):
    """Run or resume a pipeline search; returns a result with ``.best(k)``, ``.trials`` and ``.run_dir``.

    ``data`` is a data SPEC or a Dataset; ``config`` a :class:`n2nas.search_loop.SearchConfig`.
    """
    from n2nas.search_loop import SearchConfig, search as run

    return run(data, config or SearchConfig(), out=out, resume=resume, progress=progress)


def load_pipeline(path):
    """Read and validate a pipeline JSON file (e.g. ``best_pipeline.json``)."""
    from n2nas.export import load_pipeline as load

    return load(path)


def build_model(pipeline, n_leads=None, n_classes=None):
    """A plain ``nn.Module`` with the pipeline's architecture (freshly initialised)."""
    from n2nas.export import build_model as build

    return build(pipeline, n_leads, n_classes)
