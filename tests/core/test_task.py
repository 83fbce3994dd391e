"""The one training-task validator: each bad input gets one clear message (layer, slice, fix)."""

from __future__ import annotations

import numpy as np

from napari_synfoc.core.interactive import StackTask as ReExported
from napari_synfoc.core.task import StackTask, validate_task


def _img(z=4, y=16, x=16):
    return np.random.default_rng(0).random((z, y, x)).astype(np.float32)


def _lab(z=4, y=16, x=16):
    lab = np.zeros((z, y, x), np.uint8)
    lab[0, 4:9, 4:9] = 1
    return lab


def _check(task, *must):
    msg = validate_task(task, image_name="scan", labels_name="mask")
    assert msg is not None
    for word in must:
        assert word in msg, (word, msg)
    return msg


def test_a_good_task_passes_and_the_old_import_still_works():
    assert ReExported is StackTask
    assert validate_task(StackTask(_img(), _lab(), [0])) is None
    assert validate_task(StackTask(_img()[0], _lab()[0], [0], extra_unlabeled=[_img()])) is None


def test_empty_labels():
    _check(StackTask(_img(), np.zeros((4, 16, 16), np.uint8), []), "Labels 'mask'", "empty")


def test_zero_labelled_slices():
    _check(StackTask(_img(), _lab(), []), "no labelled slice")


def test_only_background_on_the_labelled_slices():
    _check(StackTask(_img(), _lab(), [1, 2]), "[1, 2]", "only background")


def test_wrong_shapes():
    _check(StackTask(_img(), _lab()[:, :8], [0]), "(4, 8, 16)", "Image 'scan'", "(4, 16, 16)")
    _check(StackTask(_img(), None, [0]), "Choose a Labels layer", "'scan'")
    _check(StackTask(_img(), _lab(), [9]), "[9]", "0..3")


def test_nan_and_inf_image_name_the_slice():
    img = _img()
    img[2, 3, 3] = np.nan
    _check(StackTask(img, _lab(), [0]), "Image 'scan'", "slice 2", "NaN")
    img = _img()
    img[3, 0, 0] = np.inf
    _check(StackTask(img, _lab(), [0]), "slice 3")


def test_constant_image():
    task = StackTask(np.full((4, 16, 16), 7.0, np.float32), _lab(), [0])
    _check(task, "constant", "every pixel is 7)")


def test_float_negative_and_255_labels():
    _check(StackTask(_img(), _lab().astype(np.float32), [0]), "float32", "integer")
    neg = _lab().astype(np.int16)
    neg[0, 0, 0] = -1
    _check(StackTask(_img(), neg, [0]), "slice 0", "negative")
    mask = _lab() * 255
    _check(StackTask(_img(), mask, [0]), "slice 0", "255", "divide the mask by 255")
    _check(StackTask(_img(), _lab() * 2, [0], num_classes=2), "class 2", "2 classes")


def test_4d_volume():
    vol = np.zeros((2, 4, 16, 16), np.float32)
    _check(StackTask(vol, np.zeros((2, 4, 16, 16), np.uint8), [0]), "(2, 4, 16, 16)", "one time")
    _check(StackTask(_img(), _lab(), [0], rgb=True), "RGB")


def test_every_slice_labelled_without_extras():
    lab = _lab(2)
    lab[1, 2, 2] = 1
    _check(StackTask(_img(2), lab, [0, 1]), "Every slice", "unlabelled")


def test_bad_window_and_messages_without_names():
    msg = validate_task(StackTask(_img(), _lab(), [0], intensity_window=(5.0, 5.0)))
    assert msg is not None and msg.startswith("the image")
