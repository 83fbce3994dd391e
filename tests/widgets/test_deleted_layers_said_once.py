"""Found by the new-user pass (benchmarks/new_user_pass.py): closing napari while training runs
shows no "layer deleted" pop-up (the closing viewer removes every layer before the dock goes),
and a layer deleted during training is said once, not again when the run ends.

The thread backend with a fake training generator (its content does not matter here)."""

from __future__ import annotations

import time

import pytest

from napari_synfoc.core.events import Cancelled, Started, Step
from napari_synfoc.widgets.dock import SynFoCWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def popups(monkeypatch):
    from napari.utils import notifications

    seen = []
    monkeypatch.setattr(notifications, "show_error", lambda t: seen.append(t))
    monkeypatch.setattr(notifications, "show_info", lambda t: seen.append(t))
    return seen


@pytest.fixture
def training(disc_stack, add_partly_labelled, make_napari_viewer, qtbot, monkeypatch):
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
    viewer = make_napari_viewer()
    img, gt = disc_stack()
    image, lab = add_partly_labelled(viewer, img, gt)
    widget = SynFoCWidget(viewer, backend="thread")
    viewer.window.add_dock_widget(widget)
    widget.profile_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    assert widget.train(iterations=1000)
    qtbot.waitUntil(lambda: widget.event_counts.get("Step", 0) >= 2, timeout=20_000)
    return viewer, widget, image, lab


def test_closing_napari_while_training_shows_no_deletion_popup(training, popups, qtbot):
    viewer, widget, image, lab = training
    ctl = widget.controller
    viewer.close()
    qtbot.waitUntil(lambda: not ctl.busy, timeout=20_000)
    qtbot.wait(100)
    assert popups == []


def test_a_layer_deleted_during_training_is_said_once(training, popups, qtbot):
    viewer, widget, image, lab = training
    viewer.layers.remove(image)
    qtbot.waitUntil(lambda: len(popups) == 1, timeout=5_000)
    assert widget.is_training
    assert popups[0].startswith("Image layer 'stack' was deleted while training runs")
    widget.stop()
    assert widget.wait(timeout=30)
    qtbot.wait(100)
    assert len(popups) == 1, popups  # not said again when the run ended
    assert "Image layer 'stack' was deleted" in widget.message.text()
    widget.cleanup()
