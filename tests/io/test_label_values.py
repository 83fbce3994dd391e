"""Float label maps (issue 23 item 10): named or valued like labels -> Labels, or a note."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from napari_synfoc.io.readers import read_layer_data


def _save(path, arr, spacing=(0.8, 0.8, 2.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def _read_quiet(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_layer_data(path)
    return out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_float_segmentation_named_like_labels_opens_as_labels(tmp_path):
    """Was: case_seg.nii.gz as float32 opened quietly as an Image."""
    lab = np.zeros((4, 10, 12), np.float32)
    lab[1, 2:5, 3:7] = 1
    lab[2, 5:8, 1:4] = 2
    _save(tmp_path / "case_seg.nii.gz", lab)
    [(data, meta, kind)], notes = _read_quiet(tmp_path / "case_seg.nii.gz")
    assert kind == "labels" and data.dtype == np.uint8 and notes == []
    np.testing.assert_array_equal(data, lab.astype(np.uint8))
    np.testing.assert_allclose(meta["scale"], (2.0, 0.8, 0.8), atol=1e-6)
    # more classes than a byte: uint16, values kept
    lab[3, 0, 0] = 300
    _save(tmp_path / "big_label.nrrd", lab)
    [(data, _, kind)], _ = _read_quiet(tmp_path / "big_label.nrrd")
    assert kind == "labels" and data.dtype == np.uint16 and int(data.max()) == 300


def test_label_named_file_that_cannot_be_labels_says_why(tmp_path):
    soft = np.linspace(0, 1, 4 * 10 * 12, dtype=np.float32).reshape(4, 10, 12)
    _save(tmp_path / "liver_mask.nii.gz", soft)
    [(_, _, kind)], notes = _read_quiet(tmp_path / "liver_mask.nii.gz")
    assert kind == "image"
    [note] = notes
    assert note.startswith("'liver_mask.nii.gz' is named like a label map but holds values")
    assert "whole numbers" in note and "threshold" in note
    ct = np.random.default_rng(0).integers(-1000, 2000, (4, 10, 12)).astype(np.float32)
    _save(tmp_path / "ct_gt.mha", ct)
    [(_, _, kind)], [note] = _read_quiet(tmp_path / "ct_gt.mha")
    n, lo, hi = len(np.unique(ct)), int(ct.min()), int(ct.max())
    assert kind == "image" and f"{n} different values from {lo} to {hi}" in note
    assert "Convert to Labels" in note


def test_values_like_labels_without_the_name_tell_how_to_convert(tmp_path):
    lab = np.zeros((4, 10, 12), np.float32)
    lab[1, 2:5, 3:7] = 1
    lab[2, 5:8, 1:4] = 3
    _save(tmp_path / "case_001.nii.gz", lab)
    [(_, _, kind)], [note] = _read_quiet(tmp_path / "case_001.nii.gz")
    assert kind == "image"
    assert note == (
        "'case_001.nii.gz' holds only the values 0, 1, 3: if it is a label map, right-click "
        "its layer > Convert to Labels, or name the file like case_001_seg.nii.gz to open it "
        "as labels."
    )
    # a real scan: no note
    ct = np.random.default_rng(1).integers(-1000, 2000, (4, 10, 12)).astype(np.int16)
    _save(tmp_path / "ct.nii.gz", ct)
    [(_, _, kind)], notes = _read_quiet(tmp_path / "ct.nii.gz")
    assert kind == "image" and notes == []


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_other_dtypes_named_like_labels(tmp_path, dtype):
    lab = np.zeros((3, 6, 6), dtype)
    lab[1, 1:3, 1:3] = 2
    _save(tmp_path / "x_labels.nii.gz", lab)
    [(data, _, kind)], notes = _read_quiet(tmp_path / "x_labels.nii.gz")
    assert kind == "labels" and notes == []
    np.testing.assert_array_equal(data, lab)
