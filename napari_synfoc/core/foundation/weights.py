"""Base weights: SHA-256 verification, safe reading, SAM checkpoint adaptation to other sizes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class FoundationWeightsError(ValueError):
    """Base weights of a foundation model are missing, corrupt, tampered with or incompatible."""


# (resolved path, size, mtime_ns) -> sha256 hex; files are hashed once per process.
_SHA_CACHE: dict[tuple[str, int, int], str] = {}

# Decoder parts rebuilt for K mask tokens and randomly initialised (spec §5), never loaded.
REINIT_DECODER_KEYS = ("mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head")
# Non-persistent Sam buffers some exported checkpoints carry; the segmenter normalises itself.
IGNORED_KEYS = ("pixel_mean", "pixel_std")


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, cached per process on (path, size, mtime)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise FoundationWeightsError(f"weights file '{path}' cannot be read: {exc}") from exc
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def verify_sha256(path: str | Path, expected: str) -> str:
    """Check that ``path`` has SHA-256 ``expected``; else raise :class:`FoundationWeightsError`."""
    if not Path(path).is_file():
        raise FoundationWeightsError(f"weights file '{path}' does not exist")
    actual = file_sha256(path)
    if actual.lower() != expected.lower():
        raise FoundationWeightsError(
            f"weights file '{path}' failed SHA-256 verification: expected {expected}, "
            f"got {actual}. "
            "The file is corrupt or was modified; reinstall the package that ships it."
        )
    return actual


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Accepts a plain state dict or one wrapped under ``"model"`` / ``"state_dict"``.
    """
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise FoundationWeightsError(f"checkpoint '{path}' does not exist or is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FoundationWeightsError(
            f"cannot read checkpoint '{path}': not a readable PyTorch weights file "
            f"(truncated, corrupt or unsafe pickle) [{type(exc).__name__}: {exc}]"
        ) from exc
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise FoundationWeightsError(
            f"checkpoint '{path}' does not hold a state dict of tensors (got {type(obj).__name__})"
        )
    return obj


def _resize_pos_embed(t: torch.Tensor, size: int) -> torch.Tensor:
    """``1×G×G×C`` absolute position embedding → ``1×size×size×C`` (bilinear)."""
    x = t.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).to(t.dtype)


def _resize_rel_pos(t: torch.Tensor, length: int) -> torch.Tensor:
    """``L×C`` relative-position table → ``length×C`` (linear along L, as SAMed's bilinear)."""
    x = t.float()[None, None]
    x = F.interpolate(x, size=(length, t.shape[1]), mode="bilinear", align_corners=False)
    return x[0, 0].to(t.dtype)


def adapt_sam_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Fit a SAM-format state dict to ``model`` (image_encoder / prompt_encoder / mask_decoder).

    Drops the decoder's mask tokens, hypernetwork MLPs and IoU head (re-initialised for K tokens)
    and the pixel mean/std buffers; resizes the absolute position embedding and any relative-
    position table whose length differs.  Raises :class:`FoundationWeightsError` naming
    ``source`` for missing, unexpected or mis-shaped keys.
    """
    target = model.state_dict()
    wanted = {k for k in target if not any(r in k for r in REINIT_DECODER_KEYS)}
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        if any(r in key for r in REINIT_DECODER_KEYS) or key.split(".")[-1] in IGNORED_KEYS:
            continue
        if key not in wanted:
            unexpected.append(key)
            continue
        shape = target[key].shape
        if value.shape != shape:
            if key.endswith("image_encoder.pos_embed") and value.ndim == 4 and len(shape) == 4:
                value = _resize_pos_embed(value, shape[1])
            elif key.endswith(("rel_pos_h", "rel_pos_w")) and value.ndim == 2:
                if value.shape[1] == shape[1]:
                    value = _resize_rel_pos(value, shape[0])
        if value.shape != shape:
            raise FoundationWeightsError(
                f"{source}: tensor '{key}' has shape {tuple(value.shape)} but the model expects "
                f"{tuple(shape)}; is this a SAM ViT-B checkpoint?"
            )
        out[key] = value
    missing = sorted(wanted - set(out))
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:5]})")
        raise FoundationWeightsError(
            f"{source} does not match the SAM ViT-B architecture: " + "; ".join(parts)
        )
    return out


def load_sam_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a SAM/MedSAM checkpoint file into ``model`` (resizing as needed).

    Returns the ``base_weights`` description ``{"name", "path", "sha256"}``.
    """
    path = Path(os.path.expanduser(str(path)))
    state = read_state_dict(path)
    adapted = adapt_sam_state_dict(state, model, source=f"checkpoint '{path}'")
    result = model.load_state_dict(adapted, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return {"name": path.name, "path": str(path.resolve()), "sha256": file_sha256(path)}
