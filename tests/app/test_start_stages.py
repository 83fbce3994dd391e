"""Issue 23 item 15: a slow start says what it is busy with, stage by stage, before the first
iteration, with the default process backend (a real child process, tiny model, CPU)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_synfoc.app.controller import AppController, ControllerView, RunRequest
from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.core.task import StackTask

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # a training process


class Statuses(ControllerView):
    def __init__(self):
        self.statuses = []

    def status(self, text):
        self.statuses.append(text)


def test_start_stages_from_the_child_come_before_training(disc_stack):
    view = Statuses()
    ctl = AppController(view, JobRunner("process"))
    img, gt = disc_stack()
    lab = np.zeros_like(gt)
    lab[[1, 4]] = gt[[1, 4]]
    params = {"profile": "tiny", "device": "cpu", "foundation": "litemedsam", "iterations": 1}
    assert ctl.start_run(RunRequest(StackTask(img, lab, [1, 4]), params))
    deadline = time.monotonic() + 200
    while ctl.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ctl.run.outcome == "done", ctl.last_message
    started = next(i for i, s in enumerate(view.statuses) if s.startswith("Training on"))
    before = view.statuses[:started]
    assert before == [
        "Starting: checking the image values…",
        "Starting: starting the training process (step 1 of 3)…",
        "Starting: loading the training libraries (torch) (step 2 of 3)…",
        "Starting: preparing the slices, building the models and loading their weights "
        "(step 3 of 3)…",
    ], before
    ctl.cleanup()
