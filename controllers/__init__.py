"""Controllers: ENAS (LSTM + REINFORCE), random, grid, regularized evolution — one interface (``base.Controller``).

May import n2nas.space, n2nas.storage and n2nas.errors only: a controller sees the flat token list, never data,
models or runners. A new controller is one module here plus one line in ``CONTROLLERS``; ``--controller`` of
``n2nas search`` and ``n2nas tune`` offers every name in it.
"""
from __future__ import annotations

import importlib

from controllers.base import Controller
from n2nas.errors import ConfigError

# --controller name -> "module:class"; the class is built as ``cls(tokens, seed=seed, config=...)``, with
# ``config`` only for a class with ``presets``.
CONTROLLERS = {
    "enas": "controllers.enas:ENASController",
    "random": "controllers.random:RandomController",
    "evolution": "controllers.evolution:EvolutionController",
    "grid": "controllers.grid:GridController",
}


def controller_class(name: str) -> type[Controller]:
    """The class registered as ``name`` in ``CONTROLLERS``; ConfigError naming ``--controller`` otherwise."""
    if name not in CONTROLLERS:
        raise ConfigError("--controller", f"unknown controller {name!r} (known: {', '.join(CONTROLLERS)})")
    module, cls = CONTROLLERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_controller(name: str, tokens, seed: int = 0, preset: str | None = None, **config) -> Controller:
    """Build a controller by its ``CONTROLLERS`` name with the named ``preset`` of its ``presets`` (None: its
    first, if it has any)."""
    cls = controller_class(name)
    if preset is not None and preset not in cls.presets:
        known = ", ".join(cls.presets) or "none"
        raise ConfigError("--controller-preset", f"controller {name!r} has no preset {preset!r} (known: {known})")
    if cls.presets and "config" not in config:
        config["config"] = cls.presets[preset or next(iter(cls.presets))]()
    return cls(tuple(tokens), seed=seed, **config)


__all__ = ["CONTROLLERS", "Controller", "controller_class", "make_controller"]
