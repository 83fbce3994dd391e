"""The trained models as prompters (issue 21): LiteMedSAM boxed by the ensemble's own masks.

SynFoC's ensemble finds the structure on slices nobody labelled, but its boundaries are those
of a model trained on a few slices; LiteMedSAM, given a box, draws sharp boundaries but cannot
find anything by itself.  :func:`model_prompted_mask` joins the two (as SemiSAM+ and UnCoL use a
model's mask to prompt SAM): each connected part of the ensemble's class mask on a slice gives a
box (its extent plus ``margin`` pixels), and LiteMedSAM's mask for that box replaces the part
when the two agree (intersection over union at least ``iou_min``).  Where they do not (SAM
leaking into bone, a part SAM cannot see), the models' part stays: a suggestion never throws
away what the models found.

Measured on the shared CT (aorta, 150 iterations on 5 labelled slices, benchmarks/model_prompts.py,
docs/results/model_prompts_cpu): the unlabelled slices whose aorta reaches Dice 0.90 go from 53
(the ensemble) to 78 of 147 with this rule, and the brush regions still needed from 200 to 161;
LiteMedSAM boxed by the reference on every slice reaches 96 of 147 (105 brush regions).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MODEL_BOX_MARGIN = 2.0  # pixels added around each part's extent (a person's box is not tight)
MIN_PART_PIXELS = 10  # smaller parts are kept as the models drew them (no box)
IOU_MIN = 0.5  # LiteMedSAM's mask replaces a part only when it overlaps it this much
EIGHT = np.ones((3, 3), bool)


def part_boxes(
    mask: np.ndarray, margin: float = MODEL_BOX_MARGIN, min_pixels: int = MIN_PART_PIXELS
) -> list[tuple[np.ndarray, tuple[float, float, float, float] | None]]:
    """The 8-connected parts of a 2-D bool ``mask``, largest first, each with its box
    ``(x0, y0, x1, y1)`` (extent plus ``margin``, inside the slice), or None for a part under
    ``min_pixels``."""
    from scipy import ndimage as ndi

    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"part_boxes needs a 2-D mask, got shape {m.shape}")
    h, w = m.shape
    comp, n = ndi.label(m, structure=EIGHT)
    out = []
    for i in range(1, n + 1):
        part = comp == i
        ys, xs = np.nonzero(part)
        box = None
        if ys.size >= min_pixels:
            x0, y0 = max(0.0, xs.min() - margin), max(0.0, ys.min() - margin)
            x1, y1 = min(w - 1.0, xs.max() + margin), min(h - 1.0, ys.max() + margin)
            box = (float(x0), float(y0), float(max(x1, x0 + 1)), float(max(y1, y0 + 1)))
        out.append((part, box))
    out.sort(key=lambda p: -int(p[0].sum()))
    return out


def model_prompted_mask(
    segment_box,
    models_mask: np.ndarray,
    *,
    margin: float = MODEL_BOX_MARGIN,
    iou_min: float = IOU_MIN,
    min_pixels: int = MIN_PART_PIXELS,
) -> tuple[np.ndarray, int]:
    """Bool mask of one class on one slice: the models' mask ``models_mask`` with each part
    replaced by LiteMedSAM's mask for the part's box where the two overlap by ``iou_min``.

    ``segment_box(box) -> bool (H, W)``: the prompt model on this slice.  Returns the mask and
    how many parts LiteMedSAM replaced.  An empty ``models_mask`` gives an empty mask (the
    models found nothing there: no prompt is made up).
    """
    models_mask = np.asarray(models_mask, bool)
    out = np.zeros_like(models_mask)
    replaced = 0
    for part, box in part_boxes(models_mask, margin, min_pixels):
        if box is None:
            out |= part
            continue
        sam = np.asarray(segment_box(box), bool)
        if sam.shape != part.shape:
            raise ValueError(f"the prompt model gave a {sam.shape} mask for a {part.shape} slice")
        union = int((sam | part).sum())
        iou = int((sam & part).sum()) / union if union else 0.0
        if iou >= iou_min:
            out |= sam
            replaced += 1
        else:
            out |= part
    return out, replaced


def labelled_extent(labels, labeled, cls: int) -> tuple[int, int] | None:
    """The slices ``(lo, hi)`` (inclusive) where class ``cls`` may still appear, from the
    labelled slices of a (Z, Y, X) ``labels``: a structure that spans one run of slices cannot
    reach past a labelled slice without it that lies beyond its outermost labelled slices.
    None when no labelled slice holds the class (nothing is known)."""
    n = len(labels)
    done = {int(z) for z in labeled if 0 <= int(z) < n}
    return extent_from_holds({z: bool((np.asarray(labels[z]) == cls).any()) for z in done}, n)


def extent_from_holds(holds: Mapping[int, bool], n: int) -> tuple[int, int] | None:
    """:func:`labelled_extent` from ``holds`` (labelled slice -> whether it holds the class) in
    a volume of ``n`` slices, for callers that already looked at the labelled slices."""
    done = sorted(holds)
    has = [z for z in done if holds[z]]
    if not has:
        return None
    below = [z for z in done if z < has[0]]  # labelled, without the class
    above = [z for z in done if z > has[-1]]
    return (below[-1] + 1 if below else 0, above[0] - 1 if above else n - 1)


def drop_small_parts_3d(
    proposals: dict[int, np.ndarray], labels: np.ndarray, cls: int, fraction: float
) -> tuple[dict[int, np.ndarray], int]:
    """Proposals of class ``cls`` without the parts that are small in 3-D: the 26-connected
    parts of the class in ``labels`` (Z, Y, X) joined with the ``proposals`` ({slice: bool
    mask}) that hold fewer than ``fraction`` of the largest part's voxels and no labelled voxel
    of the class.  Returns the changed slices' masks and how many parts were dropped; ``labels``
    are only read (what the user labelled always stays)."""
    from scipy import ndimage as ndi

    if fraction <= 0 or not proposals:
        return {}, 0
    zs = sorted(proposals)
    lab = np.asarray(labels)
    lo, hi = zs[0], zs[-1]
    has = np.flatnonzero((lab == cls).reshape(len(lab), -1).any(axis=1))
    if has.size:  # the labelled parts of the class join the volume looked at
        lo, hi = min(lo, int(has[0])), max(hi, int(has[-1]))
    vol = lab[lo : hi + 1] == cls
    user = vol.copy()
    for z in zs:
        vol[z - lo] |= np.asarray(proposals[z], bool)
    comp, n = ndi.label(vol, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return {}, 0
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = sizes >= fraction * sizes.max()
    keep[np.unique(comp[user])] = True  # a part holding a labelled voxel stays
    keep[0] = True
    drop = ~keep
    if not drop.any():
        return {}, 0
    changed = {}
    for z in zs:
        gone = drop[comp[z - lo]] & proposals[z]
        if gone.any():
            changed[z] = np.asarray(proposals[z], bool) & ~gone
    return changed, int(drop.sum())


__all__ = [
    "IOU_MIN",
    "drop_small_parts_3d",
    "MIN_PART_PIXELS",
    "MODEL_BOX_MARGIN",
    "labelled_extent",
    "model_prompted_mask",
    "part_boxes",
]
