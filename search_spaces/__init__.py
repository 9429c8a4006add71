"""Search spaces: ``get_space(name)`` returns a definition (``.space``, ``build_supernet``, ``build_child``, ...).

May import n2nas.space, n2nas.supernet, n2nas.train, n2nas.data, n2nas.presets and n2nas.errors. A new space is
one module here plus one line in ``_FACTORIES``.
"""
from __future__ import annotations

from typing import Callable

from n2nas.errors import ConfigError
from n2nas.presets import named


def _ecg(name: str, preset: str) -> Callable[[], object]:
    def make():
        from search_spaces.ecg import ECGSpace, ECGSpaceConfig

        return ECGSpace(name, named(ECGSpaceConfig, preset, "--space"))
    return make


def _ecg_res(name: str, preset: str) -> Callable[[], object]:
    def make():
        from search_spaces.ecg_res import ECGResConfig, ECGResSpace

        return ECGResSpace(name, named(ECGResConfig, preset, "--space"))
    return make


def _ehr(name: str, preset: str) -> Callable[[], object]:
    def make():
        from search_spaces.ehr_mlp import EHRSpace, EHRSpaceConfig

        return EHRSpace(name, named(EHRSpaceConfig, preset, "--space"))
    return make


_FACTORIES: dict[str, Callable[[], object]] = {
    "ecg": _ecg("ecg", "n2nas"),
    "ecg-small": _ecg("ecg-small", "small"),
    "ecg-cpu": _ecg("ecg-cpu", "cpu"),
    "ecg-hannun": _ecg("ecg-hannun", "hannun"),
    "ecg-12lead": _ecg("ecg-12lead", "twelve-lead"),
    "ecg-12lead-resnet": _ecg("ecg-12lead-resnet", "twelve-lead-resnet"),
    "ecg-res": _ecg_res("ecg-res", "cpu"),
    "ehr-mlp": _ehr("ehr-mlp", "diagnosenet"),
    "ehr-mlp-small": _ehr("ehr-mlp-small", "small"),
}


def known_spaces() -> tuple[str, ...]:
    """Registered space names."""
    return tuple(_FACTORIES)


def get_space(name: str):
    """The search-space definition registered as ``name``; ConfigError naming ``--space`` otherwise."""
    try:
        factory = _FACTORIES[name]
    except (KeyError, TypeError):
        raise ConfigError("--space", f"unknown search space {name!r}; known: {', '.join(_FACTORIES)}") from None
    return factory()
