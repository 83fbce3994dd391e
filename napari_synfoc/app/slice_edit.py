"""What an accept, a prompt or a fix changes in a Labels array (Qt-free): :class:`SliceEdit`
and the small array helpers the review, the prompts, the region fix and box propagation share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.label_edit import LabelEdit


@dataclass
class SliceEdit:
    """An edit of some slices of a Labels array: ``edit`` (a
    :class:`~napari_synfoc.core.label_edit.LabelEdit`) goes to ``Labels.data_setitem(indices,
    new_values)`` as one undoable step; ``empty_slices`` hold no label afterwards (the dock marks
    them labelled)."""

    slices: list[int]
    edit: LabelEdit
    empty_slices: list[int] = field(default_factory=list)
    mask: np.ndarray | None = None  # the slice's new mask (prompts only)
    seconds: float = 0.0  # time spent computing the mask and the edit

    @property
    def size(self) -> int:
        return self.edit.size


def plane(a: np.ndarray, z: int) -> np.ndarray:
    """Slice ``z`` of a ``(Z, Y, X)`` array, or the ``(Y, X)`` array itself."""
    return a if a.ndim == 2 else a[z]


def emptied(labels: np.ndarray, edit: LabelEdit, slices: Sequence[int]) -> list[int]:
    """The slices of ``slices`` that hold no label once ``edit`` is applied."""
    out = []
    if labels.ndim == 3:  # group the edit by slice once (a mask per slice is quadratic in Z)
        order = np.argsort(edit.indices[0], kind="stable")
        zs = edit.indices[0][order]
    for z in slices:
        after = np.array(plane(labels, z), copy=True)
        if labels.ndim == 2:
            sel = np.arange(edit.old_values.size)
        else:
            sel = order[np.searchsorted(zs, z, "left") : np.searchsorted(zs, z, "right")]
        yx = edit.indices[-2:]
        after[yx[0][sel], yx[1][sel]] = edit.new_values[sel]
        if not after.any():
            out.append(int(z))
    return out


def concat_edits(labels: np.ndarray, parts: Sequence[LabelEdit]) -> LabelEdit:
    """One :class:`LabelEdit` applying ``parts`` in order."""
    idx = tuple(np.concatenate([p.indices[d] for p in parts]) for d in range(labels.ndim))
    return LabelEdit(
        idx,
        np.concatenate([p.old_values for p in parts]),
        np.concatenate([p.new_values for p in parts]),
    )
