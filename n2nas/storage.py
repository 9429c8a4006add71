"""Files that survive a kill, and random-generator state as JSON: the few persistence helpers every layer uses.

Atomic writes go to a temporary file in the same folder, are fsynced, then renamed over the target, so a reader
sees either the old file or the new one, never half of it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text flavour of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode())


def numpy_rng_state(rng: np.random.Generator) -> str:
    """JSON text of a numpy Generator's state (big integers survive as JSON numbers)."""
    return json.dumps(rng.bit_generator.state)


def restore_numpy_rng(rng: np.random.Generator, state: str) -> None:
    """Inverse of :func:`numpy_rng_state`."""
    rng.bit_generator.state = json.loads(state)


def dataclass_from_json(cls, obj: dict):
    """Rebuild a (nested, frozen) dataclass from the ``dataclasses.asdict`` JSON it was written as: nested
    dataclasses are rebuilt, JSON lists become tuples where the field is a tuple, unknown keys are refused."""
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    values = {}
    for name, value in obj.items():
        hint = hints[name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is \
            typing.Union else (hint,)
        inner = next((o for o in options if dataclasses.is_dataclass(o)), None)
        if inner is not None and isinstance(value, dict):
            value = dataclass_from_json(inner, value)
        elif any(o is tuple or typing.get_origin(o) is tuple for o in options) and isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)
