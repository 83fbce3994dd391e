"""Fill between labelled slices (issue 21): shape-based interpolation of one class's masks.

A class labelled on two slices is interpolated on the unlabelled slices between them through
signed distance maps (Raya and Udupa's shape-based interpolation, as 3D Slicer's "Fill between
slices" and ITK-SNAP's interpolation do): each labelled slice's mask becomes its signed distance
(negative inside), the maps of the nearest labelled slice below and above are blended linearly
by the slice's position, and the blend's negative part is the mask.  Qt-free numpy / scipy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """The signed Euclidean distance (in pixels) to the boundary of a 2-D ``mask``: negative
    inside, positive outside; the boundary lies halfway between an inside and an outside pixel
    (a one-pixel mask is -0.5 at its pixel and +0.5 beside it)."""
    from scipy import ndimage as ndi

    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"a mask for the signed distance must be 2-D, got shape {m.shape}")
    if not m.any():
        raise ValueError("an empty mask has no boundary: no signed distance")
    if m.all():
        raise ValueError("a full mask has no boundary: no signed distance")
    inside = ndi.distance_transform_edt(m)
    outside = ndi.distance_transform_edt(~m)
    return np.where(m, 0.5 - inside, outside - 0.5).astype(np.float32)


def neighbours(labeled: Iterable[int], z: int) -> tuple[int | None, int | None]:
    """The nearest labelled slice below and above slice ``z`` (None where there is none)."""
    done = [int(k) for k in labeled]
    below = [k for k in done if k < z]
    above = [k for k in done if k > z]
    return (max(below) if below else None, min(above) if above else None)


def fill_between(
    masks: Mapping[int, np.ndarray], slices: Iterable[int], max_gap: int | None = None
) -> dict[int, np.ndarray]:
    """``{z: mask}`` interpolated on each of ``slices`` (unlabelled) that lies between two
    labelled slices which both hold the class.

    ``masks``: the class's mask on every labelled slice (an all-False mask where a slice is
    labelled without the class: nothing is interpolated next to it, so a structure is never
    stretched past a slice that lacks it).  ``max_gap``: leave out gaps of more slices than this
    between the two labelled slices (None: any gap).  Slices whose blend is empty, and slices
    that are themselves labelled, are left out."""
    known = {int(z): np.asarray(m, bool) for z, m in masks.items()}
    shapes = {m.shape for m in known.values()}
    if len(shapes) > 1:
        raise ValueError(f"the labelled slices' masks differ in shape: {sorted(shapes)}")
    sdf: dict[int, np.ndarray | None] = {}

    def dist(z: int) -> np.ndarray | None:
        if z not in sdf:
            m = known[z]
            sdf[z] = signed_distance(m) if m.any() and not m.all() else None
        return sdf[z]

    out: dict[int, np.ndarray] = {}
    for z in sorted({int(s) for s in slices}):
        if z in known:
            continue
        lo, hi = neighbours(known, z)
        if lo is None or hi is None or (max_gap is not None and hi - lo > max_gap):
            continue
        a, b = dist(lo), dist(hi)
        if a is None or b is None:
            continue
        t = (z - lo) / (hi - lo)
        mask = ((1.0 - t) * a + t * b) < 0
        if mask.any():
            out[z] = mask
    return out
