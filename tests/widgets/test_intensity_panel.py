"""What the models see (issue 16 in the dock): the intensity choice, its session round trip,
and exports that keep the layer's patient geometry."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.core.intensity import CT_WINDOWS
from napari_synfoc.widgets.dock import SynFoCWidget
from napari_synfoc.widgets.panels.data import INTENSITY_MODES

pytestmark = pytest.mark.gui

Z, H, W = 6, 64, 64


def _ct_stack():
    """A CT-like (6, 64, 64) int16 stack in HU: soft tissue around a denser disc."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:H, :W]
    img = rng.normal(40, 20, (Z, H, W))
    gt = np.zeros((Z, H, W), np.int32)
    for z in range(Z):
        disc = (yy - 32) ** 2 + (xx - 30) ** 2 < (10 + z) ** 2
        img[z][disc] += 80
        gt[z][disc] = 1
    img[:, :4] = -1000  # air
    img[:, -3:] = 1500  # bone
    return img.astype(np.int16), gt


@pytest.fixture
def dock(make_napari_viewer, add_partly_labelled):
    viewer = make_napari_viewer()
    img, gt = _ct_stack()
    image, lab = add_partly_labelled(viewer, img, gt, names=("ct", "seg"))
    widget = SynFoCWidget(viewer, backend="sync")
    widget.profile_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.predict_every_spin.setValue(0)
    seen = []
    start = widget.controller.start_run

    def spy(request):
        seen.append(request.task.intensity_window)
        return start(request)

    widget.controller.start_run = spy
    yield viewer, widget, image, lab, seen
    widget.cleanup()
    widget.deleteLater()


def test_intensity_choices_give_the_task_window(dock):
    viewer, widget, image, lab, seen = dock
    panel = widget.data_panel
    combo = panel.intensity_combo
    assert [combo.itemText(i) for i in range(combo.count())] == list(INTENSITY_MODES)
    # a CT in HU starts from the soft-tissue window (issue 21: defaults that fit the image)
    assert combo.currentText() == "CT soft tissue" and combo.toolTip()
    assert panel.intensity_window(image) == CT_WINDOWS["soft tissue"]
    panel.set_intensity("auto (percentile)")
    assert panel.intensity_window(image) is None
    image.contrast_limits = (-100.0, 300.0)
    panel.set_intensity("layer contrast limits")
    assert panel.intensity_window(image) == (-100.0, 300.0)
    for name, window in CT_WINDOWS.items():
        panel.set_intensity(f"CT {name}")
        assert panel.intensity_window(image) == window
    with pytest.raises(ValueError, match="unknown intensity mode"):
        panel.set_intensity("CT brain")
    # a training run gets the window of the choice
    panel.set_intensity("layer contrast limits")
    assert widget.train(iterations=1)
    assert widget.outcome == "done", widget.last_message
    assert seen[-1] == (-100.0, 300.0)


def test_intensity_choice_is_saved_in_the_session(dock, tmp_path):
    viewer, widget, image, lab, seen = dock
    widget.data_panel.set_intensity("CT soft tissue")
    assert widget.train(iterations=1)
    assert widget.outcome == "done", widget.last_message
    assert seen[-1] == CT_WINDOWS["soft tissue"]
    path = widget.sessions.save(tmp_path / "s.pt")

    from napari_synfoc.core.interactive import read_session

    saved = read_session(path)["intensity"]
    assert saved == {"mode": "CT soft tissue", "window": list(CT_WINDOWS["soft tissue"])}
    widget.data_panel.set_intensity("auto (percentile)")
    other = SynFoCWidget(viewer, backend="sync")
    try:
        assert other.data_panel.intensity_mode() == "CT soft tissue"  # suggested for the CT
        other.data_panel.set_intensity("CT bone")
        other.sessions.load(path)
        assert other.data_panel.intensity_mode() == "CT soft tissue"
        # Predict uses the restored window for the image it predicts
        assert other.sessions.predict(image)
        assert other.controller.run.outcome == "done", other.last_message
    finally:
        other.cleanup()
        other.deleteLater()


def test_the_suggestion_follows_the_image_until_the_user_chooses(make_napari_viewer):
    """A CT layer suggests the soft-tissue window, another image the percentile stretch; once
    the user picks a mode in the combo, switching images keeps it."""
    viewer = make_napari_viewer()
    ct = viewer.add_image(_ct_stack()[0], name="ct")
    mr = viewer.add_image(np.random.default_rng(0).random((Z, H, W)).astype(np.float32) * 900,
                          name="mr")  # fmt: skip
    widget = SynFoCWidget(viewer, backend="sync")
    try:
        panel = widget.data_panel
        widget.image_combo.set_value(ct)
        assert panel.intensity_mode() == "CT soft tissue"
        widget.image_combo.set_value(mr)
        assert panel.intensity_mode() == "auto (percentile)"
        widget.image_combo.set_value(ct)
        assert panel.intensity_mode() == "CT soft tissue"
        panel.intensity_combo.setCurrentText("CT bone")
        panel.intensity_combo.activated.emit(panel.intensity_combo.currentIndex())  # a click
        widget.image_combo.set_value(mr)
        assert panel.intensity_mode() == "CT bone"
    finally:
        widget.cleanup()
        widget.deleteLater()


def test_export_keeps_an_oblique_layer_geometry(make_napari_viewer, oblique_sitk_volume, tmp_path):
    import SimpleITK as sitk

    from napari_synfoc.io.readers import read_layer_data

    src_img, expected = oblique_sitk_volume
    src = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(src_img, str(src))
    viewer = make_napari_viewer()
    ((data, kwargs, _kind),) = read_layer_data(src)
    image = viewer.add_image(data, **kwargs)
    assert not np.allclose(image.affine.affine_matrix[:3, :3], np.diag(np.diag(
        image.affine.affine_matrix[:3, :3])))  # fmt: skip  # a non-diagonal direction
    labels = (np.asarray(data) > 500).astype(np.int32)
    lab = viewer.add_labels(
        labels, name="seg", scale=image.scale, translate=image.translate,
        affine=image.affine, metadata=dict(image.metadata),
    )  # fmt: skip
    widget = SynFoCWidget(viewer, backend="sync")
    try:
        widget.image_combo.set_value(image)
        widget.labels_combo.set_value(lab)
        out = widget.sessions.export_labels(tmp_path / "seg.nii.gz")
    finally:
        widget.cleanup()
        widget.deleteLater()
    back = sitk.ReadImage(out)
    # the file's own grid and voxel order: it overlays the source file exactly
    np.testing.assert_allclose(back.GetSpacing(), src_img.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(back.GetOrigin(), src_img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), src_img.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected["array"] > 500)
