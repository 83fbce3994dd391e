"""Issue 23 (dock side) in napari: one message per refusal, no raw napari pop-up and no
traceback for an expected one, a deleted layer said at once, Accept with no Labels layer.

The thread backend (the job runs in napari's thread worker, as the dock's prediction does);
training is a fake event generator where its content does not matter.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from napari_synfoc.core.events import Cancelled, Started, Step
from napari_synfoc.widgets.dock import SynFoCWidget

pytestmark = pytest.mark.gui

Z, H, W = 6, 64, 64


@pytest.fixture
def shown(monkeypatch):
    """Every napari notification and every uncaught exception (a raw pop-up)."""
    from napari.utils import notifications

    seen = {"errors": [], "infos": [], "uncaught": []}
    monkeypatch.setattr(notifications, "show_error", lambda t: seen["errors"].append(t))
    monkeypatch.setattr(notifications, "show_info", lambda t: seen["infos"].append(t))
    monkeypatch.setattr(sys, "excepthook", lambda *a: seen["uncaught"].append(repr(a[1])))
    return seen


@pytest.fixture
def dock(disc_stack, add_partly_labelled, make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    img, gt = disc_stack()
    image, lab = add_partly_labelled(viewer, img, gt)
    widget = SynFoCWidget(viewer, backend="thread")
    viewer.window.add_dock_widget(widget)
    widget.profile_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    yield viewer, widget, image, lab
    if widget.is_training:
        widget.stop()
        widget.wait(30)
    widget.cleanup()


def _fake_model(widget, tmp_path, in_channels=1):
    ckpt = tmp_path / "session.pt"
    ckpt.write_bytes(b"x")
    widget.controller.model.checkpoint = ckpt
    widget.controller.model.config = {"in_channels": in_channels}


def test_predict_refused_in_the_worker_is_one_message_without_a_raw_popup(
    dock, shown, tmp_path, capfd, monkeypatch
):
    from napari_synfoc.core import interactive

    monkeypatch.setattr(interactive, "predict_stack", lambda *a, **k: pytest.fail("predicted"))
    viewer, widget, image, lab = dock
    _fake_model(widget, tmp_path)
    data = np.array(image.data, np.float32)
    data[2, 5, 5] = np.nan
    nan_layer = viewer.add_image(data, name="with nan")
    assert widget.sessions.predict(nan_layer)  # the NaN pass runs in the worker
    assert widget.wait(timeout=30)
    assert shown["uncaught"] == []  # no second, raw pop-up from the worker's exception
    assert len(shown["errors"]) == 1, shown["errors"]
    assert shown["errors"][0].startswith("Image 'with nan' has NaN or infinite values on slice 2")
    assert "Traceback" not in capfd.readouterr().err


def test_rgb_image_with_a_grey_session_is_one_message(dock, shown, tmp_path, capfd):
    viewer, widget, image, lab = dock
    _fake_model(widget, tmp_path, in_channels=1)
    rgb = viewer.add_image(np.zeros((H, W, 3), np.uint8), name="photo", rgb=True)
    assert widget.sessions.predict(rgb) is False
    widget.wait(timeout=10)
    assert shown["uncaught"] == [] and len(shown["errors"]) == 1, shown
    assert (
        "'photo' is a colour (RGB) image but the model was trained on grey" in (shown["errors"][0])
    )
    assert "Traceback" not in capfd.readouterr().err


def test_accept_with_no_labels_layer_says_there_is_none(dock, shown):
    from napari_synfoc.core.review import review_maps

    viewer, widget, image, lab = dock
    p = np.full((Z, 2, H, W), 0.5, np.float32)
    widget.controller.review.maps = review_maps(p, p)
    viewer.layers.remove(lab)
    assert widget.labels_combo.value is None
    assert widget.accept("ensemble") == 0
    text = widget.message.text()
    assert "no Labels layer to accept into" in text, text
    assert "does not match" not in text


def test_image_deleted_during_training_is_said_at_once(dock, shown, qtbot, monkeypatch):
    from napari_synfoc.core import interactive

    def slow(task, cfg, should_stop, **kw):
        yield Started("cpu", "fp32", 2, 4, 1000)
        for i in range(1000):
            if should_stop():
                yield Cancelled(i, None)
                return
            time.sleep(0.02)
            yield Step(i, 1000, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.02)

    monkeypatch.setattr(interactive, "train_on_stack", slow)
    viewer, widget, image, lab = dock
    assert widget.train(iterations=1000)
    qtbot.waitUntil(lambda: widget.event_counts.get("Step", 0) >= 2, timeout=20_000)
    viewer.layers.remove(image)
    qtbot.wait(100)
    assert widget.is_training  # it goes on: the user chooses
    text = widget.message.text()
    assert "Image layer 'stack' was deleted while training runs" in text, text
    assert "Stop" in text and "Save session" in text
    assert any("Image layer 'stack' was deleted" in t for t in shown["errors"])
    qtbot.waitUntil(lambda: "deleted" in widget.status.text(), timeout=5_000)
    widget.stop()
    assert widget.wait(timeout=30)
    assert shown["uncaught"] == []


def test_review_table_marks_unet_only_slices(dock, qtbot, monkeypatch):
    """Issue 22 item 1: slices holding only the U-Net's prediction get a "U-Net only" row."""
    from napari_synfoc.core import interactive
    from napari_synfoc.core.events import Done, Predictions

    k = 2
    p = np.zeros((Z, k, H, W), np.float32)
    p[:, 0] = 1.0
    flags = tuple(z in (0, 1, 2) for z in range(Z))  # the encoder has slices 0-2 only

    def fake(task, cfg, should_stop, **kw):
        yield Started("cpu", "fp32", 2, 4, 2)
        yield Predictions(0, p.copy(), p.copy(), tuple(range(Z)), Z, flags)
        yield Step(0, 2, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.02)
        yield Done(1, None, 0.1)

    monkeypatch.setattr(interactive, "train_on_stack", fake)
    viewer, widget, image, lab = dock
    assert widget.train(iterations=2)
    assert widget.wait(timeout=30)
    table = widget.review.table
    last = table.columnCount() - 1
    rows = {
        int(table.item(r, 0).text()): table.item(r, last).text() for r in range(table.rowCount())
    }
    # slices 1 and 4 are labelled; 3 and 5 hold the U-Net only
    assert rows[3] == "U-Net only" and rows[5] == "U-Net only", rows
    assert rows[0] != "U-Net only" and rows[2] != "U-Net only"
    # the run ended before the encoder reached every slice: the status says so
    assert widget.status.text().endswith("3 of 6 slices: both models; 3: U-Net only."), (
        widget.status.text()
    )
