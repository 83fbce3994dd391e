"""Issue 22 item 4 in the dock: the time under Iterations follows the speed measured in the
run (live), then the last run's (a fake training whose iterations take a known wall time)."""

from __future__ import annotations

import re
import time

import pytest

from napari_synfoc.core.events import Done, Started, Step
from napari_synfoc.widgets.dock import SynFoCWidget

pytestmark = pytest.mark.gui


def test_run_hint_comes_from_the_measured_run(
    disc_stack, add_partly_labelled, make_napari_viewer, qtbot, monkeypatch
):
    from napari_synfoc.core import interactive

    n, pause = 12, 0.08  # wall seconds per iteration (Step.seconds says 0.01: not used)
    seen = []

    def fake(task, cfg, should_stop, **kw):
        yield Started("cpu", "fp32", 2, 4, n)
        for i in range(n):
            time.sleep(pause)
            yield Step(i, n, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.01)
        yield Done(n, None, n * pause)

    monkeypatch.setattr(interactive, "train_on_stack", fake)
    viewer = make_napari_viewer()
    img, gt = disc_stack()
    add_partly_labelled(viewer, img, gt)
    widget = SynFoCWidget(viewer, backend="thread")
    viewer.window.add_dock_widget(widget)
    widget.profile_combo.setCurrentText("cpu-interactive")
    widget.device_combo.setCurrentText("cpu")
    hint = widget.model_panel.run_hint
    assert hint.text() == "Time: measured after the first iterations."
    widget.loss_plot.add_point = lambda *a, **k: seen.append(hint.text())
    widget.iterations_spin.setValue(n)
    assert widget.train()
    assert widget.wait(timeout=60)
    assert widget.outcome == "done", widget.last_message
    live = [t for t in seen if "left" in t]
    assert live and "s/iteration measured in this run, encoding included" in live[-1]
    text = hint.text()
    rate = float(re.search(r"\(([\d.]+) s/iteration measured here in the last run", text)[1])
    assert pause * 0.9 <= rate <= pause * 4, text  # the wall time, not Step.seconds (0.01)
    widget.cleanup()
