"""Issue 21: the dock's Retrain runs its own length (the Retrain iterations spin box), Train the
Iterations spin box, and a length given to either call sets that call's spin box only."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.widgets.dock import SynFoCWidget

pytestmark = pytest.mark.gui


def test_train_and_retrain_run_their_own_lengths(make_napari_viewer, add_partly_labelled):
    viewer = make_napari_viewer()
    img = np.random.default_rng(0).normal(100, 10, (6, 32, 32)).astype(np.float32)
    gt = np.zeros((6, 32, 32), np.uint8)
    gt[:, 10:20, 10:20] = 1
    add_partly_labelled(viewer, img, gt)
    widget = SynFoCWidget(viewer, backend="sync")
    widget.device_combo.setCurrentText("cpu")
    widget.profile_combo.setCurrentText("cpu-interactive")
    seen = []
    widget.controller.start_run = lambda req: seen.append(req) and False  # nothing starts
    try:
        assert widget.iterations_spin.value() == 300
        assert widget.model_panel.retrain_spin.value() == 100
        widget.train()
        widget.retrain()
        widget.model_panel.retrain_spin.setValue(60)
        widget.retrain()
        widget.retrain(iterations=25)
        widget.train(iterations=40)
        got = [(r.warm_start, r.params["iterations"]) for r in seen]
        assert got == [(False, 300), (True, 100), (True, 60), (True, 25), (False, 40)]
        assert widget.model_panel.retrain_spin.value() == 25
        assert widget.iterations_spin.value() == 40
    finally:
        widget.cleanup()
        widget.deleteLater()
