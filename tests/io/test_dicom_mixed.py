"""DICOM files of other kinds (issue 23): one 2D slice, multi-frame, RGB, radiograph, a mixed
folder where one series is unreadable.  Files are written by SimpleITK into tmp_path."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_synfoc.io.geometry import Geometry
from napari_synfoc.io.readers import (
    list_dicom_series,
    read_dicom_series,
    read_layer_data,
    read_volume,
)
from napari_synfoc.io.writers import napari_write_labels


def _write(path, arr, tags, spacing=None, vector=False):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr, isVector=vector)
    if spacing is not None:
        img.SetSpacing(spacing)
    for key, value in tags.items():
        img.SetMetaData(key, value)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    w.SetFileName(os.fspath(path))
    w.Execute(img)


def _sagittal_mr(path, arr):
    """A sagittal MR slice (rows along -S, columns along +P), 0.9 mm x 0.7 mm pixels."""
    tags = {
        "0008|0060": "MR",
        "0020|000e": "1.2.826.0.1.3680043.8.498.31",
        "0008|103e": "T1 sagittal",
        "0020|0032": "10\\-50\\80",
        "0020|0037": "0\\1\\0\\0\\0\\-1",
    }
    _write(path, arr.astype(np.int16), tags, spacing=(0.9, 0.7))


def _multiframe_ct(path, arr, uid="1.2.826.0.1.3680043.8.498.32", desc="CT multi-frame"):
    tags = {"0008|0060": "CT", "0020|000e": uid, "0008|103e": desc}
    _write(path, arr.astype(np.int16), tags, spacing=(0.6, 0.6, 1.5))


def test_single_2d_dicom_is_one_slice_with_its_pixel_spacing(tmp_path):
    """Was (12, 16, 1): the sagittal slice was turned into 12 slices one pixel wide."""
    arr = np.arange(12 * 16, dtype=np.int16).reshape(12, 16)
    p = tmp_path / "sag.dcm"
    _sagittal_mr(p, arr)
    [(data, meta, kind)] = read_layer_data(p)
    assert kind == "image"
    assert data.shape == (1, 12, 16)
    np.testing.assert_array_equal(data[0], arr)
    np.testing.assert_allclose(meta["scale"][-2:], (0.7, 0.9), atol=1e-6)
    # shown face-on: no rotation in the layer's affine (napari would show it edge-on) ...
    np.testing.assert_allclose(np.asarray(meta["affine"])[:3, :3], np.eye(3), atol=1e-9)
    # ... while its patient orientation is kept for saving labels drawn on it
    geom = Geometry.from_layer_meta(meta, 3)
    _, file_geom = read_volume(p)
    assert geom.allclose(file_geom)
    # rows run towards the feet (-S), columns towards the back (+P), the normal along -L
    np.testing.assert_allclose(geom.direction, [[0, -1, 0], [0, 0, 1], [-1, 0, 0]], atol=1e-6)
    # labels drawn on it and saved land on the slice's own patient grid
    out = tmp_path / "sag_seg.nii.gz"
    napari_write_labels(str(out), (data > 100).astype(np.uint8), meta)
    back, back_geom = read_volume(out)
    np.testing.assert_array_equal(back, (data > 100).astype(np.uint8))
    assert back_geom.allclose(file_geom, atol=1e-4)
    out.unlink()
    # the folder holding it: same slice
    [(data, meta, _)] = read_layer_data(tmp_path)
    assert data.shape == (1, 12, 16)


def test_series_label_counts_frames_once(tmp_path):
    """The picker showed "(1 slices) (1 slices)"; a label names the count once, in English."""
    rng = np.random.default_rng(0)
    _sagittal_mr(tmp_path / "a.dcm", rng.integers(0, 99, (12, 16)))
    _multiframe_ct(tmp_path / "b.dcm", rng.integers(0, 99, (3, 8, 8)))
    series, left = list_dicom_series(tmp_path)
    assert left == []
    labels = sorted(s.label for s in series)
    assert labels == ["CT multi-frame (3 slices)", "T1 sagittal (1 slice)"]
    assert sorted(s.n_slices for s in series) == [1, 3]


def test_mixed_folder_opens_every_readable_series_and_names_the_unreadable(tmp_path):
    """MR 2D + multi-frame CT + RGB ultrasound + radiograph, and one series of two multi-frame
    files (4D, unsupported): the four open as layers, the fifth is named with the reason."""
    rng = np.random.default_rng(1)
    mr = rng.integers(0, 500, (12, 16))
    ct = rng.integers(-1000, 1000, (2, 32, 32))
    us = rng.integers(0, 255, (24, 20, 3)).astype(np.uint8)
    rg = rng.integers(0, 4000, (40, 30)).astype(np.uint16)
    _sagittal_mr(tmp_path / "mr.dcm", mr)
    _multiframe_ct(tmp_path / "ct.dcm", ct)
    _write(
        tmp_path / "us.dcm",
        us,
        {"0008|0060": "US", "0020|000e": "1.2.826.0.1.3680043.8.498.33", "0008|103e": "Echo"},
        vector=True,
    )
    _write(
        tmp_path / "rg.dcm",
        rg,
        {"0008|0060": "CR", "0020|000e": "1.2.826.0.1.3680043.8.498.34", "0008|103e": "Chest"},
        spacing=(0.2, 0.2),
    )
    bad_uid = "1.2.826.0.1.3680043.8.498.35"
    for k in range(2):
        _multiframe_ct(tmp_path / f"cine{k}.dcm", ct + k, uid=bad_uid, desc="Cine")

    with pytest.warns(UserWarning) as caught:
        layers = read_layer_data(tmp_path)
    by_name = {m["name"]: (a, m, kind) for a, m, kind in layers}
    assert sorted(by_name) == ["CT multi-frame", "Chest", "Echo", "T1 sagittal"]
    np.testing.assert_array_equal(by_name["CT multi-frame"][0], ct)
    np.testing.assert_allclose(by_name["CT multi-frame"][1]["scale"], (1.5, 0.6, 0.6), atol=1e-6)
    np.testing.assert_array_equal(by_name["T1 sagittal"][0], mr[None])
    echo, echo_meta, _ = by_name["Echo"]
    assert echo.shape == (1, 24, 20, 3) and echo_meta["rgb"] is True
    np.testing.assert_array_equal(echo[0], us)
    np.testing.assert_array_equal(by_name["Chest"][0], rg[None])
    np.testing.assert_allclose(by_name["Chest"][1]["scale"][-2:], (0.2, 0.2), atol=1e-6)
    text = " ".join(str(w.message) for w in caught)
    assert "series 'Cine'" in text and "cine0.dcm" in text and "cine1.dcm" in text
    assert "4D" in text  # why: two multi-frame files make one 4D series

    # the unreadable series alone: a clear error, not a crash of the others
    with pytest.raises(ValueError, match=r"series 'Cine'.*4D"), pytest.warns(UserWarning):
        read_dicom_series(tmp_path, series="Cine")


def test_folder_where_no_series_is_readable_says_why(tmp_path):
    ct = np.zeros((2, 8, 8), np.int16)
    ct[0, 0, 0] = 5
    for k in range(2):
        _multiframe_ct(tmp_path / f"cine{k}.dcm", ct + k, desc="Cine")
    with pytest.raises(ValueError, match=r"no readable DICOM series.*'Cine'.*cine0.dcm.*4D"):
        read_layer_data(tmp_path)
