"""Atomic checkpoint files holding both students and teachers, optimisers and the config.

Files are read with ``torch.load(weights_only=True)``: tensors, dicts, lists, tuples, str, int,
float, bool and None only, so a file crafted to run code when unpickled is refused, never run.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "napari-synfoc/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe or of the wrong kind."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects that could run code when unpickled; it was not loaded."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder); the old file is kept."""


def _write_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full; free some space or choose another output folder"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the folder cannot be written (read-only or no permission); choose another folder"
    return f"{type(exc).__name__}: {exc}"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename it over ``path``.

    On any write error the temp file is removed and ``path`` keeps its previous content; an
    ``OSError`` becomes a :class:`CheckpointWriteError` naming the file and what to do.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if isinstance(exc, CheckpointWriteError):
            raise
        kept = " (the previous file is unchanged)" if path.is_file() else ""
        raise CheckpointWriteError(
            exc.errno, f"cannot write checkpoint '{path}': {_write_problem(exc)}{kept}"
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a SynFoC checkpoint atomically (``state`` gets the format tag)."""
    state = dict(state)
    state["format"] = FORMAT
    return atomic_torch_save(state, path)


def _unsafe_global(exc: BaseException) -> str | None:
    """The disallowed global a weights-only load stopped at (a crafted or foreign pickle)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return m.group(1) if m else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a SynFoC checkpoint safely, with a clear error for missing, corrupt, unsafe or
    foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        bad_global = _unsafe_global(exc)
        if bad_global is not None:
            raise UnsafeCheckpointError(
                f"refused to open '{path}': it holds a Python object ({bad_global}) that could "
                "run code when loaded, which a napari-synfoc checkpoint or session never does. "
                "Nothing was loaded or run. Open only files from a source you trust; ask the "
                "sender to save the session again with napari-synfoc."
            ) from exc
        detail = (
            "weights-only unpickler refused it"
            if isinstance(exc, pickle.UnpicklingError)
            else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        raise CheckpointError(
            f"cannot read checkpoint '{path}': the file is truncated or corrupt, or not a "
            f"napari-synfoc file ({detail}); nothing in it was run. Use an earlier copy or "
            "train again."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not a napari-synfoc checkpoint (no '{FORMAT}' tag); "
            "foundation-model weights go in --checkpoint, SynFoC models in --model"
        )
    return state
