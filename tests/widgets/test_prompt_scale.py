"""The dock's prompt tools on a 200-slice stack (the project's "200 slices, not a toy" rule):
box propagation keyed on slices 0, 100 and 199 through the prompt controller's job, accept-all
as one undo step, a cancel midway, and a single box deep in the stack.  The tiny random prompt
model stands in for LiteMedSAM (``benchmarks/measure_prompt_scale.py`` times the real one)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.app.prompts import PromptController
from napari_synfoc.widgets import prompt_tool as pt

pytestmark = pytest.mark.slow

Z, H, W = 200, 64, 64
KEYS = (0, 100, 199)
GEOM = {"scale": (2.0, 0.5, 0.5), "translate": (10.0, 0, 0)}


def stack200() -> np.ndarray:
    """A float32 (200, 64, 64) stack of noise with a bright disc whose centre and radius vary
    with the slice (periodically, so it stays inside the image on every slice)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:H, :W]
    img = rng.normal(0.2, 0.05, (Z, H, W)).astype(np.float32)
    for i in range(Z):
        cx, r = 28 + 6 * np.sin(i / 15), 9 + (i % 7)
        img[i][(yy - 32) ** 2 + (xx - cx) ** 2 < r * r] += 0.6
    return img


def start_labels() -> np.ndarray:
    """Labels before prompting: class 2 on slice 50, class 1 on slice 120 (both labelled)."""
    labels = np.zeros((Z, H, W), np.int32)
    labels[50, 50:, 50:] = 2
    labels[120, 2:6, 2:6] = 1
    return labels


class Tiny:
    """The tiny prompt model, optionally ``delay`` seconds slower per box."""

    def __init__(self, delay: float = 0.0):
        from napari_synfoc.core.prompting import PromptSegmenter

        self.seg = PromptSegmenter("tiny", size=64, seed=0, precision="fp32")
        self.delay = delay

    def segment_with_box(self, *a, **k):
        if self.delay:
            time.sleep(self.delay)
        return self.seg.segment_with_box(*a, **k)

    def segment_with_points(self, *a, **k):
        return self.seg.segment_with_points(*a, **k)


def key_boxes(rect) -> np.ndarray:
    return np.stack(
        [rect(0, 15, 12, 48, 44), rect(100, 18, 14, 46, 46), rect(199, 20, 16, 50, 48)]
    )


@pytest.fixture(scope="module")
def img():
    return stack200()


@pytest.fixture
def dock200(img, make_napari_viewer, prompt_dock):
    viewer = make_napari_viewer()
    viewer.add_image(img, name="stack200", **GEOM)
    lab = viewer.add_labels(start_labels(), name="annotations", **GEOM)
    widget = prompt_dock(viewer, Tiny)
    yield viewer, widget, lab
    tool = widget.prompts
    if tool.controller.propagation.running:
        tool.controller.propagation.stop()
    if widget.is_training:
        widget.stop()
        widget.wait(60)
    widget.cleanup()


def _expected(before: np.ndarray, z: int, mask: np.ndarray, cls: int = 1) -> np.ndarray:
    """Slice ``z`` after writing ``mask`` as ``cls`` in "replace" mode (other classes kept)."""
    plane = before[z].copy()
    plane[mask & (plane == 0)] = cls
    plane[~mask & (plane == cls)] = 0
    return plane


@pytest.mark.gui
def test_dock_propagates_boxes_through_200_slices_and_accept_all_is_one_undo_step(
    rect, dock200, qtbot
):
    viewer, w, lab = dock200
    tool = w.prompts
    before = lab.data.copy()
    assert w.labeled_slices() == [50, 120]
    shapes = tool._layer(pt.PROMPTS, "shapes")
    shapes.add_rectangles(key_boxes(rect))
    t0 = time.perf_counter()
    assert tool.propagate()
    assert w.prompt_panel.buttons["stop_propagation"].isEnabled()
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=300_000)
    took = time.perf_counter() - t0
    c = tool.controller
    assert c.propagation.outcome == "done", w.last_message
    assert sorted(c.propagation.plan) == list(range(Z)) and sorted(
        c.propagation.proposals
    ) == list(range(Z))
    # keyed slices keep their box (x0, y0, x1, y1); slice 50 lies halfway between 0 and 100
    assert c.propagation.plan[0] == (12.0, 15.0, 44.0, 48.0) and c.propagation.plan[100] == (
        14.0,
        18.0,
        46.0,
        46.0,
    )
    assert c.propagation.plan[199] == (16.0, 20.0, 48.0, 50.0)
    assert np.allclose(c.propagation.plan[50], (13.0, 16.5, 45.0, 47.0))
    assert "proposals on 200 of 200 slices" in w.last_message
    props = viewer.layers[pt.PROPOSALS]
    for z in range(Z):  # every slice has a (non-empty) proposal, shown whole in the layer
        assert c.propagation.proposals[z].any(), z
        assert np.array_equal(props.data[z] > 0, c.propagation.proposals[z]), z
    # proposals are the prompt model's box masks of the interpolated boxes
    tiny = c.segmenter.seg
    prepared = c.prepared(viewer.layers["stack200"].data, False)
    for z in (0, 37, 100, 163, 199):
        assert np.array_equal(
            c.propagation.proposals[z], tiny.segment_with_box(prepared[z], c.propagation.plan[z])
        ), z
    assert np.array_equal(lab.data, before)  # the user's labels wait for accept
    assert w.labeled_slices() == [50, 120]
    masks = {z: m.copy() for z, m in c.propagation.proposals.items()}

    assert tool.accept_all() > 0
    after = lab.data.copy()
    for z in range(Z):
        assert np.array_equal(after[z], _expected(before, z, masks[z])), z
    assert (after[50, 50:, 50:] == 2).all()  # the other class is never overwritten
    assert c.propagation.proposals == {} and not props.data.any()
    assert w.labeled_slices() == list(range(Z))
    assert "200 slice(s)" in w.last_message
    lab.undo()  # ONE undo restores every slice exactly: the accept was one step
    assert np.array_equal(lab.data, before)
    assert w.labeled_slices() == [50, 120]
    lab.redo()
    assert np.array_equal(lab.data, after)
    print(f"\n[dock] propagation over {Z} slices (tiny model): {took:.2f} s")


@pytest.mark.gui
def test_dock_cancel_midway_on_200_slices_leaves_whole_slices_and_labels_untouched(
    rect, dock200, qtbot
):
    viewer, w, lab = dock200
    tool = w.prompts
    c = tool.controller
    c.segmenter_factory = lambda: Tiny(delay=0.02)
    before = lab.data.copy()
    tool._layer(pt.PROMPTS, "shapes").add_rectangles(key_boxes(rect))
    assert tool.propagate()
    qtbot.waitUntil(lambda: len(c.propagation.proposals) >= 60, timeout=300_000)
    assert tool.run_action("stop_propagation")
    qtbot.waitUntil(lambda: not c.propagation.running, timeout=60_000)
    done = sorted(c.propagation.proposals)
    assert c.propagation.outcome == "cancelled"
    assert 60 <= len(done) < Z and done == list(range(len(done)))  # in order, no gap
    assert f"proposals on {len(done)} of {Z} slices" in w.last_message
    props = viewer.layers[pt.PROPOSALS]
    for z in range(Z):  # each proposal slice is complete or empty, never half-written
        want = (
            c.propagation.proposals[z] if z in c.propagation.proposals else np.zeros((H, W), bool)
        )
        assert np.array_equal(props.data[z] > 0, want), z
    tiny = c.segmenter.seg
    prepared = c.prepared(viewer.layers["stack200"].data, False)
    for z in (0, done[len(done) // 2], done[-1]):
        assert np.array_equal(
            c.propagation.proposals[z], tiny.segment_with_box(prepared[z], c.propagation.plan[z])
        ), z
    assert np.array_equal(lab.data, before) and w.labeled_slices() == [50, 120]


def test_controller_cancel_at_slice_100_keeps_exactly_the_whole_slices_done(img, rect):
    """Headless and synchronous: the stop lands after the 100th slice, deterministically."""
    said = []
    seg = Tiny()
    c = PromptController(lambda t, e=False: said.append((t, e)), lambda: seg, JobRunner("sync"))
    labels = start_labels()
    before = labels.copy()
    seen = []

    def on_slice(z, mask, done, total):
        seen.append((z, done, total, mask.copy()))
        if done == 100:
            c.propagation.stop()

    assert c.propagation.start(img, labels.shape, list(key_boxes(rect)), on_slice=on_slice)
    assert c.propagation.outcome == "cancelled"
    assert sorted(c.propagation.proposals) == list(range(100))
    assert [s[0] for s in seen] == list(range(100)) and {s[2] for s in seen} == {Z}
    for z, _, _, m in seen:  # what reached the layer is what the controller keeps
        assert np.array_equal(c.propagation.proposals[z], m)
    assert "proposals on 100 of 200 slices" in said[-1][0] and not said[-1][1]
    assert np.array_equal(labels, before)


@pytest.mark.gui
def test_single_box_on_slice_150_of_200_changes_only_slice_150(rect, dock200):
    viewer, w, lab = dock200
    tool = w.prompts
    before = lab.data.copy()
    w.goto_slice(150)
    assert tool._z() == 150
    tool._layer(pt.PROMPTS, "shapes").add_rectangles(rect(150, 16, 14, 48, 46)[None])
    assert tool.segment() > 0
    changed = np.nonzero((lab.data != before).any(axis=(1, 2)))[0].tolist()
    assert changed == [150]
    assert set(np.unique(lab.data[150]).tolist()) == {0, 1}
    assert w.labeled_slices() == [50, 120, 150]
    lab.undo()
    assert np.array_equal(lab.data, before) and w.labeled_slices() == [50, 120]


def test_accept_all_on_200_slices_reports_exactly_the_slices_left_empty():
    """Accept-all's "emptied" slices (marked labelled though empty) on 200 slices: in "replace"
    mode an empty proposal clears its class; another class keeps a slice non-empty."""
    said = []
    c = PromptController(lambda t, e=False: said.append((t, e)), lambda: None, JobRunner("sync"))
    labels = np.zeros((Z, H, W), np.int32)
    labels[[10, 20, 150], 5:9, 5:9] = 1
    labels[30, 40:44, 40:44] = 2
    before = labels.copy()
    box = np.zeros((H, W), bool)
    box[20:30, 20:30] = True
    empty = {10, 30, 40, 150, 199}
    c.propagation.proposals = {z: (np.zeros_like(box) if z in empty else box) for z in range(Z)}
    pe = c.propagation.accept(labels)
    assert pe is not None and pe.slices == list(range(Z))
    assert pe.empty_slices == [10, 40, 150, 199]  # slice 30 keeps its class 2
    labels[pe.edit.indices] = pe.edit.new_values
    for z in range(Z):
        want = _expected(before, z, np.zeros_like(box) if z in empty else box)
        assert np.array_equal(labels[z], want), z
    assert "200 slice(s)" in said[-1][0]
