"""Controllers: ENAS (LSTM + REINFORCE), random, grid, regularized evolution — one interface."""
from __future__ import annotations

from controllers.base import Controller
from n2nas.errors import ConfigError


def make_controller(name: str, tokens, seed: int = 0, enas_preset: str | None = None, **config) -> Controller:
    """Build a controller by name ("enas", "random", "grid", "evolution"); ``enas_preset`` names the
    ``ENASConfig`` preset of an ENAS controller (ignored by the others)."""
    from controllers.enas import ENASController
    from controllers.evolution import EvolutionController
    from controllers.grid import GridController
    from controllers.random import RandomController

    factories = {"enas": ENASController, "random": RandomController, "grid": GridController,
                 "evolution": EvolutionController}
    if name not in factories:
        raise ConfigError("--controller", f"unknown controller {name!r} (known: {', '.join(factories)})")
    if name == "enas" and enas_preset is not None:
        from controllers.enas import ENASConfig

        config["config"] = ENASConfig.named(enas_preset)
    return factories[name](tuple(tokens), seed=seed, **config)


__all__ = ["Controller", "make_controller"]
