"""The dock's choices (devices, foundation models, profiles), its config builder and the extra
unlabelled data (no Qt; torch only inside functions).

Validation of a training task lives in :func:`napari_synfoc.core.task.validate_task`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PROFILES, SynFoCConfig, default_profile_for, resolve_config

DEVICES = ("auto", "cpu", "cuda", "mps")
# (config name, label shown in the widget)
FOUNDATION_CHOICES = (
    ("litemedsam", "LiteMedSAM (bundled)"),
    ("medsam-vitb", "MedSAM ViT-B (checkpoint file)"),
    ("sam-vitb", "SAM ViT-B (checkpoint file)"),
)
PROFILE_CHOICES = ("auto", *PROFILES)


def spatial_shape(image_shape: Sequence[int], rgb: bool) -> tuple[int, ...]:
    """The image's shape without its RGB axis."""
    shape = tuple(int(s) for s in image_shape)
    return shape[:-1] if rgb else shape


def build_config(
    profile: str = "auto",
    device: str = "auto",
    foundation: str = "litemedsam",
    checkpoint: str | None = None,
    iterations: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> SynFoCConfig:
    """The dock's config through :func:`~napari_synfoc.config.resolve_config` (as the CLI's).

    The "tiny" test profile keeps its tiny random foundation model.
    """
    changes: dict[str, Any] = {"iterations": None if iterations is None else int(iterations)}
    if foundation in ("medsam-vitb", "sam-vitb"):
        changes["checkpoint"] = checkpoint or None
    changes.update(overrides or {})
    return resolve_config(profile, device, None if profile == "tiny" else foundation, changes)


def displayed_profile(profile: str, device: str) -> str:
    """The profile whose values the Advanced section shows, without importing torch."""
    if profile != "auto":
        return profile
    if device == "cuda":
        return default_profile_for("cuda")
    if device == "auto":
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            return default_profile_for("cuda")
    return default_profile_for("cpu")


def load_folder_images(folder: str | os.PathLike, rgb: bool, limit: int = 500) -> list[np.ndarray]:
    """Every readable image/volume in ``folder`` (label-map files skipped), as the task's kind.

    Grey images become 3-channel for an RGB task and RGB images are averaged to grey for a grey
    one.  Raises ``ValueError`` naming the folder when nothing can be read.
    """
    from ..io.readers import is_label_name, read_volume, supported

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"extra unlabelled data: {str(root)!r} is not a folder")
    out: list[np.ndarray] = []
    problems: list[str] = []
    for path in sorted(root.iterdir()):
        if len(out) >= limit:
            break
        if path.is_dir() or not supported(path) or is_label_name(path):
            continue
        try:
            arr, _ = read_volume(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        out.append(match_channels(arr, rgb))
    if not out:
        detail = f" ({problems[0]})" if problems else ""
        raise ValueError(f"extra unlabelled data: no readable image in {str(root)!r}{detail}")
    return out


def match_channels(arr: np.ndarray, rgb: bool, is_rgb: bool | None = None) -> np.ndarray:
    """Grey <-> RGB so that extra data matches the task.

    ``is_rgb`` says whether ``arr`` has a trailing RGB axis; None guesses (last axis of 3).
    """
    a = np.asarray(arr)
    if is_rgb is None:
        is_rgb = a.ndim in (3, 4) and a.shape[-1] == 3 and a.shape[-2] > 3
    if rgb and not is_rgb:
        return np.repeat(a[..., None], 3, axis=-1)
    if not rgb and is_rgb:
        return a.astype(np.float32).mean(axis=-1)
    return a
