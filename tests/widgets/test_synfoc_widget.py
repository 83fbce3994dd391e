"""The SynFoC dock widget end to end: real engine, tiny random models, CPU, real threads.

Kept short: every training run is a few iterations of the "tiny" profile on 6 slices of 64x64.
"""

import numpy as np
import pytest

from napari_synfoc.app.slices import MARKED_KEY
from napari_synfoc.core.review import labeled_slices
from napari_synfoc.widgets import overlays
from napari_synfoc.widgets.dock import SynFoCWidget

pytestmark = pytest.mark.gui

Z, H, W = 6, 64, 64


@pytest.fixture
def viewer_widget(
    disc_stack, add_partly_labelled, use_tiny_cpu, close_dock, make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    img, gt = disc_stack()
    image, lab = add_partly_labelled(
        viewer, img, gt, scale=(2.0, 0.5, 0.5), translate=(10.0, 0, 0)
    )
    dock, widget = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    assert isinstance(widget, SynFoCWidget)
    use_tiny_cpu(widget, predict_every=1)
    yield viewer, widget, image, lab, gt
    close_dock(widget)


def _train_and_wait(widget, qtbot, **kw):
    assert widget.train(**kw) is True
    assert widget.is_training
    assert widget.wait(timeout=120)
    assert not widget.is_training


def test_whole_loop(viewer_widget, qtbot):
    viewer, widget, image, lab, gt = viewer_widget
    assert widget.image_combo.value is image and widget.labels_combo.value is lab
    assert widget.labeled_slices() == [1, 4]

    # train in the background; returns at once
    _train_and_wait(widget, qtbot, iterations=2)
    assert widget.outcome == "done", widget.last_message
    assert widget.event_counts.get("Step") == 2
    # predictions after iteration 1 and at the end: the overlays were refreshed during training
    assert widget.prediction_updates >= 2
    for name in overlays.OVERLAY_NAMES:
        layer = viewer.layers[name]
        assert layer.data.shape == (Z, H, W), name
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
    for name in overlays.LABEL_OVERLAYS:
        assert type(viewer.layers[name]).__name__ == "Labels"
    heat = viewer.layers[overlays.HEAT].data
    assert heat.min() >= 0 and heat.max() <= 1
    # built in steps, visibility as specified, all just below the user's labels, which stay the
    # active layer; a Labels overlay gets its painting tools when the user activates it
    assert not overlays.unfinished_layers(viewer, tools=False)
    assert viewer.layers[overlays.HEAT].visible and viewer.layers[overlays.CONSENSUS].visible
    assert not viewer.layers[overlays.MEDSAM].visible
    n = len(overlays.OVERLAY_NAMES)
    assert [layer.name for layer in viewer.layers[-1 - n : -1]] == list(overlays.STACK_ORDER)
    assert viewer.layers[-1] is lab and viewer.layers.selection.active is lab
    consensus = viewer.layers[overlays.CONSENSUS]
    assert not any(consensus._overlays[k].visible for k in overlays.TOOL_OVERLAYS)
    viewer.layers.selection.active = consensus
    assert all(consensus._overlays[k].visible for k in overlays.TOOL_OVERLAYS)
    viewer.layers.selection.active = lab
    widget.overlay_builder.close()  # the dock closing finishes the rest
    for name in overlays.LABEL_OVERLAYS:
        assert all(viewer.layers[name]._overlays[k].visible for k in overlays.TOOL_OVERLAYS)
    # the user's labels are untouched by training
    assert set(labeled_slices(lab.data)) == {1, 4}
    np.testing.assert_array_equal(lab.data[1], gt[1])

    # ranking: unlabelled slices first, by descending priority (disagreement x novelty)
    scores = widget.controller.review.priorities([1, 4])
    ranking = widget.ranking()
    assert set(ranking) == {0, 2, 3, 5}
    assert [scores[z] for z in ranking] == sorted([scores[z] for z in ranking], reverse=True)
    table = widget.review.ranked_slices()
    assert table[:4] == ranking and set(table[4:]) == {1, 4}

    # next uncertain (button and Shift-N) jumps to the top-ranked unlabelled slice, then the next
    widget.review.next_btn.click()
    assert widget.current_slice() == ranking[0]
    from napari.utils.key_bindings import coerce_keybinding

    viewer.keymap[coerce_keybinding("Shift-N")](viewer)
    assert widget.current_slice() == ranking[1]
    # the dims point is in world coordinates (scale 2, translate 10)
    assert viewer.dims.point[0] == pytest.approx(10.0 + 2.0 * ranking[1])

    # accept the U-Net prediction for this slice: writes only that slice, undo restores it
    z = ranking[1]
    before = np.array(lab.data, copy=True)
    proposal = widget.controller.review.maps.unet_label[z]
    changed = widget.accept("unet")
    assert changed == int((before[z] != proposal).sum())
    np.testing.assert_array_equal(lab.data[z], proposal)
    others = [i for i in range(Z) if i != z]
    np.testing.assert_array_equal(lab.data[others], before[others])
    assert z in widget.labeled_slices()
    assert z not in widget.ranking()
    lab.undo()
    np.testing.assert_array_equal(lab.data, before)
    # accept again for the retrain
    widget.accept("ensemble", slice_index=z)
    np.testing.assert_array_equal(lab.data[z], widget.controller.review.maps.ensemble_label[z])
    expected_labeled = widget.labeled_slices()
    assert z in expected_labeled

    # retrain warm-starts from the latest checkpoint with the corrections
    first_ckpt = widget.controller.model.checkpoint
    assert first_ckpt is not None and first_ckpt.exists()
    assert widget.retrain_btn.isEnabled()
    _train_and_wait(widget, qtbot, iterations=1, warm_start=True)
    assert widget.outcome == "done", widget.last_message
    assert widget.controller.model.labeled == expected_labeled
    assert widget.controller.model.checkpoint != first_ckpt
    assert widget.last_init_checkpoint == first_ckpt
    assert viewer.layers[overlays.CONSENSUS].data.shape == (Z, H, W)


def test_stop_mid_training_and_edits_go_to_the_next_run(viewer_widget, qtbot):
    """Stop takes effect within one iteration. Counted in the GUI, that holds for the thread
    backend; with the process backend, Steps the child finished before it read the stop message
    can still be in the pipe (its own stop escalation is tested in tests/core)."""
    from napari_synfoc.widgets.qt_jobs import qt_job_runner

    viewer, widget, image, lab, gt = viewer_widget
    widget.controller.jobs = widget.controller.sessions.jobs = qt_job_runner("thread")
    widget.predict_every_spin.setValue(0)
    assert widget.train(iterations=500)
    assert widget.is_training and widget.stop_btn.isEnabled() and not widget.train_btn.isEnabled()
    # paint slice 2 while training runs: the running task keeps its snapshot of the labels
    idx = np.nonzero(gt[2])
    lab.data_setitem((np.full(idx[0].shape, 2), *idx), 1)
    qtbot.waitUntil(lambda: widget.event_counts.get("Step", 0) >= 1, timeout=60_000)
    widget.stop()
    assert widget.stop_btn.text() == "Stopping…"
    assert not widget.stop_btn.isEnabled()
    steps_at_stop = widget.event_counts.get("Step", 0)
    assert widget.wait(timeout=60)
    assert widget.outcome == "cancelled", widget.last_message
    # takes effect within one iteration (one may already be running when Stop is pressed)
    assert widget.event_counts.get("Step", 0) <= steps_at_stop + 1
    assert widget.event_counts.get("Cancelled") == 1
    assert widget.stop_btn.text() == "Stop"
    assert widget.train_btn.isEnabled() and widget.retrain_btn.isEnabled()
    assert not widget.controller.busy
    # the snapshot taken at start had slices 1 and 4; the new stroke is kept for the next run
    assert widget.controller.model.labeled == [1, 4]
    assert widget.labeled_slices() == [1, 2, 4]
    np.testing.assert_array_equal(lab.data[2], gt[2])
    assert "Retrain to use them" in widget.last_message


def test_bad_selection_messages(viewer_widget, qtbot):
    viewer, widget, image, lab, gt = viewer_widget
    # labels of another shape
    other = viewer.add_labels(np.zeros((Z, 32, 32), np.int32), name="wrong shape")
    assert widget.train(image_layer=image, labels_layer=other) is False
    assert not widget.is_training
    assert "shape (6, 32, 32)" in widget.message.text()
    assert "(6, 64, 64)" in widget.message.text()
    # empty labels
    empty = viewer.add_labels(np.zeros((Z, H, W), np.int32), name="empty")
    assert widget.train(image_layer=image, labels_layer=empty) is False
    assert "'empty' are empty" in widget.message.text()
    # no labels layer at all
    for layer in [ly for ly in viewer.layers if type(ly).__name__ == "Labels"]:
        viewer.layers.remove(layer)
    assert widget.labels_combo.value is None
    assert widget.train() is False
    assert "Choose a Labels layer" in widget.message.text()
    # review actions before any prediction say so instead of crashing
    assert widget.next_uncertain() is None
    assert "train first" in widget.message.text()


def test_mark_background_slice_and_engine_failure_message(viewer_widget, qtbot):
    viewer, widget, image, lab, gt = viewer_widget
    viewer.dims.set_point(0, 10.0 + 2.0 * 3)
    assert widget.current_slice() == 3
    widget.mark_btn.click()
    assert lab.metadata[MARKED_KEY] == [3]
    assert widget.labeled_slices() == [1, 3, 4]
    assert widget.labeled_list.count() == 3
    widget.mark_current_slice(3)  # toggles off
    assert widget.labeled_slices() == [1, 4]
    # a foundation model that needs a checkpoint: the pre-flight check's message is shown
    widget.profile_combo.setCurrentText("cpu-interactive")
    widget.foundation_combo.setCurrentIndex(1)  # MedSAM ViT-B, no checkpoint path
    assert widget.train(iterations=1)
    assert widget.wait(timeout=60)
    assert widget.outcome == "failed"
    assert "checkpoint" in widget.message.text().lower()
    assert not widget.is_training


def test_2d_rgb_image_synchronous(disc_stack, make_napari_viewer, qtbot, monkeypatch):
    """A 2D RGB image with an extra unlabelled layer, trained with SYNFOC_NOTHREADS=1."""
    monkeypatch.setenv("SYNFOC_NOTHREADS", "1")
    viewer = make_napari_viewer()
    img, gt = disc_stack(1)
    rgb = np.repeat(img[0][..., None], 3, axis=-1)
    image = viewer.add_image(rgb, name="rgb", rgb=True)
    lab = viewer.add_labels(gt[0].copy(), name="lab")
    widget = SynFoCWidget(viewer)
    qtbot.addWidget(widget)
    widget.profile_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    extra = viewer.add_image(img[1:4], name="other scanner")
    widget.extra_list.item(0).setSelected(True)
    assert widget.extra_list.item(0).text() == "other scanner"
    assert widget.train(image_layer=image, labels_layer=lab, iterations=1)
    # synchronous: the run is over when train() returns
    assert not widget.is_training and not widget.controller.busy
    assert widget.outcome == "done", widget.last_message
    assert widget.event_counts.get("Started") == 1
    for name in overlays.OVERLAY_NAMES:
        assert viewer.layers[name].data.shape == (H, W)
    # built at once in the GUI thread, so the generator was told at once not to wait for them
    # (else it would have blocked the GUI thread for OVERLAY_WAIT_S)
    assert widget.controller.run.overlays_ready.is_set()
    assert extra.data.shape == (3, H, W)
    n = widget.accept("medsam")
    np.testing.assert_array_equal(lab.data, widget.controller.review.maps.fm_label[0])
    assert n >= 0
    widget.cleanup()


def test_session_predict_and_export(disc_stack, viewer_widget, qtbot, tmp_path):
    viewer, widget, image, lab, gt = viewer_widget
    widget.predict_every_spin.setValue(0)
    _train_and_wait(widget, qtbot, iterations=1)
    assert widget.outcome == "done", widget.last_message
    session = widget.sessions.save(tmp_path / "session.pt")
    assert session.exists()

    # a fresh widget loads the session and predicts another image with it
    img2, _ = disc_stack(2)
    new = viewer.add_image(img2[:3], name="new image")
    viewer.layers.remove(overlays.CONSENSUS)
    w2 = SynFoCWidget(viewer)
    qtbot.addWidget(w2)
    info = w2.sessions.load(session)
    assert info["labeled_slices"] == [1, 4]
    assert info["image_shape"] == [Z, H, W]
    assert w2.sessions.predict(new)
    assert w2.wait(timeout=120)
    assert viewer.layers[overlays.CONSENSUS].data.shape == (3, H, W)
    assert viewer.layers[overlays.MEDSAM].data.shape == (3, H, W)

    # export: labels and predictions with the image geometry
    from napari_synfoc.io.readers import read_volume

    out = widget.sessions.export_labels(tmp_path / "labels.nii.gz")
    arr, geom = read_volume(out)
    np.testing.assert_array_equal(arr, lab.data)
    np.testing.assert_allclose(geom.spacing, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(geom.origin, (10.0, 0.0, 0.0))
    files = w2.sessions.export_predictions(tmp_path / "pred")
    assert len(files) == 6
    arr, geom = read_volume(tmp_path / "pred" / "consensus.nii.gz")
    np.testing.assert_array_equal(arr, viewer.layers[overlays.CONSENSUS].data)
    w2.cleanup()


def _maps(z=Z, seed=0):
    from napari_synfoc.core.review import review_maps

    rng = np.random.default_rng(seed)
    p = rng.random((z, 2, H, W)).astype(np.float32)
    q = rng.random((z, 2, H, W)).astype(np.float32)
    return review_maps(p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True))


def _describe(layer):
    """What a user sees of an overlay layer (independent of how it was added)."""
    out = {
        "type": type(layer).__name__, "visible": layer.visible, "opacity": layer.opacity,
        "blending": layer.blending, "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "tools": {k: o.visible for k, o in layer._overlays.items()},
    }  # fmt: skip
    if out["type"] == "Image":
        out.update(colormap=layer.colormap.name, contrast_limits=tuple(layer.contrast_limits))
    else:
        out["colors"] = [tuple(np.round(layer.colormap.map(v), 4)) for v in (0, 1, 2)]
    return out


def test_overlays_built_in_steps_end_as_a_direct_add(disc_stack, make_napari_viewer):
    """One layer per call with ``max_new=1``; ``defer`` hides the costly parts until
    ``finish_layer``; the result matches the layers made in one go, and the active layer stays."""
    maps = _maps()
    built = {}
    for stepwise in (False, True):
        viewer = make_napari_viewer()
        img, _ = disc_stack()
        image = viewer.add_image(img, name="stack", scale=(2.0, 0.5, 0.5))
        lab = viewer.add_labels(
            np.zeros((Z, H, W), np.int32), name="annotations", scale=(2.0, 0.5, 0.5)
        )
        assert viewer.layers.selection.active is lab
        if stepwise:
            missing = overlays.update_overlays(viewer, maps, image, below=lab, max_new=0)
            assert sorted(missing) == sorted(overlays.OVERLAY_NAMES) and len(viewer.layers) == 2
            steps = 0
            while missing:
                missing = overlays.update_overlays(
                    viewer, maps, image, below=lab, names=missing, max_new=1, defer=True
                )
                steps += 1
                assert len(viewer.layers) == 2 + steps
            unfinished = overlays.unfinished_layers(viewer)
            assert len(unfinished) == len(overlays.OVERLAY_NAMES)
            assert not viewer.layers[overlays.HEAT].visible  # hidden until finished
            layer = viewer.layers[overlays.CONSENSUS]
            assert not any(layer._overlays[k].visible for k in overlays.TOOL_OVERLAYS)
            for layer in unfinished:
                assert overlays.finish_layer(layer)
                assert not overlays.finish_layer(layer)
            assert not overlays.unfinished_layers(viewer)
        else:
            assert overlays.update_overlays(viewer, maps, image, below=lab) == []
        assert viewer.layers.selection.active is lab
        # the stack, bottom to top, as when the layers were added in that order below the labels
        assert [layer.name for layer in viewer.layers] == [
            "stack", overlays.HEAT, overlays.MEDSAM, overlays.UNET, overlays.CONSENSUS,
            overlays.DIVERGENCE, "annotations",
        ]  # fmt: skip
        built[stepwise] = {
            layer.name: (viewer.layers.index(layer), _describe(layer), np.asarray(layer.data))
            for layer in viewer.layers
            if layer.name in overlays.OVERLAY_NAMES
        }
    assert built[True].keys() == built[False].keys() == set(overlays.OVERLAY_NAMES)
    for name, (index, desc, data) in built[False].items():
        assert built[True][name][:2] == (index, desc), name
        np.testing.assert_array_equal(built[True][name][2], data)
    assert built[False][overlays.DIVERGENCE][1]["colors"][1] == (1.0, 0.0, 1.0, 1.0)


def test_overlays_go_in_without_a_selection_event(disc_stack, make_napari_viewer):
    """Inserting the overlays tells no listener of the selection (no panel swap in and out), and
    leaves the user's selection as it was: one active layer, or several selected ones."""
    maps = _maps()
    viewer = make_napari_viewer()
    img, _ = disc_stack()
    image = viewer.add_image(img, name="stack")
    lab = viewer.add_labels(np.zeros((Z, H, W), np.int32), name="annotations")
    seen = []
    viewer.layers.selection.events.connect(lambda e: seen.append(e.type))
    assert overlays.update_overlays(viewer, maps, image, below=lab) == []
    assert seen == []
    assert viewer.layers.selection.active is lab and set(viewer.layers.selection) == {lab}
    # several layers selected: the same set comes back, and still no event
    for name in overlays.OVERLAY_NAMES:
        viewer.layers.remove(name)
    viewer.layers.selection.update({image, lab})
    seen.clear()
    assert overlays.update_overlays(viewer, maps, image, below=lab, max_new=2, defer=True)
    assert seen == [] and set(viewer.layers.selection) == {image, lab}


def test_training_pauses_after_predictions_until_the_overlays_exist(disc_stack, monkeypatch):
    """The worker generator waits (bounded) after each predictions update until the GUI says
    the overlays show it; the GUI's answer or a stop request lets it go on at once."""
    import threading
    import time

    from napari_synfoc.app import task_builder
    from napari_synfoc.app import worker as sw
    from napari_synfoc.app.run_request import RunRequest
    from napari_synfoc.core import interactive
    from napari_synfoc.core.events import Predictions, Step

    prob = np.full((2, 2, 8, 8), 0.5, np.float32)

    def fake_train(task, cfg, **kw):
        yield Predictions(0, prob, prob)
        yield Step(0, 1, {}, 0.5, 0.1, 1.0, 0.1)

    monkeypatch.setattr(interactive, "train_on_stack", fake_train)
    monkeypatch.setattr(task_builder, "build_config", lambda **kw: None)
    monkeypatch.setattr(sw, "OVERLAY_WAIT_S", 0.3)

    from napari_synfoc.core.task import StackTask

    img, gt = disc_stack()
    task = StackTask(img, gt, [1])  # passes the worker's full check

    def run(ready, stop, shown=False):
        gen = sw.training_events(RunRequest(task, {}, predict_every=1), stop, overlays_ready=ready)
        assert type(next(gen)).__name__ == "Progress"  # the start stage (issue 23 item 15)
        assert type(next(gen)).__name__ == "ReviewUpdate"
        if shown:  # the view put these maps on screen
            ready.set()
        t = time.perf_counter()
        assert isinstance(next(gen), Step)
        return time.perf_counter() - t

    assert run(threading.Event(), threading.Event()) >= 0.29  # nobody answers: the bound
    ready = threading.Event()
    ready.set()  # set for earlier maps: each new update waits for its own
    assert run(ready, threading.Event()) >= 0.29
    assert run(threading.Event(), threading.Event(), shown=True) < 0.2
    stop = threading.Event()
    stop.set()
    assert run(threading.Event(), stop) < 0.2
    ready = threading.Event()
    threading.Timer(0.1, ready.set).start()
    assert 0.05 < run(ready, threading.Event()) < 0.28


def test_widget_import_keeps_torch_out():
    """napari starts fast: importing the widget module must not import torch."""
    import subprocess
    import sys

    code = (
        "import sys, napari_synfoc.widgets.dock; "
        "print('torch' in sys.modules, 'segment_anything' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_loss_plot_blits_and_redraws_only_when_axes_change(qtbot):
    from napari_synfoc.widgets.loss_plot import PLOT_KEYS, LossPlot

    plot = LossPlot(redraw_ms=10_000)  # drive redraw() by hand
    qtbot.addWidget(plot)
    plot.show()
    plot.set_run(0, 100)
    plot.add_point(
        1, {"loss": 2.0, "sup_unet": 1.0, "ce_unet": 0.5, "consensus_fraction": 0.3}, 0.4
    )
    plot.redraw()
    assert plot.full_draws == 1 and plot.blits == 0
    assert set(plot.series) == {"loss", "sup_unet"} <= set(PLOT_KEYS)
    for it in range(2, 6):  # inside the limits: cheap blits only
        plot.add_point(it, {"loss": 2.0 - 0.1 * it, "sup_unet": 1.0}, 0.5)
        plot.redraw()
    assert plot.full_draws == 1 and plot.blits == 4
    plot.redraw()  # nothing new: no drawing at all
    assert plot.blits == 4
    plot.add_point(6, {"loss": 500.0, "sup_unet": 1.0}, 0.5)  # outside the y range
    plot.redraw()
    assert plot.full_draws == 2
    assert plot.ax.get_ylim()[1] >= 500
    assert plot.alpha[-1] == 0.5 and plot.iterations == [1, 2, 3, 4, 5, 6]
