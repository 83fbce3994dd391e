"""The ensemble's per-slice class boxes and the Dice computed inside them (core.slice_boxes):
hand-computed cases, and equality with the full-slice Dice the quality estimate used before."""

import numpy as np
import pytest

from napari_synfoc.core.quality import (
    estimate_from_agreement,
    fit_calibration,
    slice_dice_true,
    slice_scores,
)
from napari_synfoc.core.review import review_maps
from napari_synfoc.core.slice_boxes import boxed_slice_dice, class_boxes


def test_class_boxes_count_and_half_open_box_per_slice_and_class():
    lab = np.zeros((3, 5, 6), np.uint8)
    lab[0, 1:3, 2:5] = 1  # 6 px, rows 1..2, cols 2..4
    lab[0, 4, 0] = 2  # one pixel in the corner
    lab[2, 0, 5] = 1  # one pixel at the far column
    lab[2, 3, 1] = 1  # its box spans both
    out = class_boxes(lab, 3)
    assert out.shape == (3, 2, 5)
    assert out[0, 0].tolist() == [6, 1, 3, 2, 5]
    assert out[0, 1].tolist() == [1, 4, 5, 0, 1]
    assert not out[1].any()  # an empty slice: counts and boxes 0
    assert out[2, 0].tolist() == [2, 0, 4, 1, 6]
    assert not out[2, 1].any()
    with pytest.raises(ValueError, match="Z, Y, X"):
        class_boxes(lab[0], 3)


def test_boxed_dice_by_hand_and_which_classes_the_reference_holds():
    pred = np.zeros((3, 4, 4), np.uint8)
    ref = np.zeros_like(pred)
    pred[0, 0:2, 0:2] = 1  # 4 px
    ref[0, 1, 0:2] = 1  # 2 px, both inside: Dice 2*2/6
    ref[1, 3, 3] = 2  # reference only: Dice 0 for class 2; class 1 absent from both
    dice, holds = boxed_slice_dice(pred, class_boxes(pred, 3), ref, [0, 1, 2], 3)
    np.testing.assert_allclose(dice, [4 / 6, 0.0, 1.0])
    assert holds.tolist() == [[True, False], [False, True], [False, False]]


def _random_maps(rng, z=12, k=4, h=24, w=20):
    """Blobby label maps: each slice holds a random subset of classes as rectangles; some
    slices are empty in one map or both."""
    pred = np.zeros((z, h, w), np.uint8)
    ref = np.zeros_like(pred)
    for arr in (pred, ref):
        for i in range(z):
            for c in range(1, k):
                if rng.random() < 0.6:
                    y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
                    arr[i, y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] = c
    pred[3] = 0
    ref[3] = 0  # both empty
    ref[5] = 0  # prediction only
    pred[7] = 0  # reference only
    return pred, ref


def test_boxed_dice_equals_the_full_slice_dice():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pred, ref = _random_maps(rng)
        idx = sorted(rng.choice(len(pred), size=8, replace=False).tolist() + [3, 5, 7])
        idx = sorted(set(idx))
        dice, holds = boxed_slice_dice(pred, class_boxes(pred, 4), ref, idx, 4)
        np.testing.assert_allclose(dice, slice_dice_true(pred[idx], ref[idx], 4), rtol=1e-12)
        for c in range(1, 4):
            want = [(ref[i] == c).any() for i in idx]
            assert holds[:, c - 1].tolist() == want


def test_boxes_that_do_not_fit_are_refused():
    pred = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="boxes"):
        boxed_slice_dice(pred, np.zeros((2, 1, 5), np.int64), pred, [0], 3)
    with pytest.raises(ValueError, match="differ in shape"):
        boxed_slice_dice(pred, class_boxes(pred, 2), pred[:, :3], [0], 2)


def test_review_maps_carry_the_ensembles_boxes_and_the_estimate_is_the_same_with_them():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 9, 3, 16, 16)).astype(np.float32) * 3
    p = np.exp(logits)
    fm, un = p / p.sum(axis=2, keepdims=True)
    maps = review_maps(fm, un)
    np.testing.assert_array_equal(maps.ensemble_boxes, class_boxes(maps.ensemble_label, 3))
    labels = maps.ensemble_label.copy()
    labels[[1, 4]] = maps.unet_label[[1, 4]]  # labelled slices that differ from the ensemble
    labels[6] = 0
    lab = [1, 2, 4, 6]
    for continuity in (False, True):
        args = (maps.agreement, maps.ensemble_label, labels, lab, [2])
        with_boxes = estimate_from_agreement(
            *args, continuity=continuity, ensemble_boxes=maps.ensemble_boxes
        )
        without = estimate_from_agreement(*args, continuity=continuity)
        np.testing.assert_array_equal(with_boxes.predicted, without.predicted)
        assert with_boxes.calibration == without.calibration
    # the calibration points are the full-slice Dice of the ensemble on the labelled slices
    want = fit_calibration(
        slice_scores(maps.agreement)[lab],
        slice_dice_true(maps.ensemble_label[lab], labels[lab], 3),
        np.array([z == 2 for z in lab]),
    )
    assert with_boxes.calibration == want
