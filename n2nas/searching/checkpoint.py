"""Atomic save and exact resume of the whole search state (tensors and plain values only, no pickled objects)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from n2nas.storage import atomic_write_bytes

CHECKPOINT_NAME = "search_state.pt"


def save_checkpoint(folder: Path, state: dict[str, Any], name: str = CHECKPOINT_NAME) -> None:
    """Save ``state`` as ``folder/name`` so that a kill at any moment leaves either the previous or the new
    checkpoint whole."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(folder) / name, buf.getvalue())


def load_checkpoint(folder: Path, map_location: str | torch.device = "cpu",
                    name: str = CHECKPOINT_NAME) -> dict[str, Any] | None:
    """The last checkpoint ``folder/name`` or None; loaded with ``weights_only=True``."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    return torch.load(path, map_location=map_location, weights_only=True)
