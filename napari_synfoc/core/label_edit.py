"""Qt-free label edits for prompted masks and accepted proposals, one undoable step each.

An edit is ``(indices, old_values, new_values)``: ``indices`` a tuple of integer arrays (one per
labels dimension, only the pixels that change), the form napari's ``Labels.data_setitem(indices,
new_values)`` writes as a single undo step.  An edit touches one class ``cls`` on the given
slice(s) only:

- ``"replace"``: the mask becomes class ``cls`` on slice ``z``.  Pixels of ``cls`` on that slice
  outside the mask become background (0); background pixels inside the mask become ``cls``.
  Mask pixels already holding **another** class keep it (other classes are never overwritten,
  so the new ``cls`` region has holes there).
- ``"add"``: background pixels inside the mask become ``cls``; nothing is removed.

Other classes and other slices are never modified in either mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

MODES = ("replace", "add")


class LabelEdit(NamedTuple):
    """One undoable edit: changed pixels' indices, their old and their new values."""

    indices: tuple[np.ndarray, ...]
    old_values: np.ndarray
    new_values: np.ndarray

    @property
    def size(self) -> int:
        return int(self.old_values.size)


def _check(labels: np.ndarray, z: int | None, mask: np.ndarray, cls: int, mode: str):
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be an integer numpy array (a napari Labels layer's data), got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be 'replace' or 'add', got {mode!r}")
    if labels.ndim == 2:
        if z not in (None, 0):
            raise ValueError(f"2-D labels have no slice {z}; pass z=None")
        plane_shape = labels.shape
    elif labels.ndim == 3:
        if z is None or not 0 <= int(z) < labels.shape[0]:
            raise ValueError(f"slice z={z} is outside the labels' slices 0..{labels.shape[0] - 1}")
        plane_shape = labels.shape[1:]
    else:
        raise ValueError(f"labels must be (Y, X) or (Z, Y, X), got shape {labels.shape}")
    m = np.asarray(mask)
    if m.shape != tuple(plane_shape):
        raise ValueError(
            f"mask shape {m.shape} does not match the labels slice shape {tuple(plane_shape)}"
        )
    cls = int(cls)
    if cls < 1 or cls > np.iinfo(labels.dtype).max:
        raise ValueError(
            f"class {cls} is not a foreground label of a {labels.dtype} Labels layer (1.."
            f"{np.iinfo(labels.dtype).max})"
        )
    return m.astype(bool), cls


def mask_edit(
    labels: np.ndarray, z: int | None, mask: np.ndarray, cls: int, mode: str = "replace"
) -> LabelEdit:
    """The edit that puts ``mask`` into ``labels`` as class ``cls`` on slice ``z`` (see the
    module docstring for ``mode``), without writing it.  ``z=None`` for 2-D labels."""
    m, cls = _check(labels, z, mask, cls, mode)
    plane = labels if labels.ndim == 2 else labels[int(z)]
    become_cls = m & (plane == 0)
    if mode == "replace":
        become_bg = ~m & (plane == cls)
    else:
        become_bg = np.zeros_like(m)
    ys, xs = np.nonzero(become_cls | become_bg)
    new = np.where(become_cls[ys, xs], cls, 0).astype(labels.dtype)
    old = plane[ys, xs].copy()
    idx = (ys, xs) if labels.ndim == 2 else (np.full(ys.shape, int(z), dtype=ys.dtype), ys, xs)
    return LabelEdit(idx, old, new)


def masks_edit(
    labels: np.ndarray, masks: Mapping[int, np.ndarray], cls: int, mode: str = "replace"
) -> LabelEdit:
    """One edit for several slices ``{z: mask}`` (e.g. "accept all proposals")."""
    parts = [mask_edit(labels, z, m, cls, mode) for z, m in sorted(masks.items())]
    if not parts:
        raise ValueError("no masks to apply")
    idx = tuple(np.concatenate([p.indices[d] for p in parts]) for d in range(labels.ndim))
    old = np.concatenate([p.old_values for p in parts])
    new = np.concatenate([p.new_values for p in parts])
    return LabelEdit(idx, old, new)


def apply_edit(labels: np.ndarray, edit: LabelEdit) -> LabelEdit:
    """Write ``edit``'s new values into ``labels`` (in place); returns the edit."""
    labels[edit.indices] = edit.new_values
    return edit


def apply_mask(
    labels: np.ndarray, z: int | None, mask: np.ndarray, cls: int, mode: str = "replace"
) -> LabelEdit:
    """Compute :func:`mask_edit` and write it into ``labels`` in place; returns
    ``(indices, old_values, new_values)`` for :func:`revert`.  In napari, compute
    ``idx, _, new = mask_edit(...)`` instead and call ``layer.data_setitem(idx, new)``, which
    writes it and records it as one undo step."""
    return apply_edit(labels, mask_edit(labels, z, mask, cls, mode))


def revert(labels: np.ndarray, edit: LabelEdit) -> None:
    """Undo ``edit`` in place: the changed pixels get their old values back."""
    labels[edit.indices] = edit.old_values


__all__ = [
    "MODES",
    "LabelEdit",
    "apply_edit",
    "apply_mask",
    "mask_edit",
    "masks_edit",
    "revert",
]
