"""The review's quality estimate and "Accept all slices estimated above q" (Qt-free; used by
:class:`~.review.Review`).

The estimate (:mod:`napari_synfoc.core.quality`) is a predicted Dice per slice from the two
models' agreement in the latest maps, calibrated on the labelled slices: those labelled since the
predicting run started count fully, those it was trained on (``trained``) count less.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.label_edit import LabelEdit
from ..core.quality import QualityEstimate, estimate_from_agreement
from ..core.review import ReviewMaps, slice_agreement
from .slice_edit import SliceEdit, emptied

ACCEPT_QUALITY = 0.90  # the review panel's default q for "Accept all slices estimated above q"


def maps_agreement(maps: ReviewMaps) -> np.ndarray:
    """The maps' per-slice, per-class agreement; maps built without it (by a script) fall back
    to the hard Dice between the two models' label maps (one-hot probabilities)."""
    if maps.agreement is not None:
        return maps.agreement
    k = int(max(maps.fm_label.max(initial=0), maps.unet_label.max(initial=0))) + 1
    k = max(k, 2)
    eye = np.eye(k, dtype=np.float32)
    fm = np.moveaxis(eye[maps.fm_label], -1, 1)
    un = np.moveaxis(eye[maps.unet_label], -1, 1)
    return slice_agreement(
        fm, un, labels=(maps.fm_label, maps.unet_label), ensemble=maps.ensemble_label
    )


def quality_estimate(
    maps: ReviewMaps,
    labels: np.ndarray | None,
    labeled: Iterable[int] = (),
    trained: Iterable[int] = (),
    continuity: bool | None = None,
) -> QualityEstimate:
    """The predicted Dice of every slice of ``maps``, calibrated on ``labels``' ``labeled``
    slices (``trained``: the slices the predicting model was trained on; ``continuity``: the
    volume rule of :func:`~napari_synfoc.core.quality.continuity_zeros`, None for the
    config's)."""
    lab = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim == 2:
            lab = lab[None]
    agree = maps_agreement(maps)
    boxes = maps.ensemble_boxes  # from the worker; a script's maps may lack them or differ in K
    if boxes is not None and np.shape(boxes)[:2] != agree.shape:
        boxes = None
    return estimate_from_agreement(
        agree, maps.ensemble_label, lab, labeled, trained,
        continuity=continuity, ensemble_boxes=boxes,
    )  # fmt: skip


def accept_above_edit(
    maps: ReviewMaps,
    labels: np.ndarray,
    estimate: QualityEstimate,
    q: float,
    candidates: Iterable[int],
) -> SliceEdit:
    """One edit writing the ensemble's prediction into every slice of ``candidates`` whose
    predicted Dice is at least ``q`` (``slices`` empty when none is)."""
    lab = np.asarray(labels)
    todo = estimate.above(q, among=candidates)
    if lab.ndim == 2:
        raise ValueError("Accept above q works on a (Z, Y, X) stack; this image has one slice.")
    idx_parts, old_parts, new_parts = [], [], []
    for z in todo:
        prop = maps.ensemble_label[z].astype(lab.dtype, copy=False)
        ys, xs = np.nonzero(prop != lab[z])
        idx_parts.append((np.full(ys.shape, z, ys.dtype), ys, xs))
        old_parts.append(lab[z][ys, xs])
        new_parts.append(prop[ys, xs])
    if idx_parts:
        idx = tuple(np.concatenate([p[d] for p in idx_parts]) for d in range(3))
        old, new = np.concatenate(old_parts), np.concatenate(new_parts)
    else:
        idx = tuple(np.zeros(0, np.intp) for _ in range(3))
        old = new = np.zeros(0, lab.dtype)
    edit = LabelEdit(idx, old, new)
    return SliceEdit(list(todo), edit, emptied(lab, edit, todo) if todo else [])


__all__ = ["ACCEPT_QUALITY", "accept_above_edit", "maps_agreement", "quality_estimate"]
