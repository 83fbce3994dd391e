"""The npe2 reader and writers inside a real napari viewer (Xvfb via pytest-xvfb)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from napari_synfoc.io import SynFoCIOError

pytestmark = pytest.mark.gui
PLUGIN = "napari-synfoc"


def _world(layer, index_zyx):
    return np.asarray(layer.data_to_world(np.asarray(index_zyx, float)))


def test_volume_round_trip_through_viewer(make_napari_viewer, tmp_path, oblique_sitk_volume):
    img, exp = oblique_sitk_volume
    viewer = make_napari_viewer()
    for i, suffix in enumerate((".nii.gz", ".mha", ".nrrd")):
        src = tmp_path / f"ct{i}{suffix}"
        sitk.WriteImage(img, str(src))
        ref = sitk.ReadImage(str(src))  # what the file holds (NIfTI stores float32 geometry)
        [layer] = viewer.open(str(src), plugin=PLUGIN)
        assert layer.__class__.__name__ == "Image" and layer.name == f"ct{i}"
        assert layer.metadata["synfoc_source"] == os.path.abspath(src)
        # world coordinates are the patient position (LPS, napari order) of every voxel
        for idx_xyz in ((0, 0, 0), (10, 8, 4), (3, 5, 2)):
            lps = np.asarray(ref.TransformIndexToPhysicalPoint(idx_xyz))
            data_idx = np.round(layer.world_to_data(lps[::-1])).astype(int)
            np.testing.assert_allclose(_world(layer, data_idx), lps[::-1], atol=1e-4)
            assert layer.data[tuple(data_idx)] == exp["array"][idx_xyz[::-1]]

        # a labels layer drawn on that image (same transforms), saved through our writer, lands
        # on the image file's own voxel grid
        seg = (np.asarray(layer.data) > 300).astype(np.uint8) + (np.asarray(layer.data) > 900)
        labels = viewer.add_labels(
            seg.astype(np.uint8),
            scale=layer.scale,
            affine=layer.affine,
            metadata=dict(layer.metadata),
        )
        out = tmp_path / f"ct{i}_seg{suffix}"
        written = labels.save(str(out), plugin=PLUGIN)
        assert written == [str(out)]
        back = sitk.ReadImage(str(out))
        file_seg = (exp["array"] > 300).astype(np.uint8) + (exp["array"] > 900)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), file_seg)
        np.testing.assert_allclose(back.GetSpacing(), ref.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(back.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=1e-6)

        # and reopens as a Labels layer (the name ends in _seg) on the same world grid
        [again] = viewer.open(str(out), plugin=PLUGIN)
        assert again.__class__.__name__ == "Labels"
        np.testing.assert_array_equal(np.asarray(again.data), seg)
        np.testing.assert_allclose(
            again.affine.affine_matrix, layer.affine.affine_matrix, atol=1e-5
        )
        np.testing.assert_allclose(again.scale, layer.scale, atol=1e-6)

    # without naming the plugin napari picks our writer from the double suffix
    written = viewer.layers["ct0"].save(str(tmp_path / "plain.nii.gz"))
    assert written == [str(tmp_path / "plain.nii.gz")]
    spacing = sitk.ReadImage(written[0]).GetSpacing()
    np.testing.assert_allclose(spacing, img.GetSpacing(), atol=1e-6)


def test_dicom_and_png_in_viewer(make_napari_viewer, tmp_path, write_dicom_series):
    viewer = make_napari_viewer()
    arr = np.random.default_rng(1).integers(0, 3000, size=(3, 10, 8)).astype(np.int16)
    write_dicom_series(tmp_path / "dcm", arr, (0.5, 0.5, 2.0), (0.0, 0.0, -4.0))
    [layer] = viewer.open(str(tmp_path / "dcm"), plugin=PLUGIN)
    np.testing.assert_array_equal(np.asarray(layer.data), arr)
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.5), atol=1e-4)
    np.testing.assert_allclose(_world(layer, (0, 0, 0)), (-4.0, 0.0, 0.0), atol=1e-4)
    np.testing.assert_allclose(_world(layer, (2, 9, 7)), (0.0, 4.5, 3.5), atol=1e-4)

    grey = (np.arange(12 * 16) % 200).astype(np.uint8).reshape(12, 16)
    rgb = np.stack([grey, grey[::-1], 255 - grey], -1)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    Image.fromarray((grey > 90).astype(np.uint8)).save(tmp_path / "grey_mask.png")
    [g] = viewer.open(str(tmp_path / "grey.png"), plugin=PLUGIN)
    [c] = viewer.open(str(tmp_path / "colour.png"), plugin=PLUGIN)
    [m] = viewer.open(str(tmp_path / "grey_mask.png"), plugin=PLUGIN)
    assert g.data.shape == (12, 16) and not g.rgb
    assert c.data.shape == (12, 16, 3) and c.rgb
    np.testing.assert_array_equal(c.data, rgb)
    assert m.__class__.__name__ == "Labels" and set(np.unique(m.data)) == {0, 1}


def test_bad_input_raises_clear_error_and_viewer_survives(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 30, 30), np.int16)), str(good))
    raw = good.read_bytes()
    (tmp_path / "x.nii.gz").write_bytes(raw[: len(raw) // 2])
    msg = r"cannot read 'x.nii.gz': file is truncated or corrupt"
    with pytest.raises(SynFoCIOError, match=msg):
        viewer.open(str(tmp_path / "x.nii.gz"), plugin=PLUGIN)
    (tmp_path / "empty_dicom").mkdir()
    with pytest.raises(SynFoCIOError, match=r"'empty_dicom': no DICOM series found"):
        viewer.open(str(tmp_path / "empty_dicom"), plugin=PLUGIN)
    vol4 = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))
    sitk.WriteImage(sitk.JoinSeries([vol4] * 3), str(tmp_path / "t.mha"))
    with pytest.raises(SynFoCIOError, match=r"'t.mha': 4D images"):
        viewer.open(str(tmp_path / "t.mha"), plugin=PLUGIN)
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="notes.txt"):  # npe2: our reader does not take .txt
        viewer.open(str(tmp_path / "notes.txt"), plugin=PLUGIN)
    assert len(viewer.layers) == 0
    # the viewer still works
    viewer.add_image(np.zeros((5, 5)), name="after")
    [ok] = viewer.open(str(good), plugin=PLUGIN)
    assert [lyr.name for lyr in viewer.layers] == ["after", "good"]
    assert ok.data.shape == (4, 30, 30)
