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


# Globals a weights-only file may name (torch's tensor rebuilding, ordered dicts).
_SAFE_MODULES = ("torch", "collections")
_GLOBAL_IN_MESSAGE = (
    re.compile(r"Unsupported global: GLOBAL ([\w.]+)"),
    re.compile(r"unsupported GLOBAL ([\w.]+) whose module"),
    re.compile(r"GLOBAL ([\w.]+)"),
)


def pickle_globals(path: str | Path) -> list[str]:
    """The ``module.name`` globals a pickle (raw, or a torch zip's ``data.pkl``) would import,
    read with :mod:`pickletools` (opcodes are listed, nothing is imported or run)."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                data = zf.read(names[0]) if names else b""
        else:
            data = Path(path).read_bytes()
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" or op.name == "INST":
                found.append(".".join(str(arg).split(" ", 1)))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name):
                strings.append(str(arg))
    except Exception:  # noqa: BLE001 - a corrupt tail: keep what was read before it
        pass
    return found


def _unsafe_global(exc: BaseException, path: str | Path | None = None) -> str | None:
    """The disallowed global a weights-only load stopped at (a crafted or foreign pickle):
    from torch's message (every wording it uses), else from the pickle's own opcodes (torch
    may stop earlier, e.g. at protocol-4 framing)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    for pattern in _GLOBAL_IN_MESSAGE:
        m = pattern.search(str(exc))
        if m:
            return m.group(1)
    if path is not None:
        for name in pickle_globals(path):
            if name.split(".", 1)[0] not in _SAFE_MODULES:
                return name
    return None


def _torch_load(path: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` without torch's protocol warning for raw pickles."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Detected pickle protocol", UserWarning)
        return torch.load(path, map_location=map_location, weights_only=True)


def unsafe_file_message(path: str | Path, bad_global: str) -> str:
    """The message for a file that holds a Python object that could run code."""
    return (
        f"refused to open '{path}': it holds a Python object ({bad_global}) that could "
        "run code when loaded, which a napari-synfoc checkpoint or session never does. "
        "Nothing was loaded or run. Open only files from a source you trust; ask the "
        "sender to save the session again with napari-synfoc."
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a SynFoC checkpoint safely, with a clear error for missing, corrupt, unsafe or
    foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = _torch_load(path, map_location)
    except Exception as exc:
        bad_global = _unsafe_global(exc, path)
        if bad_global is not None:
            raise UnsafeCheckpointError(unsafe_file_message(path, bad_global)) from exc
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
