"""Qt-free writing: full geometry, label dtype, atomic saves, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

from napari_synfoc.io import Geometry, SynFoCIOError, read_volume, write_volume
from napari_synfoc.io.writers import napari_write_image, napari_write_labels


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_write_volume_keeps_geometry(tmp_path, oblique_sitk_volume, suffix):
    img, exp = oblique_sitk_volume
    g = Geometry(exp["spacing"], exp["origin"], exp["direction"])
    labels = (exp["array"] > 400).astype(np.int64) * 3
    out = write_volume(tmp_path / f"seg{suffix}", labels, g, labels=True)
    assert out == str(tmp_path / f"seg{suffix}")
    back = sitk.ReadImage(out)
    assert back.GetPixelID() == sitk.sitkUInt8  # smallest type that holds 0..3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
    # no temporary files left behind
    assert sorted(os.listdir(tmp_path)) == [f"seg{suffix}"]


def test_write_image_float_and_rgb(tmp_path):
    vol = np.linspace(-1, 1, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    g = Geometry((2.0, 1.0, 0.5), (1.0, 2.0, 3.0))
    arr, g2 = read_volume(write_volume(tmp_path / "f.mha", vol, g))
    np.testing.assert_array_equal(arr, vol)
    assert g2.allclose(g)
    rgb = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    back = sitk.ReadImage(write_volume(tmp_path / "c.nrrd", rgb, rgb=True))
    assert back.GetDimension() == 2 and back.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), rgb)


def test_label_dtypes(tmp_path):
    big = np.array([[[0, 70000]]], dtype=np.int64)
    neg = np.array([[[-3, 5]]], dtype=np.int32)
    b = sitk.ReadImage(write_volume(tmp_path / "b.nrrd", big, labels=True))
    n = sitk.ReadImage(write_volume(tmp_path / "n.nrrd", neg, labels=True))
    assert b.GetPixelID() == sitk.sitkUInt32 and n.GetPixelID() == sitk.sitkInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(b), big)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(n), neg)
    with pytest.raises(SynFoCIOError, match="label maps must hold integers"):
        write_volume(tmp_path / "x.nrrd", np.zeros((2, 2, 2), np.float32), labels=True)


def test_atomic_replace_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "seg.mha"
    first = np.ones((2, 3, 4), np.uint8)
    write_volume(target, first, labels=True)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    msg = r"cannot write 'seg.mha': writing failed \(disk full\)"
    with pytest.raises(SynFoCIOError, match=msg):
        write_volume(target, np.zeros((2, 3, 4), np.uint8), labels=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(read_volume(target)[0], first)  # old content intact
    assert sorted(os.listdir(tmp_path)) == ["seg.mha"]  # temp file removed


def test_write_errors(tmp_path):
    with pytest.raises(SynFoCIOError, match=r"cannot write 'a.png': unsupported file type '.png'"):
        write_volume(tmp_path / "a.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(SynFoCIOError, match=r"'a.mha': only 2D and 3D data can be written"):
        write_volume(tmp_path / "a.mha", np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(SynFoCIOError, match=r"geometry has 2 axes but the data \(2, 2, 2\) has 3"):
        write_volume(tmp_path / "a.mha", np.zeros((2, 2, 2)), Geometry.identity(2))
    with pytest.raises(SynFoCIOError, match=r"folder .* does not exist"):
        write_volume(tmp_path / "nope" / "a.mha", np.zeros((2, 2, 2)))


def test_napari_writers_use_layer_meta(tmp_path, oblique_sitk_volume):
    img, exp = oblique_sitk_volume
    meta = {
        "scale": list(exp["spacing"]),
        "translate": list(exp["origin"]),
        "metadata": {"synfoc_direction": exp["direction"].tolist()},
    }
    labels = (exp["array"] % 3).astype(np.int32)
    [p] = napari_write_labels(str(tmp_path / "s.nii.gz"), labels, meta)
    back = sitk.ReadImage(p)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-6)
    [p] = napari_write_image(str(tmp_path / "i.mha"), exp["array"], {**meta, "rgb": False})
    back = sitk.ReadImage(p)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), exp["array"])
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-6)
