"""Atomic checkpoint files holding both students and teachers, optimisers and the config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "napari-synfoc/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt or of the wrong kind."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a SynFoC checkpoint atomically (``state`` gets the format tag)."""
    state = dict(state)
    state["format"] = FORMAT
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a SynFoC checkpoint, with a clear error for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read checkpoint '{path}': the file is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not a napari-synfoc checkpoint (no '{FORMAT}' tag); "
            "foundation-model weights go in --checkpoint, SynFoC models in --model"
        )
    return state
