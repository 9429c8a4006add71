"""Controllers: ENAS (LSTM + REINFORCE), random, grid, regularized evolution — one interface (``base.Controller``).

May import n2nas.space, n2nas.storage, n2nas.presets and n2nas.errors only: a controller sees the flat token list,
never data, models or runners. A new controller is one module here plus one line in ``CONTROLLERS``;
``--controller`` of ``n2nas search`` and ``n2nas tune`` offers every name in it.
"""
from __future__ import annotations

import importlib

from typing import Any, Callable

from controllers.base import Controller
from n2nas.errors import ConfigError
from n2nas.presets import presets_of

# --controller name -> "module:class"; the class is built as ``cls(tokens, seed=seed, config=...)``, with
# ``config`` only for a class with a ``config_class``.
CONTROLLERS = {
    "enas": "controllers.enas:ENASController",
    "random": "controllers.random:RandomController",
    "evolution": "controllers.evolution:EvolutionController",
    "grid": "controllers.exhaustive:GridController",
}


def controller_class(name: str) -> type[Controller]:
    """The class registered as ``name`` in ``CONTROLLERS``; ConfigError naming ``--controller`` otherwise."""
    if name not in CONTROLLERS:
        raise ConfigError("--controller", f"unknown controller {name!r} (known: {', '.join(CONTROLLERS)})")
    module, cls = CONTROLLERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def controller_presets(name: str) -> dict[str, Callable[[], Any]]:
    """``{preset name: factory}`` of the controller registered as ``name`` (its config class's presets, the
    default first; empty for a controller without configuration)."""
    cls = controller_class(name)
    return presets_of(cls.config_class) if cls.config_class is not None else {}


def make_controller(name: str, tokens, seed: int = 0, preset: str | None = None, **config) -> Controller:
    """Build a controller by its ``CONTROLLERS`` name with the named ``preset`` of its config class (None: its
    first, if it has any)."""
    cls, presets = controller_class(name), controller_presets(name)
    if preset is not None and preset not in presets:
        known = ", ".join(presets) or "none"
        raise ConfigError("--controller-preset", f"controller {name!r} has no preset {preset!r} (known: {known})")
    if presets and "config" not in config:
        config["config"] = presets[preset or next(iter(presets))]()
    return cls(tuple(tokens), seed=seed, **config)


__all__ = ["CONTROLLERS", "Controller", "controller_class", "controller_presets", "make_controller"]
