"""Fixing one disagreement region (Qt-free): accept a model's prediction inside the connected
M_d (divergence) region under a click, on one slice only."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.label_edit import LabelEdit
from .slice_edit import plane

SOURCES = {"medsam": "MedSAM", "unet": "U-Net", "ensemble": "ensemble"}


def maps_problem(maps: Any, labels) -> str | None:
    """Why ``maps`` (the latest predictions) cannot edit ``labels``, or None."""
    if maps is None:
        return "No predictions yet: train (or Predict) first to see where the models disagree."
    want = maps.fm_label.shape
    have = tuple(np.shape(labels))
    if have != (want[1:] if len(have) == 2 else want):
        return f"The Labels layer's shape {have} does not match the predictions' {want}."
    return None


def region_fix_edit(
    lab: np.ndarray, z: int, point, maps: Any, source: str, keep_existing: bool = False
) -> tuple[LabelEdit, int]:
    """The edit writing ``source``'s prediction (a key of :data:`SOURCES`) into the M_d region
    under ``point`` (napari ``(row, col)`` or ``(z, row, col)``) of slice ``z``, and the region's
    size in pixels.  ``keep_existing`` leaves labelled pixels alone.  ``ValueError`` with a
    message for the user when the click is on another slice or outside every region."""
    from scipy import ndimage as ndi

    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose from {tuple(SOURCES)}")
    p = np.asarray(point, dtype=np.float64).reshape(-1)
    if lab.ndim == 3 and p.size == 3 and int(round(p[0])) != z:
        raise ValueError(f"The click is on slice {int(round(p[0]))}, not slice {z}.")
    r, c = (int(round(v)) for v in p[-2:])
    zi = 0 if lab.ndim == 2 else z
    div = np.asarray(maps.divergence[zi]) != 0
    if not (0 <= r < div.shape[0] and 0 <= c < div.shape[1]) or not div[r, c]:
        raise ValueError(
            f"No disagreement (M_d) region at ({r}, {c}) on slice {z}: click inside a "
            "highlighted Divergence (M_d) region."
        )
    comp, _ = ndi.label(div, structure=np.ones((3, 3), bool))
    region = comp == comp[r, c]
    old = plane(lab, z)
    prop = np.asarray(maps.proposal(source)[zi]).astype(lab.dtype)
    new = np.where(region, prop, old)
    if keep_existing:
        new = np.where(old != 0, old, new)
    ys, xs = np.nonzero(new != old)
    idx = (ys, xs) if lab.ndim == 2 else (np.full(ys.shape, z, ys.dtype), ys, xs)
    return LabelEdit(idx, old[ys, xs].copy(), new[ys, xs]), int(region.sum())
