"""Issue 23 item 13 through the Qt-free controller: Accept with no Labels layer says there is
none (not a shape mismatch), and Retrain before any model says there is nothing to warm-start
from, whatever the labels hold."""

from __future__ import annotations

import numpy as np

from napari_synfoc.app.controller import AppController, ControllerView, RunRequest
from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.app.messages import message_problems
from napari_synfoc.core.review import review_maps
from napari_synfoc.core.task import StackTask

TINY = {"profile": "tiny", "device": "cpu", "foundation": "litemedsam", "checkpoint": None}


class Recorder(ControllerView):
    def __init__(self):
        self.messages = []

    def message(self, text, error=False, notify=True):
        self.messages.append((text, error))


def _with_maps(z=6, h=32, w=32):
    view = Recorder()
    ctl = AppController(view, JobRunner("sync"))
    p = np.full((z, 2, h, w), 0.5, np.float32)
    ctl.review.maps = review_maps(p, p)
    return ctl, view


def test_accept_with_no_labels_layer_says_there_is_none():
    ctl, view = _with_maps()
    assert ctl.review.accept(None, 0, "ensemble") is None
    text, error = view.messages[-1]
    assert error and "no Labels layer to accept into" in text, text
    assert "does not match" not in text and not message_problems(text)


def test_accept_above_with_no_labels_layer_says_there_is_none():
    ctl, view = _with_maps()
    assert ctl.review.accept_above(None, 0.9) is None
    text, error = view.messages[-1]
    assert error and "no Labels layer to accept into" in text, text


def test_accept_into_labels_of_another_shape_still_names_the_shapes():
    ctl, view = _with_maps()
    assert ctl.review.accept(np.zeros((6, 16, 16), np.int32), 0) is None
    text = view.messages[-1][0]
    assert "6 × 16 × 16 voxels but the predictions are 6 × 32 × 32" in text, text
    assert not message_problems(text)


def test_retrain_before_any_model_with_painted_labels_says_nothing_to_warm_start(disc_stack):
    view = Recorder()
    ctl = AppController(view, JobRunner("sync"))
    img, gt = disc_stack()
    lab = np.zeros_like(gt)
    lab[[1, 4]] = gt[[1, 4]]
    assert not ctl.start_run(RunRequest(StackTask(img, lab, [1, 4]), dict(TINY), warm_start=True))
    assert [t for t, _ in view.messages] == [
        "Nothing to warm-start from yet: Retrain continues a trained model; press Train first "
        "(or load a session)."
    ]
    assert ctl.run.count == 0 and not ctl.busy
