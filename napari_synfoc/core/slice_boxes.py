"""Per-slice, per-class pixel counts and bounding boxes of a label map, and the Dice against
labels computed inside them (Qt-free numpy).

The review's quality estimate is calibrated on every labelled slice's true Dice, the ensemble
against the user's labels, at each refresh of the review table on the GUI thread.  A full-slice
Dice costs about 1 ms a 512² slice; with 250 labelled slices (after accepting proposals) the
refresh stalled the GUI for 450 ms (``benchmarks/ranking_scale.py``).  The ensemble's boxes
(:func:`class_boxes`) are computed in the worker with the maps, so the Dice
(:func:`boxed_slice_dice`) reads each labelled slice once per class and the ensemble only
inside its boxes: the same values as :func:`~napari_synfoc.core.quality.slice_dice_true`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOX_FIELDS = 5  # count, y0, y1, x0, x1 (half-open; all 0 where the class is absent)


def class_boxes(label_map: np.ndarray, num_classes: int) -> np.ndarray:
    """(Z, K-1, 5) int64: for every slice of ``label_map`` ((Z, Y, X)) and foreground class
    1..K-1, the class's pixel count and its bounding box ``y0, y1, x0, x1`` (half-open); a
    class absent from a slice has count and box 0."""
    lab = np.asarray(label_map)
    if lab.ndim != 3:
        raise ValueError(f"class_boxes: a (Z, Y, X) label map is needed, got shape {lab.shape}")
    z, h, w = lab.shape
    out = np.zeros((z, max(int(num_classes) - 1, 0), BOX_FIELDS), np.int64)
    for c in range(1, int(num_classes)):
        m = lab == c
        rows, cols = m.any(axis=2), m.any(axis=1)
        has = rows.any(axis=1)
        box = out[:, c - 1]
        box[:, 0] = np.count_nonzero(m.reshape(z, -1), axis=1)
        box[:, 1] = rows.argmax(axis=1)
        box[:, 2] = h - rows[:, ::-1].argmax(axis=1)
        box[:, 3] = cols.argmax(axis=1)
        box[:, 4] = w - cols[:, ::-1].argmax(axis=1)
        box[~has] = 0
    return out


def boxed_slice_dice(
    pred: np.ndarray,
    boxes: np.ndarray,
    ref: np.ndarray,
    slices: Sequence[int],
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The Dice of label map ``pred`` against ``ref`` (both (Z, Y, X)) on ``slices``: per slice
    the lowest per-class Dice over the classes either holds, 1.0 where neither holds any (as
    :func:`~napari_synfoc.core.quality.slice_dice_true`).  ``boxes``: ``pred``'s
    :func:`class_boxes`.  Also returns which classes ``ref`` holds on each slice ((n, K-1)
    bool).  Reads each slice of ``ref`` once per class and ``pred`` only inside its boxes."""
    idx = [int(z) for z in slices]
    k = int(num_classes)
    if np.shape(pred) != np.shape(ref):
        raise ValueError(f"prediction and reference differ in shape: {np.shape(pred)} vs "
                         f"{np.shape(ref)}")  # fmt: skip
    if np.shape(boxes)[:2] != (np.shape(pred)[0], k - 1):
        raise ValueError(
            f"boxes of shape {np.shape(boxes)} do not fit {np.shape(pred)[0]} slices and "
            f"{k - 1} foreground classes"
        )
    dice = np.ones(len(idx))
    holds = np.zeros((len(idx), max(k - 1, 0)), bool)
    for i, z in enumerate(idx):
        r = np.asarray(ref[z])
        for c in range(1, k):
            n_ref = int(np.count_nonzero(r == c))
            n_pred, y0, y1, x0, x1 = (int(v) for v in boxes[z, c - 1])
            holds[i, c - 1] = n_ref > 0
            if n_ref + n_pred == 0:
                continue
            inter = 0
            if n_pred and n_ref:
                inside = (pred[z, y0:y1, x0:x1] == c) & (r[y0:y1, x0:x1] == c)
                inter = int(np.count_nonzero(inside))
            dice[i] = min(dice[i], 2.0 * inter / (n_ref + n_pred))
    return dice, holds


__all__ = ["BOX_FIELDS", "boxed_slice_dice", "class_boxes"]
