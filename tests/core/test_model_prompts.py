"""The models as prompters (issue 21): boxes from the ensemble's parts, LiteMedSAM's mask kept
only where it agrees with the part.  A fake box segmenter gives known masks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.core.model_prompts import model_prompted_mask, part_boxes


def _mask(shape=(20, 30), *rects):
    m = np.zeros(shape, bool)
    for r0, c0, r1, c1 in rects:
        m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def test_part_boxes_largest_first_with_margin_clipped_and_small_parts_unboxed():
    m = _mask((20, 30), (1, 1, 4, 6), (10, 20, 19, 29), (15, 2, 15, 3))  # 24, 100, 2 px
    parts = part_boxes(m, margin=2, min_pixels=10)
    assert [int(p.sum()) for p, _ in parts] == [100, 24, 2]
    # (x0, y0, x1, y1): extent +- 2, clipped to the 30 x 20 slice
    assert parts[0][1] == (18.0, 8.0, 29.0, 19.0)
    assert parts[1][1] == (0.0, 0.0, 8.0, 6.0)
    assert parts[2][1] is None
    with pytest.raises(ValueError, match="2-D"):
        part_boxes(np.zeros((2, 3, 4), bool))


def test_sam_replaces_a_part_only_when_it_agrees_and_keeps_small_parts():
    models = _mask((20, 30), (2, 2, 7, 7), (10, 15, 17, 25), (0, 28, 0, 29))  # 36, 88, 2 px
    sam_for = {
        # the box of part 1 (the 8x11 one): SAM draws a slightly larger block (IoU 88/110 = 0.8)
        (13.0, 8.0, 27.0, 19.0): _mask((20, 30), (10, 15, 19, 25)),
        # the box of part 2: SAM leaks far (IoU 36 / 300 = 0.12): the models' part stays
        (0.0, 0.0, 9.0, 9.0): _mask((20, 30), (0, 0, 14, 19)),
    }
    boxes = []

    def seg(box):
        boxes.append(box)
        return sam_for[box]

    out, replaced = model_prompted_mask(seg, models, margin=2, iou_min=0.5, min_pixels=10)
    assert sorted(boxes) == sorted(sam_for) and replaced == 1
    expect = _mask((20, 30), (2, 2, 7, 7), (10, 15, 19, 25), (0, 28, 0, 29))
    assert np.array_equal(out, expect)


def test_empty_models_mask_prompts_nothing_and_a_wrong_shape_is_refused():
    calls = []
    out, replaced = model_prompted_mask(lambda b: calls.append(b), np.zeros((8, 8), bool))
    assert not out.any() and replaced == 0 and calls == []
    with pytest.raises(ValueError, match="slice"):
        model_prompted_mask(lambda b: np.ones((4, 4), bool), _mask((8, 8), (1, 1, 6, 6)))


def test_labelled_extent_from_the_slices_without_the_class():
    """Hand-made: class 1 labelled on 4 and 6, labelled-empty slices 1, 2 and 9 (and 5 inside,
    which does not cut the run): the class may appear on 3..8; class 2 (on slice 9 only) on
    7..11; a class labelled nowhere: unknown (None)."""
    from napari_synfoc.core.model_prompts import labelled_extent

    lab = np.zeros((12, 4, 4), np.uint8)
    lab[4, 1, 1] = lab[6, 2, 2] = 1
    lab[9, 0, 0] = 2
    labeled = [1, 2, 4, 5, 6, 9]
    assert labelled_extent(lab, labeled, 1) == (3, 8)
    assert labelled_extent(lab, labeled, 2) == (7, 11)
    assert labelled_extent(lab, labeled, 3) is None
    assert labelled_extent(lab, [4], 1) == (0, 11)  # nothing labelled beyond it
    assert labelled_extent(lab, [0, 4, 11, 40], 1) == (1, 10)  # slices outside the stack ignored


def test_drop_small_parts_3d_keeps_large_and_labelled_parts():
    """Hand-made: a tube on slices 0..5 (8 voxels a slice, 48 in all: the largest part), a
    2-voxel speck on slice 2 and a 3-voxel speck on slice 4 (proposals), and a 2-voxel part
    on slice 1 that touches a labelled voxel.  At fraction 0.1 (4.8 voxels) both specks go,
    the labelled part stays; at 0.04 (1.92 voxels) nothing goes; at 0 nothing is looked at."""
    from napari_synfoc.core.model_prompts import drop_small_parts_3d

    labels = np.zeros((6, 12, 12), np.uint8)
    labels[0, 2:4, 2:6] = 1  # the user's slice 0 of the tube
    labels[1, 10, 10] = 1  # a labelled voxel (a user's stroke, slice 1)
    props = {}
    for z in range(1, 6):
        m = np.zeros((12, 12), bool)
        m[2:4, 2:6] = True  # the tube
        props[z] = m
    props[1][10, 9] = True  # joins the labelled voxel: kept
    props[2][8, 8:10] = True  # speck of 2
    props[4][7, 0:3] = True  # speck of 3
    changed, n = drop_small_parts_3d(props, labels, 1, 0.1)
    assert n == 2 and sorted(changed) == [2, 4]
    assert changed[2].sum() == 8 and changed[4].sum() == 8  # the tube only
    assert changed[2][2:4, 2:6].all() and not changed[4][7].any()
    assert drop_small_parts_3d(props, labels, 1, 0.04) == ({}, 0)
    assert drop_small_parts_3d(props, labels, 1, 0.0) == ({}, 0)
    assert props[2][8, 8]  # the input is not changed
