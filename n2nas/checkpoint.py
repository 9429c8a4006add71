"""Atomic save and exact resume of the whole search state (tensors and plain values only, no pickled objects)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "search_state.pt"


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


def save_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    """Save ``state`` so that a kill at any moment leaves either the previous or the new checkpoint whole."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(folder) / CHECKPOINT_NAME, buf.getvalue())


def load_checkpoint(folder: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The last checkpoint in ``folder`` or None; loaded with ``weights_only=True``."""
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


def numpy_rng_state(rng: np.random.Generator) -> str:
    """JSON text of a numpy Generator's state (big integers survive as JSON numbers)."""
    return json.dumps(rng.bit_generator.state)


def restore_numpy_rng(rng: np.random.Generator, state: str) -> None:
    """Inverse of :func:`numpy_rng_state`."""
    rng.bit_generator.state = json.loads(state)
