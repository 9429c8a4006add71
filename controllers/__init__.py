"""Controllers: ENAS (LSTM + REINFORCE), random, grid, regularized evolution — one interface (``base.Controller``).

May import n2nas.space, n2nas.storage and n2nas.errors only: a controller sees the flat token list, never data,
models or runners. A new controller is one module here plus one line in ``CONTROLLERS``; ``--controller`` of
``n2nas search`` and ``n2nas tune`` offers every name in it.
"""
from __future__ import annotations

import importlib

from controllers.base import Controller
from n2nas.errors import ConfigError

# --controller name -> "module:class"; the class is built as ``cls(tokens, seed=seed, **config)``.
CONTROLLERS = {
    "enas": "controllers.enas:ENASController",
    "random": "controllers.random:RandomController",
    "evolution": "controllers.evolution:EvolutionController",
    "grid": "controllers.grid:GridController",
}


def make_controller(name: str, tokens, seed: int = 0, enas_preset: str | None = None, **config) -> Controller:
    """Build a controller by its ``CONTROLLERS`` name; ``enas_preset`` names the ``ENASConfig`` preset of an
    ENAS controller (ignored by the others)."""
    if name not in CONTROLLERS:
        raise ConfigError("--controller", f"unknown controller {name!r} (known: {', '.join(CONTROLLERS)})")
    if name == "enas" and enas_preset is not None:
        from controllers.enas import ENASConfig

        config["config"] = ENASConfig.named(enas_preset)
    module, cls = CONTROLLERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(tuple(tokens), seed=seed, **config)


__all__ = ["CONTROLLERS", "Controller", "make_controller"]
