"""From layer data to a training task and config (no Qt; torch only inside functions).

The widget calls these in the GUI thread (cheap checks and copies) and in the worker thread
(loading a folder, building the config that needs the device).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
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


class SelectionError(ValueError):
    """The chosen layers cannot be trained on; the message tells the user what to change."""


def spatial_shape(image_shape: Sequence[int], rgb: bool) -> tuple[int, ...]:
    """The image's shape without its RGB axis."""
    shape = tuple(int(s) for s in image_shape)
    return shape[:-1] if rgb else shape


def check_selection(
    image_shape: Sequence[int] | None,
    rgb: bool,
    labels_shape: Sequence[int] | None,
    labeled: Sequence[int] | None = None,
    image_name: str = "image",
    labels_name: str = "labels",
) -> str | None:
    """A readable problem with the chosen image/labels, or None when training can start."""
    if image_shape is None:
        return "Choose an Image layer (a 2D image or a (Z, Y, X) stack) to train on."
    spatial = spatial_shape(image_shape, rgb)
    if len(spatial) not in (2, 3):
        return (
            f"Image '{image_name}' has shape {tuple(image_shape)}: SynFoC needs a 2D image "
            "(grey or RGB) or a (Z, Y, X) stack."
        )
    if labels_shape is None:
        return (
            "Choose a Labels layer: paint the structure on a few slices of "
            f"'{image_name}' (Layers > New Labels layer), then train."
        )
    if tuple(labels_shape) != spatial:
        return (
            f"Labels '{labels_name}' have shape {tuple(labels_shape)} but image "
            f"'{image_name}' has {'spatial ' if rgb else ''}shape {spatial}: pick the Labels "
            "layer that belongs to this image."
        )
    if labeled is not None and len(labeled) == 0:
        return (
            f"Labels '{labels_name}' are empty: paint the structure on at least one slice "
            "(or mark an all-background slice as labelled) before training."
        )
    return None


def avoid_triton_llvm_clash() -> bool:
    """Keep torch from importing triton when Mesa's LLVM is already loaded; True if blocked.

    napari's OpenGL on Mesa (llvmpipe: VMs, remote desktops, Xvfb) loads ``libLLVM``; importing
    triton's own LLVM afterwards segfaults the process (torchvision -> torch._dynamo probes for
    triton).  Triton is only needed for ``torch.compile`` on CUDA, so it is hidden in that case.
    Linux only (reads ``/proc/self/maps``); a no-op when triton is already imported.
    """
    if "triton" in sys.modules:
        return False
    try:
        with open("/proc/self/maps") as fh:
            loaded = "libLLVM" in fh.read()
    except OSError:
        return False
    if loaded:
        sys.modules["triton"] = None  # ``import triton`` now raises ImportError
    return loaded


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda', 'mps' or 'cpu' (imports torch)."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


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


def build_task(
    image: np.ndarray,
    rgb: bool,
    labels: np.ndarray,
    labeled: Iterable[int],
    extra: Sequence[np.ndarray] = (),
):
    """A :class:`StackTask` from snapshots (the caller copies the labels first).

    ``extra`` arrays must already match the task's channels (see :func:`match_channels`).
    """
    from ..core.interactive import StackTask

    return StackTask(
        image=image,
        labels=labels,
        labeled_slices=[int(z) for z in labeled],
        rgb=bool(rgb),
        extra_unlabeled=list(extra),
    )
