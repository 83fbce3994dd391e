"""Issue 22 item 1 (dock side), headless: slices holding only the U-Net's prediction so far are
told apart: no MedSAM, ensemble, consensus or M_d there, not ranked, and counted in the status."""

from __future__ import annotations

import copy

import numpy as np

from napari_synfoc.app.controller import AppController, ControllerView, RunRequest
from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.core.events import Done, Predictions, Started, Step
from napari_synfoc.core.task import StackTask

H = W = 64
TINY = {"profile": "tiny", "device": "cpu", "foundation": "litemedsam", "checkpoint": None}


class Recorder(ControllerView):
    def __init__(self):
        self.statuses, self.maps = [], []

    def status(self, text):
        self.statuses.append(text)

    def show_maps(self, maps, target):
        # a copy as shown now: later partial updates rewrite the worker's arrays in place
        self.maps.append(copy.deepcopy(maps))
        return False


def test_unet_only_slices_are_blank_for_the_foundation_side_and_counted(disc_stack, monkeypatch):
    from napari_synfoc.core import interactive

    k = 2
    fg = np.zeros((3, k, H, W), np.float32)
    fg[:, 1] = 1.0  # foreground everywhere
    bg = np.zeros((3, k, H, W), np.float32)
    bg[:, 0] = 1.0  # background everywhere: the models disagree on every pixel
    seen = {}

    def fake(task, cfg, **kw):
        yield Started("cpu", "fp32", 1, 2, 3)
        # the U-Net everywhere, the foundation model on slice 0 only (its row 1, 2: zeros)
        fm = bg.copy()
        fm[1:] = 0.0
        yield Predictions(0, fm, fg.copy(), (0, 1, 2), 3, (True, False, False))
        seen["after_first"] = list(ctl.unet_only_slices)
        yield Step(0, 3, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.1)
        seen["step_status"] = view.statuses[-1]
        yield Predictions(1, bg[:1].copy(), fg[:1].copy(), (1,), 3, (True,))
        seen["after_second"] = list(ctl.unet_only_slices)
        yield Predictions(2, bg.copy(), fg.copy())
        yield Done(3, None, 0.1)

    monkeypatch.setattr(interactive, "train_on_stack", fake)
    view = Recorder()
    ctl = AppController(view, JobRunner("sync"))
    img, gt = disc_stack(z=3)
    lab = np.zeros_like(gt)
    lab[0] = gt[0]
    assert ctl.start_run(RunRequest(StackTask(img, lab, [0]), dict(TINY, iterations=3)))
    assert ctl.run.outcome == "done", ctl.last_message
    assert seen["after_first"] == [1, 2] and seen["after_second"] == [2]
    assert ctl.unet_only_slices == []  # the last predictions hold both everywhere
    first = view.maps[0]
    # slice 0 holds both: they disagree everywhere; slices 1-2: the U-Net's foreground only
    assert first.divergence[0].all() and first.heat[0].max() > 0
    for z in (1, 2):
        assert (first.unet_label[z] == 1).all()
        assert not first.fm_label[z].any() and not first.ensemble_label[z].any()
        assert not first.consensus[z].any() and not first.divergence[z].any()
        assert not first.heat[z].any() and first.slice_scores[z] == 0
    assert "Predictions at iteration 0: 1 of 3 slices: both models; 2: U-Net only" in (
        view.statuses
    )
    assert seen["step_status"].endswith("· 1 of 3 slices: both models; 2: U-Net only")
