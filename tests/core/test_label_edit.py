"""Label edits for prompted masks: hand-computed results, other classes/slices untouched, undo."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.core.label_edit import apply_mask, mask_edit, masks_edit, revert


def _labels():
    lab = np.zeros((3, 4, 5), np.uint8)
    lab[1] = [
        [0, 0, 1, 1, 0],
        [0, 2, 2, 1, 0],
        [0, 0, 0, 0, 0],
        [3, 3, 0, 0, 1],
    ]
    lab[0] = 1  # other slices full of the edited class: must stay untouched
    lab[2] = 2
    return lab


MASK = np.array(
    [
        [0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0],
        [1, 1, 0, 0, 0],
    ],
    bool,
)


def test_replace_hand_computed():
    lab = _labels()
    before = lab.copy()
    edit = apply_mask(lab, 1, MASK, 1, mode="replace")
    expected = np.array(
        [
            [0, 1, 1, 0, 0],  # (0,3) class 1 outside mask -> 0; (0,1) bg in mask -> 1
            [0, 2, 2, 0, 0],  # class 2 inside the mask kept; (1,3) 1 outside -> 0
            [0, 1, 1, 0, 0],
            [3, 3, 0, 0, 0],  # class 3 inside the mask kept; (3,4) 1 outside -> 0
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(lab[1], expected)
    np.testing.assert_array_equal(lab[0], before[0])
    np.testing.assert_array_equal(lab[2], before[2])
    assert edit.size == int((lab != before).sum()) == 6
    assert set(edit.indices[0].tolist()) == {1}
    revert(lab, edit)
    np.testing.assert_array_equal(lab, before)


def test_add_hand_computed_never_removes():
    lab = _labels()
    before = lab.copy()
    edit = apply_mask(lab, 1, MASK, 1, mode="add")
    expected = before[1].copy()
    expected[0, 1] = 1  # background inside the mask -> 1
    expected[2, 1] = expected[2, 2] = 1
    np.testing.assert_array_equal(lab[1], expected)
    # class 1 outside the mask kept, classes 2 and 3 kept
    assert lab[1, 0, 3] == lab[1, 1, 3] == lab[1, 3, 4] == 1
    assert lab[1, 1, 1] == 2 and lab[1, 3, 0] == 3
    assert edit.size == 3
    np.testing.assert_array_equal(edit.old_values, [0, 0, 0])
    np.testing.assert_array_equal(edit.new_values, [1, 1, 1])
    revert(lab, edit)
    np.testing.assert_array_equal(lab, before)


def test_replace_with_other_class_keeps_everything_else():
    lab = _labels()
    before = lab.copy()
    apply_mask(lab, 1, MASK, 2, mode="replace")
    changed = lab != before
    # only slice 1, only pixels that were 0 or 2 before
    assert not changed[0].any() and not changed[2].any()
    assert set(np.unique(before[changed]).tolist()) <= {0, 2}
    assert (lab[1][before[1] == 1] == 1).all() and (lab[1][before[1] == 3] == 3).all()
    # class 2 = its old pixels inside the mask + background inside the mask
    np.testing.assert_array_equal(lab[1] == 2, MASK & ((before[1] == 0) | (before[1] == 2)))


def test_mask_edit_does_not_write_and_matches_napari_form():
    lab = _labels()
    before = lab.copy()
    idx, old, new = mask_edit(lab, 1, MASK, 1)
    np.testing.assert_array_equal(lab, before)
    assert len(idx) == 3 and old.dtype == new.dtype == lab.dtype
    np.testing.assert_array_equal(before[idx], old)
    assert (old != new).all()  # only changing pixels are listed


def test_masks_edit_several_slices_one_step():
    lab = np.zeros((4, 3, 3), np.int32)
    lab[3] = 5
    m = np.zeros((3, 3), bool)
    m[1, 1] = True
    edit = masks_edit(lab, {0: m, 2: m}, 5)
    assert sorted(edit.indices[0].tolist()) == [0, 2]
    apply_mask(lab, 0, m, 5)  # sanity: same as one slice at a time
    assert lab[0, 1, 1] == 5 and lab[2, 1, 1] == 0


def test_2d_labels():
    lab = np.array([[0, 1], [2, 0]], np.int64)
    edit = apply_mask(lab, None, np.array([[1, 1], [1, 0]], bool), 1)
    np.testing.assert_array_equal(lab, [[1, 1], [2, 0]])
    revert(lab, edit)
    np.testing.assert_array_equal(lab, [[0, 1], [2, 0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(z=3), "outside the labels' slices"),
        (dict(mask=np.ones((2, 2), bool)), "does not match"),
        (dict(cls=0), "not a foreground label"),
        (dict(cls=300), "not a foreground label"),
        (dict(mode="erase"), "mode must be"),
    ],
)
def test_bad_edits_raise_and_change_nothing(kwargs, match):
    lab = _labels()
    before = lab.copy()
    args = dict(z=1, mask=MASK, cls=1, mode="replace") | kwargs
    with pytest.raises(ValueError, match=match):
        apply_mask(lab, **args)
    np.testing.assert_array_equal(lab, before)


def test_float_labels_rejected():
    with pytest.raises(ValueError, match="integer"):
        apply_mask(np.zeros((2, 4, 5)), 0, MASK, 1)
