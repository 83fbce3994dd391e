"""Atomic checkpoint files holding both students and teachers, optimisers and the config.

Files are read with ``torch.load(weights_only=True)``: tensors, dicts, lists, tuples, str, int,
float, bool and None only, so a file crafted to run code when unpickled is refused, never run.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..io.geometry import os_problem

FORMAT = "napari-synfoc/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe or of the wrong kind."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects that could run code when unpickled; it was not loaded."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder); the old file is kept.

    ``errno`` is the system's code; the text (``str``) is the message alone, without the
    ``[Errno N]`` prefix ``OSError`` would put in front of it."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror is not None else super().__str__()


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
            exc.errno, f"cannot write checkpoint '{path}': {os_problem(exc)}{kept}"
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


def _load_refusing_code(load: Callable[[], Any], path: Path, unreadable: Exception) -> Any:
    """``load()``; a refused pickle global raises :class:`UnsafeCheckpointError` (the file
    tried to run code), any other failure ``unreadable``."""
    try:
        return load()
    except Exception as exc:
        bad_global = _unsafe_global(exc, path)
        if bad_global is not None:
            raise UnsafeCheckpointError(unsafe_file_message(path, bad_global)) from exc
        raise unreadable from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a SynFoC checkpoint safely, with a clear error for missing, corrupt, unsafe or
    foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    state = _load_refusing_code(
        lambda: _torch_load(path, map_location),
        path,
        CheckpointError(
            f"cannot read checkpoint '{path}': the file is truncated or corrupt, or not a "
            "napari-synfoc file; nothing in it was run. Use an earlier copy or train again."
        ),
    )
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not a napari-synfoc session or model (it has no '{FORMAT}' tag). "
            "If it holds foundation-model weights (MedSAM or SAM ViT-B), choose it as the "
            "foundation model's weights instead."
        )
    return state


# --- pre-flight check of a foundation model's weights file (issue 23) ----------------------
class FoundationCheckpointError(CheckpointError):
    """A MedSAM / SAM ViT-B weights file is missing or of the wrong kind (pre-flight check)."""


# Each ViT-B foundation: its name for users, its usual file, and the ViT width and depth.
_VIT_FILES = {
    "medsam-vitb": ("MedSAM ViT-B", "medsam_vit_b.pth"),
    "sam-vitb": ("SAM ViT-B", "sam_vit_b_01ec64.pth"),
    "tiny": ("the tiny test SAM", "tiny_sam.pth"),
}
_VIT_SHAPES = {"medsam-vitb": (768, 12), "sam-vitb": (768, 12), "tiny": (32, 2)}
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"
_SAM_SIZES = {32: "tiny", 768: "ViT-B", 1024: "ViT-L", 1280: "ViT-H"}


def _file_problem(path: Path, what: str, usual: str) -> str | None:
    """Missing / folder / empty / unreadable file, in words; None when it can be opened."""
    if path.is_dir():
        return f"'{path}' is a folder, not a weights file: choose the file {usual} inside it."
    if not path.exists():
        return (
            f"The {what} weights file '{path.name}' does not exist in '{path.parent}': choose "
            "the file again (it may have been moved or renamed)."
        )
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"The {what} weights file '{path.name}' cannot be opened: {exc.strerror}."
    if size == 0:
        return f"The {what} weights file '{path.name}' is empty (0 bytes): download it again."
    return None


def _state_kind_problem(state: Any, name: str, foundation: str, what: str) -> str | None:
    """Why a loaded object is not ``foundation``'s SAM state dict, or None (keys and shapes
    only)."""
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return (
            f"'{name}' is a napari-synfoc session, not {what} weights: open it with Load "
            f"session, and choose {_VIT_FILES[foundation][1]} as the foundation model's weights."
        )
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        return f"'{name}' does not hold model weights: choose the {what} file."
    keys = [k for k in state if isinstance(k, str)]
    if any(k.startswith("image_encoder.patch_embed.seq.") for k in keys):
        return (
            f"'{name}' holds LiteMedSAM weights, not {what}: choose LiteMedSAM as the "
            f"foundation model, or choose the file {_VIT_FILES[foundation][1]}."
        )
    patch = state.get(_PATCH_KEY)
    if not isinstance(patch, torch.Tensor) or patch.ndim != 4:
        return (
            f"'{name}' does not hold a SAM image encoder (it may be a U-Net or another "
            f"network's weights): choose the {what} file."
        )
    width, depth = _VIT_SHAPES[foundation]
    blocks = {k.split(".")[2] for k in keys if k.startswith("image_encoder.blocks.")}
    if int(patch.shape[0]) != width or len(blocks) != depth:
        size = _SAM_SIZES.get(int(patch.shape[0]), f"{len(blocks)} blocks")
        return (
            f"'{name}' holds a larger SAM ({size}, {int(patch.shape[0])} wide), not {what}: "
            f"choose the file {_VIT_FILES[foundation][1]}."
            if int(patch.shape[0]) > width
            else f"'{name}' holds a SAM image encoder {int(patch.shape[0])} wide with "
            f"{len(blocks)} blocks, not {what} ({width} wide, {depth} blocks)."
        )
    if not any(k.startswith("mask_decoder.") for k in keys):
        return (
            f"'{name}' has no mask decoder (only part of the model was saved): choose the "
            f"full {what} file ({_VIT_FILES[foundation][1]})."
        )
    return None


def check_foundation_checkpoint(path: str | Path | None, foundation: str) -> None:
    """Pre-flight check of the weights file of a ViT-B foundation (``"medsam-vitb"``,
    ``"sam-vitb"``; ``"tiny"`` for tests), before any training process starts.

    Reads the file's keys and shapes only (tensors memory-mapped, nothing copied) and raises
    :class:`FoundationCheckpointError` (:class:`UnsafeCheckpointError` for a file that could
    run code) in the user's words: no file chosen, missing, a folder, empty, not a PyTorch
    file or incomplete, a napari-synfoc session, LiteMedSAM, a U-Net, a larger SAM, no decoder.
    """
    what, usual = _VIT_FILES[foundation]
    if path is None or not str(path).strip():
        raise FoundationCheckpointError(
            f"{what} needs its weights file ({usual}); it cannot be downloaded here: choose "
            "the file as the foundation model's weights."
        )
    path = Path(os.path.expanduser(str(path)))
    problem = _file_problem(path, what, usual)
    if problem is not None:
        raise FoundationCheckpointError(problem)
    state = _load_refusing_code(
        lambda: _torch_load_mmap(path),
        path,
        FoundationCheckpointError(
            f"'{path.name}' is not a PyTorch weights file, or it is incomplete (an interrupted "
            f"download?): download it again ({usual}). Nothing in it was run."
        ),
    )
    problem = _state_kind_problem(state, path.name, foundation, what)
    if problem is not None:
        raise FoundationCheckpointError(problem)


def _torch_load_mmap(path: Path) -> Any:
    """Weights-only load with the tensors memory-mapped (zip files), else read normally."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return _torch_load(path, "cpu")
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Detected pickle protocol", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
