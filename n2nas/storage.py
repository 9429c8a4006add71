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
