"""Qt-free reading: geometry in napari order, label detection, DICOM series, clear errors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from napari_synfoc.io import (
    Geometry,
    SynFoCIOError,
    check_labels_match,
    is_label_name,
    read_layer_data,
    read_volume,
)
from napari_synfoc.io.readers import napari_get_reader

SHARED = str(
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "synfoc_format_samples"
)


# --- geometry ------------------------------------------------------------------------------
def test_geometry_matches_sitk_index_to_physical(oblique_sitk_volume):
    img, exp = oblique_sitk_volume
    g = Geometry.from_sitk(img)
    assert g.spacing == pytest.approx(exp["spacing"])
    assert g.origin == pytest.approx(exp["origin"])
    np.testing.assert_allclose(g.direction, exp["direction"], atol=1e-12)
    # the physical point of voxel (z, y, x) = (3, 2, 7): origin + D @ (spacing * index), zyx order
    idx = np.array([3, 2, 7])
    p_zyx = np.array(g.origin) + np.array(g.direction) @ (np.array(g.spacing) * idx)
    p_xyz = img.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx[::-1]))
    np.testing.assert_allclose(p_zyx[::-1], p_xyz, atol=1e-9)
    # and back onto a fresh image
    back = g.to_sitk(sitk.Image(11, 9, 5, sitk.sitkUInt8))
    assert back.GetSpacing() == pytest.approx(img.GetSpacing())
    assert back.GetOrigin() == pytest.approx(img.GetOrigin())
    assert back.GetDirection() == pytest.approx(img.GetDirection())
    kw = g.to_layer_kwargs(source="x.nii.gz")
    assert kw["scale"] == [2.5, 0.8, 0.7]
    assert kw["translate"] == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(kw["affine"][:3, 3], [-30.0, 12.5, 40.25])
    np.testing.assert_allclose(kw["affine"][:3, :3], exp["direction"], atol=1e-12)
    assert kw["metadata"]["synfoc_source"] == "x.nii.gz"


def test_geometry_from_layer_meta_legacy_direction_metadata():
    d = [[0.0, 1.0], [1.0, 0.0]]
    meta = {"scale": [2.0, 3.0], "translate": [5.0, -1.0], "metadata": {"synfoc_direction": d}}
    g = Geometry.from_layer_meta(meta, 2)
    assert g.spacing == (2.0, 3.0) and g.origin == (5.0, -1.0) and g.direction == ((0, 1), (1, 0))
    g3 = Geometry.from_layer_meta({"metadata": {"synfoc_direction": d}}, 3)  # wrong size -> eye
    assert g3.direction == tuple(map(tuple, np.eye(3))) and g3.spacing == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="spacing must be positive"):
        Geometry((1.0, 0.0), (0.0, 0.0))


# --- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("case1_seg.nii.gz", True),
        ("case1_SEG.nii.gz", True),
        ("liver-mask.mha", True),
        ("x_labels.nrrd", True),
        ("x_label.nii", True),
        ("brain_gt.png", True),
        ("benign (4)_mask_1.png", True),
        ("masks/001.png", True),
        ("labelsTr/case_000.nii.gz", True),
        ("case1.nii.gz", False),
        ("segment_me.nii.gz", False),
        ("image/001.png", False),
        ("mygt.png", False),
    ],
)
def test_is_label_name(name, expected):
    assert is_label_name(name) is expected


# --- volumes -------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd", ".mhd"])
def test_read_volume_geometry(tmp_path, oblique_sitk_volume, suffix):
    img, exp = oblique_sitk_volume
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(img, str(path))
    arr, g = read_volume(path)
    np.testing.assert_array_equal(arr, exp["array"])
    assert arr.dtype == np.int16
    np.testing.assert_allclose(g.spacing, exp["spacing"], atol=1e-5)
    np.testing.assert_allclose(g.origin, exp["origin"], atol=1e-4)
    np.testing.assert_allclose(g.direction, exp["direction"], atol=1e-5)


def test_label_file_becomes_labels_layer(tmp_path, oblique_sitk_volume):
    img, exp = oblique_sitk_volume
    lab = sitk.Cast(img > 500, sitk.sitkUInt8)
    lab.CopyInformation(img)
    sitk.WriteImage(lab, str(tmp_path / "ct_Seg.nii.gz"))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    [(data, meta, kind)] = read_layer_data(tmp_path / "ct_Seg.nii.gz")
    assert kind == "labels" and data.dtype == np.uint8
    np.testing.assert_array_equal(data, (exp["array"] > 500).astype(np.uint8))
    assert meta["name"] == "ct_Seg"
    np.testing.assert_allclose(meta["scale"], exp["spacing"], atol=1e-5)
    np.testing.assert_allclose(meta["affine"][:3, 3], exp["origin"], atol=1e-4)
    np.testing.assert_allclose(meta["affine"][:3, :3], exp["direction"], atol=1e-5)
    [(_, meta_img, kind_img)] = read_layer_data(tmp_path / "ct.nii.gz")
    assert kind_img == "image"
    assert meta_img["metadata"]["synfoc_source"] == os.path.abspath(tmp_path / "ct.nii.gz")
    # a float file named like a label map stays an image
    sitk.WriteImage(sitk.Cast(img, sitk.sitkFloat32), str(tmp_path / "prob_mask.mha"))
    assert read_layer_data(tmp_path / "prob_mask.mha")[0][2] == "image"


def test_dicom_series_folder(tmp_path, write_dicom_series):
    rng = np.random.default_rng(3)
    arr = rng.integers(-1000, 2000, size=(4, 16, 12)).astype(np.int16)
    folder = tmp_path / "series"
    write_dicom_series(folder, arr, (0.6, 0.75, 3.0), (-10.0, 20.0, 5.0))
    # a second, shorter series in the same folder (e.g. a scout): the largest series wins
    scout = arr[:2, :8, :8]
    write_dicom_series(folder, scout, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), "1.2.826.0.1.3680043.8.9")
    with pytest.warns(UserWarning, match=r"series: 2 file\(s\) not opened .*S9_IM0000.dcm"):
        data, g = read_volume(folder)
    np.testing.assert_array_equal(data, arr)
    np.testing.assert_allclose(g.spacing, (3.0, 0.75, 0.6), atol=1e-4)
    np.testing.assert_allclose(g.origin, (5.0, 20.0, -10.0), atol=1e-4)
    np.testing.assert_allclose(g.direction, np.eye(3), atol=1e-6)
    assert napari_get_reader(str(folder)) is not None
    # the napari reader opens every series as its own layer (largest first, named by id)
    [(a1, m1, k1), (a2, m2, k2)] = read_layer_data(folder)
    assert k1 == k2 == "image"
    assert m1["name"] == "1.2.826.0.1.3680043.8.498.1" and m2["name"] == "1.2.826.0.1.3680043.8.9"
    np.testing.assert_array_equal(a1, arr)
    np.testing.assert_array_equal(a2, scout)


# --- 2D ------------------------------------------------------------------------------------
def test_png_grey_rgb_and_mask(tmp_path):
    grey = (np.arange(20 * 30) % 251).astype(np.uint8).reshape(20, 30)
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    mask = (grey > 100).astype(np.uint8) * 2
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(mask).save(tmp_path / "g_mask.png")
    Image.fromarray(np.stack([mask] * 3, -1)).save(tmp_path / "rgbmask_gt.png")
    Image.fromarray(grey.astype(np.uint16) * 200).save(tmp_path / "g16.tif")

    [(a, m, k)] = read_layer_data(tmp_path / "g.png")
    assert k == "image" and a.shape == (20, 30) and "rgb" not in m and m["scale"] == [1.0, 1.0]
    np.testing.assert_array_equal(a, grey)
    [(a, m, k)] = read_layer_data(tmp_path / "c.png")
    assert k == "image" and a.shape == (20, 30, 3) and m["rgb"] is True and len(m["scale"]) == 2
    np.testing.assert_array_equal(a, rgb)
    [(a, m, k)] = read_layer_data(tmp_path / "c.jpg")
    assert a.shape == (20, 30, 3) and m["rgb"] is True
    for name in ("g_mask.png", "rgbmask_gt.png"):
        [(a, m, k)] = read_layer_data(tmp_path / name)
        assert k == "labels" and a.shape == (20, 30)
        np.testing.assert_array_equal(a, mask)
    a, g = read_volume(tmp_path / "g16.tif")
    assert a.dtype == np.uint16 and a.shape == (20, 30) and g.ndim == 2
    np.testing.assert_array_equal(a, grey.astype(np.uint16) * 200)


def test_real_busi_image_and_mask():
    folder = os.path.join(SHARED, "Dataset_BUSI_with_GT", "benign")
    if not os.path.isdir(folder):
        pytest.skip("shared BUSI samples not present")
    [(img, m, k)] = read_layer_data(os.path.join(folder, "benign (1).png"))
    [(lab, _, kl)] = read_layer_data(os.path.join(folder, "benign (1)_mask.png"))
    assert k == "image" and m["rgb"] is True and img.shape == (471, 562, 3)
    assert kl == "labels" and lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1}
    check_labels_match(img.shape, lab.shape, rgb=True)


# --- bad input -----------------------------------------------------------------------------
def test_unsupported_extension(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello", encoding="utf-8")
    assert napari_get_reader(str(p)) is None
    with pytest.raises(ValueError, match=r"cannot read 'notes.txt': unsupported file type '.txt'"):
        read_volume(p)
    # a folder of PNGs is not a DICOM folder: left to other readers
    (tmp_path / "pngs").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "pngs" / "a.png")
    assert napari_get_reader(str(tmp_path / "pngs")) is None


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd", ".png"])
def test_truncated_file(tmp_path, suffix):
    arr = np.random.default_rng(0).integers(0, 255, size=(6, 40, 40)).astype(np.uint8)
    good = tmp_path / f"good{suffix}"
    if suffix == ".png":
        Image.fromarray(arr[0]).save(good)
    else:
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(good), useCompression=True)
    raw = good.read_bytes()
    bad = tmp_path / f"x{suffix}"
    bad.write_bytes(raw[: int(len(raw) * 0.6)])
    msg = rf"cannot read 'x{suffix}': file is truncated or corrupt \(.+\)"
    with pytest.raises(SynFoCIOError, match=msg):
        read_volume(bad)


def test_garbage_and_empty_files(tmp_path):
    (tmp_path / "junk.mha").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(SynFoCIOError, match=r"'junk.mha': file is truncated or corrupt"):
        read_volume(tmp_path / "junk.mha")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(SynFoCIOError, match=r"'empty.nii.gz': file is empty"):
        read_volume(tmp_path / "empty.nii.gz")
    with pytest.raises(SynFoCIOError, match=r"'missing.nrrd': file not found"):
        read_volume(tmp_path / "missing.nrrd")
    # a gzip stream cut short in a NIfTI (ITK itself would pad it with zeros silently)
    img = sitk.GetImageFromArray(np.arange(8 * 32 * 32, dtype=np.int32).reshape(8, 32, 32))
    sitk.WriteImage(img, str(tmp_path / "v.nii"))
    raw = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[: len(raw) - 1000]))
    with pytest.raises(SynFoCIOError, match=r"'short.nii.gz'.*holds \d+ of the \d+ bytes"):
        read_volume(tmp_path / "short.nii.gz")


def test_mhd_without_its_data_file(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8)), str(tmp_path / "v.mhd"))
    os.remove(tmp_path / "v.raw")
    with pytest.raises(SynFoCIOError, match=r"'v.mhd': its data file 'v.raw' is missing"):
        read_volume(tmp_path / "v.mhd")


def test_4d_volume_rejected(tmp_path):
    vol = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
    sitk.WriteImage(sitk.JoinSeries([vol, vol]), str(tmp_path / "fmri.nii.gz"))
    with pytest.raises(SynFoCIOError, match=r"'fmri.nii.gz': 4D images \(shape \(2, 3, 4, 5\)\)"):
        read_volume(tmp_path / "fmri.nii.gz")


def test_empty_dicom_folder(tmp_path):
    (tmp_path / "dicom").mkdir()
    assert napari_get_reader(str(tmp_path / "dicom")) is not None  # we take it, then explain
    msg = r"cannot read 'dicom': no DICOM series found \(the folder is empty\)"
    with pytest.raises(SynFoCIOError, match=msg):
        read_volume(tmp_path / "dicom")
    (tmp_path / "dicom" / "a.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(SynFoCIOError, match=r"none of its 1 files is a readable DICOM image"):
        read_volume(tmp_path / "dicom")


def test_check_labels_match():
    check_labels_match((4, 5, 6), (4, 5, 6))
    check_labels_match((5, 6, 3), (5, 6), rgb=True)
    with pytest.raises(
        SynFoCIOError,
        match=r"label map 'a_seg.nii.gz' has shape \(4, 5, 7\) "
        r"but 'a.nii.gz' has shape \(4, 5, 6\)",
    ):
        check_labels_match(
            (4, 5, 6), (4, 5, 7), image_name="'a.nii.gz'", labels_name="'a_seg.nii.gz'"
        )
