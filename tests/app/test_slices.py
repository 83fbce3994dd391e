"""The task a Train click snapshots from the layers (app.slices): only the labelled slices are
copied, and the snapshot equals a full copy."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_synfoc.app import slices


def _layer(data, marked=()):
    return SimpleNamespace(data=data, metadata={slices.MARKED_KEY: list(marked)}, rgb=False)


def test_sparse_copy_holds_only_the_given_slices():
    lab = np.arange(4 * 3 * 3, dtype=np.int32).reshape(4, 3, 3)
    out = slices.sparse_copy(lab, [1, 3])
    assert out.dtype == lab.dtype and out.shape == lab.shape
    assert np.array_equal(out[[1, 3]], lab[[1, 3]]) and not out[[0, 2]].any()
    out[1, 0, 0] = -1  # a copy, not a view
    assert lab[1, 0, 0] == 9


def test_task_snapshot_equals_a_full_copy_and_ignores_later_strokes():
    """Issue 22 item 5: the Train click copies only the labelled slices (plus the marked empty
    one), yet the task's labels equal the layer's; a stroke after the click is not in it."""
    lab = np.zeros((6, 8, 8), np.int32)
    lab[1, 2:4, 2:4] = 1
    lab[4, 5:7, 5:7] = 2
    layer = _layer(lab, marked=[2])
    image = SimpleNamespace(data=np.random.default_rng(0).normal(size=(6, 8, 8)), rgb=False)
    task = slices.task_from_layers(image, layer)
    assert task.labeled_slices == [1, 2, 4]
    assert np.array_equal(task.labels, lab) and task.labels is not lab
    lab[1, 0, 0] = 2  # painting after the click
    assert task.labels[1, 0, 0] == 0
