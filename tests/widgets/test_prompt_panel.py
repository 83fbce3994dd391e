"""The dock's prompt tools in napari: tiny random prompt model, real layers, real undo."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_synfoc.core.review import review_maps
from napari_synfoc.widgets import prompt_tool as pt
from napari_synfoc.widgets.dock import SynFoCWidget

pytestmark = pytest.mark.gui

Z, H, W = 6, 64, 64
GEOM = {"scale": (2.0, 0.5, 0.5), "translate": (10.0, 0, 0)}


class SlowTiny:
    """The tiny prompt model, ``delay`` seconds per box (to stop a propagation midway)."""

    def __init__(self, delay=0.0):
        from napari_synfoc.core.prompting import PromptSegmenter

        self.seg = PromptSegmenter("tiny", size=64, seed=0, precision="fp32")
        self.delay = delay

    def segment_with_box(self, *a, **k):
        time.sleep(self.delay)
        return self.seg.segment_with_box(*a, **k)

    def segment_with_points(self, *a, **k):
        return self.seg.segment_with_points(*a, **k)


@pytest.fixture
def dock(prompt_image, make_napari_viewer, qtbot, prompt_dock):
    viewer = make_napari_viewer()
    image = viewer.add_image(prompt_image, name="stack", **GEOM)
    labels = np.zeros((Z, H, W), np.int32)
    labels[1, 40:, 40:] = 2  # another class on the prompted slice
    labels[4, 30:40, 30:40] = 1  # another slice
    lab = viewer.add_labels(labels, name="annotations", **GEOM)
    widget = prompt_dock(viewer, SlowTiny)
    yield viewer, widget, image, lab
    if widget.is_training:
        widget.stop()
        widget.wait(60)
    widget.cleanup()


def test_box_prompt_is_one_undoable_step_on_one_slice_and_class(rect, dock):
    viewer, w, _image_layer, lab = dock
    before = lab.data.copy()
    w.goto_slice(1)
    w.prompts.box_mode()
    shapes = viewer.layers[pt.PROMPTS]
    assert viewer.layers.selection.active is shapes and shapes.mode == "add_rectangle"
    shapes.add_rectangles(rect(1, 10, 10, 40, 40)[None])
    assert w.prompts.segment() > 0
    assert w.prompts.last_latency is not None
    assert (lab.data[1] == 1).any() and 1 in w.labeled_slices()
    assert np.array_equal(lab.data[1, 40:, 40:], before[1, 40:, 40:])  # class 2 kept
    assert np.array_equal(np.delete(lab.data, 1, 0), np.delete(before, 1, 0))
    lab.undo()  # napari's labels undo: one step restores exactly
    assert np.array_equal(lab.data, before)
    assert w.labeled_slices() == [1, 4]
    w.goto_slice(3)  # an unlabelled slice counts as labelled after a prompt
    shapes.add_rectangles(rect(3, 10, 10, 40, 40)[None])
    assert w.prompts.segment() > 0 and w.labeled_slices() == [1, 3, 4]
    lab.undo()
    # the shortcuts are bound on the prompt layers: S segments, Ctrl-Z undoes
    keymap = {str(k): f for k, f in shapes.keymap.items()}
    assert {"B", "P", "N", "S", "C", "A", "Enter"} <= set(keymap)
    w.goto_slice(1)
    keymap["S"](shapes)
    assert (lab.data[1] == 1).any()
    keymap[next(k for k in keymap if "Z" in k and k != "Z")](shapes)
    assert np.array_equal(lab.data, before)


def test_points_refine_and_bad_prompts_change_nothing(rect, dock):
    viewer, w, _image_layer, lab = dock
    w.goto_slice(2)
    w.prompts.point_mode(False)
    points = viewer.layers[pt.POINTS]
    points.add([[4, 10, 10]])  # a negative point on slice 4, the view is on slice 2
    before = lab.data.copy()
    assert w.prompts.segment() == 0
    assert "slice(s) [4], not on slice 2" in w.last_message
    shapes = w.prompts._layer(pt.PROMPTS, "shapes")
    shapes.add_rectangles(rect(2, 30, 30, 30, 50)[None])  # zero area
    assert w.prompts.segment() == 0 and "zero-area" in w.last_message
    shapes.data = []
    shapes.add_rectangles(rect(2, 200, 200, 220, 220)[None])  # outside the image
    assert w.prompts.segment() == 0 and "outside" in w.last_message
    assert np.array_equal(lab.data, before)
    # a valid box, then a positive point on this slice refines the mask
    shapes.data = []
    shapes.add_rectangles(rect(2, 10, 10, 40, 40)[None])
    assert w.prompts.segment() > 0
    w.prompts.point_mode(True)
    points.add([[2, 5, 5]])
    w.prompts.segment()
    assert w.prompts.controller.last.source == "box + points"
    w.prompts.clear()
    assert len(shapes.data) == 0 and [p[0] for p in points.data] == [4]


def test_no_image_layer_gives_a_message(rect, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((Z, H, W), np.int32), name="annotations")
    w = SynFoCWidget(viewer, backend="thread")
    w.prompts.controller.segmenter_factory = SlowTiny
    shapes = w.prompts._layer(pt.PROMPTS, "shapes")
    shapes.add_rectangles(rect(0, 10, 10, 40, 40)[None])
    assert w.prompts.segment() == 0 and "No image" in w.last_message
    assert not viewer.layers["annotations"].data.any()
    w.cleanup()


def test_fix_a_disagreement_region_with_one_click(dock):
    viewer, w, _image_layer, lab = dock
    fm = np.zeros((Z, 2, H, W), np.float32)
    un = np.zeros_like(fm)
    fm[:, 0], un[:, 0] = 1, 1
    fm[:, 0, 10:20, 10:20], fm[:, 1, 10:20, 10:20] = 0, 1
    w.controller.review.maps = review_maps(fm, un, rule="argmax")
    before = lab.data.copy()
    w.prompts.set_fix_mode(True)
    assert w.prompts._on_click in viewer.mouse_drag_callbacks
    w.prompt_panel.fix_source.setCurrentText("MedSAM")
    world = lab.data_to_world((3, 15, 15))
    assert w.prompts.fix_at(world) == 100
    assert (lab.data[3, 10:20, 10:20] == 1).all()
    changed = lab.data != before
    assert changed[3].sum() == 100 and changed.sum() == 100
    lab.undo()
    assert np.array_equal(lab.data, before)
    assert w.prompts.fix_at(lab.data_to_world((3, 50, 50))) == 0
    assert "No disagreement" in w.last_message
    w.prompt_panel.fix_source.setCurrentText("re-prompt (ensemble seed)")
    w.prompts.fix_at(world)  # the tiny model's re-prompt, seeded by the ensemble
    assert w.prompts.controller.base.source == "ensemble seed"
    w.prompts.set_fix_mode(False)
    assert w.prompts._on_click not in viewer.mouse_drag_callbacks


def test_propagation_cancel_accept_all_and_train(rect, dock, qtbot):
    viewer, w, _image_layer, lab = dock
    tool = w.prompts
    tool.controller.segmenter_factory = lambda: SlowTiny(0.4)
    shapes = tool._layer(pt.PROMPTS, "shapes")
    shapes.add_rectangles(np.stack([rect(0, 15, 15, 45, 45), rect(5, 20, 20, 50, 50)]))
    assert tool.propagate()
    assert w.prompt_panel.buttons["stop_propagation"].isEnabled()
    qtbot.waitUntil(lambda: len(tool.controller.propagation.proposals) >= 2, timeout=20000)
    assert tool.run_action("stop_propagation")
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=20000)
    props = viewer.layers[pt.PROPOSALS]
    done = sorted(tool.controller.propagation.proposals)
    assert tool.controller.propagation.outcome == "cancelled" and 2 <= len(done) < 6
    for z in range(Z):  # every proposal slice is whole or empty
        want = tool.controller.propagation.proposals[z] if z in done else np.zeros((H, W), bool)
        assert np.array_equal(props.data[z] > 0, want), z
    # a full run, accept one slice, then all and train
    tool.controller.segmenter_factory = SlowTiny
    tool.controller._segmenter = None
    assert tool.propagate()
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=30000)
    assert sorted(tool.controller.propagation.proposals) == list(range(Z))
    before = lab.data.copy()
    w.goto_slice(2)
    assert tool.accept_slice() > 0 and 2 not in tool.controller.propagation.proposals
    assert not props.data[2].any() and lab.data[2].any()
    lab.undo()
    assert np.array_equal(lab.data, before)
    assert tool.accept_all_and_train()
    assert w.is_training and tool.controller.propagation.proposals == {}
    assert set(w.labeled_slices()) >= {0, 1, 3, 4, 5}


def test_propose_from_the_models_fills_proposals_on_unlabelled_predicted_slices(dock, qtbot):
    """The button runs LiteMedSAM boxed by the ensemble's parts on the predicted slices nobody
    labelled; Accept all writes them as one undo step (issue 21)."""
    viewer, w, _image_layer, lab = dock
    tool = w.prompts
    assert not tool.run_action("from_models")  # no predictions yet: refused with a message
    assert "Train first" in w.last_message
    fm = np.zeros((Z, 2, H, W), np.float32)
    fm[:, 0] = 1
    fm[:, 0, 20:40, 20:40], fm[:, 1, 20:40, 20:40] = 0, 1
    w.controller.review.set_maps(review_maps(fm, fm.copy()), None, covered=[0, 1, 2, 3])
    assert tool.propose_from_models()
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=30000)
    # slices 1 and 4 are labelled, 4 and 5 hold no prediction; slice 1 is labelled without
    # class 1, so class 1's extent is 2..5 (the dock's labels reach the controller): slice 0
    # is left out, proposals on 2 and 3
    assert sorted(tool.controller.propagation.proposals) == [2, 3]
    assert tool.controller.propagation.skipped == [0]
    props = viewer.layers[pt.PROPOSALS]
    assert props.data[[2, 3]].any(axis=(1, 2)).all() and not props.data[[0, 1, 4, 5]].any()
    before = lab.data.copy()
    assert tool.accept_all() > 0
    assert lab.data[[2, 3]].any(axis=(1, 2)).all()
    assert np.array_equal(lab.data[[0, 1, 4, 5]], before[[0, 1, 4, 5]])
    lab.undo()
    assert np.array_equal(lab.data, before)
    tool.panel.extent_check.setChecked(False)  # the switch in the panel: slice 0 too
    assert tool.propose_from_models()
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=30000)
    assert sorted(tool.controller.propagation.proposals) == [0, 2, 3]


def test_propose_from_the_models_fills_between_labelled_slices_by_default(dock, qtbot):
    """Issue 21: with class 1 labelled on slices 1 and 4, "Propose from the models" fills 2 and
    3 with the interpolation (the same square) and asks the models on 0 and 5; the panel's
    "fill between labelled slices" box (ticked by default) switches it off."""
    from napari_synfoc.config import PROPOSALS_FILL_BETWEEN

    viewer, w, _image_layer, lab = dock
    tool = w.prompts
    lab.data[1, 30:40, 30:40] = 1  # slice 4 holds the same square
    fm = np.zeros((Z, 2, H, W), np.float32)
    fm[:, 0] = 1
    fm[:, 0, 10:20, 10:20], fm[:, 1, 10:20, 10:20] = 0, 1
    w.controller.review.set_maps(review_maps(fm, fm.copy()), None, covered=list(range(Z)))
    assert tool.panel.fill_between is PROPOSALS_FILL_BETWEEN is True
    assert tool.propose_from_models()
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=30000)
    prop = tool.controller.propagation
    assert sorted(prop.proposals) == [0, 2, 3, 5] and sorted(prop.interpolated) == [2, 3]
    layer = viewer.layers[pt.PROPOSALS]
    for z in (2, 3):
        assert np.array_equal(layer.data[z] > 0, lab.data[4] == 1), z
    tool.panel.fill_check.setChecked(False)
    assert tool.propose_from_models()
    qtbot.waitUntil(lambda: not tool.controller.propagation.running, timeout=30000)
    assert not tool.controller.propagation.fill_between and prop.interpolated == []
    assert sorted(prop.proposals) == [0, 2, 3, 5]


def test_fill_box_spreads_the_review_ranking_in_z(dock, qtbot):
    """Issue 21: on a volume (the "fill between" box ticked) the ranking weighs each slice by
    its distance in z to the nearest labelled slice; unticking it (a stack of separate images)
    ranks by the models alone, and the review table follows at once."""
    viewer, w, _image_layer, lab = dock
    lab.data[:] = 0
    lab.data[5, 30:40, 30:40] = 1  # only slice 5 labelled
    fm = np.zeros((Z, 2, H, W), np.float32)
    fm[:, 0] = 1
    un = fm.copy()
    for z in range(Z):  # disagreement grows with z: (z + 1) x 4 rows
        un[z, 0, : (z + 1) * 4], un[z, 1, : (z + 1) * 4] = 0.0, 1.0
    w.controller.review.set_maps(review_maps(fm, un), None, covered=list(range(Z)))
    assert w.prompts.panel.fill_between and w.controller.review.z_spread
    # disagreement 1..5 (x 4/64) times distance 5..1 (/ 5): 1, 1.6, 1.8, 1.6, 1 -> slice 2
    assert w.ranking()[0] == 2
    w.prompts.panel.fill_check.setChecked(False)
    assert not w.controller.review.z_spread
    assert w.controller.review.continuity is False  # nor the quality's volume rule
    assert w.ranking() == [4, 3, 2, 1, 0]
    assert w.review.ranked_slices()[0] == 4  # the table was ranked again
    w.prompts.panel.fill_check.setChecked(True)
    assert w.review.ranked_slices()[0] == 2
    assert w.controller.review.continuity is None  # a volume: the config's choice
