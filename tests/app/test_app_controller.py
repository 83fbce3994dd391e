"""The application controller and job runner headless: no napari, no Qt, no display.

Real engine, tiny random models, CPU, the synchronous job backend (a run is over when
``start_run`` returns).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_synfoc.app.controller import AppController, ControllerView, RunRequest
from napari_synfoc.app.jobs import JobRunner, training_source
from napari_synfoc.core.events import Step
from napari_synfoc.core.task import StackTask

Z, H, W = 6, 64, 64
TINY = {"profile": "tiny", "device": "cpu", "foundation": "litemedsam", "checkpoint": None}


class Recorder(ControllerView):
    """Keeps every notice; ``on_step`` runs on each Step (to act mid-run)."""

    def __init__(self):
        self.messages, self.statuses, self.bars, self.maps, self.steps = [], [], [], [], []
        self.finished_calls = 0
        self.on_step = None
        self.encodings = []
        self.on_maps = None

    def message(self, text, error=False, notify=True):
        self.messages.append((text, error))

    def status(self, text):
        self.statuses.append(text)

    def progress(self, low, high, value):
        self.bars.append((low, high, value))

    def encoding(self, done, total):
        self.encodings.append((done, total))

    def step(self, event):
        self.steps.append(event.iteration)
        if self.on_step is not None:
            self.on_step(event)

    def show_maps(self, maps, target):
        self.maps.append((maps, target))
        if self.on_maps is not None:
            self.on_maps()
        return False

    def finished(self):
        self.finished_calls += 1


def _controller():
    view = Recorder()
    return AppController(view, JobRunner("sync")), view


def _labels(gt, slices=(1, 4)):
    lab = np.zeros_like(gt)
    for z in slices:
        lab[z] = gt[z]
    return lab


def _task(img, lab, labeled):
    return StackTask(img, lab, list(labeled))


def _run(ctl, img, lab, labeled, iterations, predict_every=0, **kw):
    params = dict(TINY, iterations=iterations, overrides={})
    return ctl.start_run(
        RunRequest(_task(img, lab, labeled), params, predict_every=predict_every, **kw)
    )


@pytest.mark.slow
def test_whole_loop_headless(disc_stack, tmp_path):
    ctl, view = _controller()
    img, gt = disc_stack()
    lab = _labels(gt)
    assert _run(ctl, img, lab, [1, 4], 2, predict_every=1, target="stack", image_name="stack")
    assert not ctl.busy and not ctl.running
    assert ctl.run.outcome == "done", ctl.last_message
    assert ctl.run.event_counts["Step"] == 2 and ctl.run.event_counts["Started"] == 1
    assert view.steps == [0, 1] and view.finished_calls == 1
    # the bar is determinate from the start to the end: never a busy (0, 0) range
    assert view.bars[0] == (0, 1, 0)
    assert all(high > low for low, high, _ in view.bars)
    assert view.bars[-1] == (0, 2, 2)
    assert "Idle: training done" in view.statuses[-1]
    # predictions during and at the end of the run, shown for the target passed in
    assert ctl.review.updates >= 2 and view.maps[-1][1] == "stack"
    assert ctl.review.maps.fm_label.shape == (Z, H, W)
    assert ctl.model.checkpoint is not None and ctl.model.checkpoint.exists()
    assert ctl.model.labeled == [1, 4] and ctl.model.image_shape == (Z, H, W)

    # ranking: unlabelled slices only, by descending priority (disagreement x novelty)
    scores = ctl.review.priorities([1, 4])
    order = ctl.review.ranking([1, 4])
    assert set(order) == {0, 2, 3, 5}
    assert [scores[z] for z in order] == sorted((scores[z] for z in order), reverse=True)
    table, _ = ctl.review.table([1, 4])
    assert table[:4] == order and set(table[4:]) == {1, 4}
    assert ctl.review.next_uncertain([1, 4]) == order[0]
    assert ctl.review.next_uncertain([1, 4]) == order[1]
    assert "rank 2 of 4" in ctl.last_message

    # accept: the edit changes only that slice, and applying it gives the proposal
    z = order[1]
    edit = ctl.review.accept(lab, z, "unet")
    proposal = ctl.review.maps.unet_label[z]
    assert edit.slices == [z] and edit.size == int((lab[z] != proposal).sum())
    after = lab.copy()
    after[edit.edit.indices] = edit.edit.new_values
    np.testing.assert_array_equal(after[z], proposal)
    others = [i for i in range(Z) if i != z]
    np.testing.assert_array_equal(after[others], lab[others])
    assert (edit.empty_slices == [z]) == (not proposal.any())
    # keep_existing: the user's non-zero voxels win
    mine = lab.copy()
    mine[z, :4, :4] = 2
    kept = ctl.review.accept(mine, z, "ensemble", keep_existing=True)
    mine[kept.edit.indices] = kept.edit.new_values
    assert (mine[z, :4, :4] == 2).all()
    assert ctl.review.accept(np.zeros((Z, 32, 32), np.int32), z) is None
    assert "but the predictions are" in ctl.last_message and view.messages[-1][1] is True
    with pytest.raises(ValueError, match="unknown source"):
        ctl.review.accept(lab, z, "medsm")

    # session: save, then a fresh controller loads it and predicts another image
    session = ctl.sessions.save(tmp_path / "s.pt")
    other, _ = _controller()
    empty_labels = np.zeros((Z, H, W), np.int32)
    empty_labels[1] = gt[1]
    info, empty = other.sessions.load(session, empty_labels)
    assert info["labeled_slices"] == [1, 4] and empty == [4]  # slice 4 has no label here
    assert other.model.labeled == [1, 4] and other.model.checkpoint == session
    img2, _ = disc_stack(2, z=3)
    assert other.sessions.predict(img2, False, "cpu", target="new", name="new")
    assert other.run.outcome == "done", other.last_message
    assert other.review.maps.fm_label.shape == (3, H, W) and other.review.target == "new"

    # export: the six maps and the labels, with a geometry, read back equal
    from napari_synfoc.io.geometry import Geometry
    from napari_synfoc.io.readers import read_volume

    geom = Geometry((2.0, 0.5, 0.5), (10.0, 0.0, 0.0))
    files = other.sessions.export_predictions(tmp_path / "pred", geom)
    assert len(files) == 6
    arr, g = read_volume(tmp_path / "pred" / "consensus.nii.gz")
    np.testing.assert_array_equal(arr, other.review.maps.consensus)
    np.testing.assert_allclose(g.spacing, (2.0, 0.5, 0.5))
    out = ctl.sessions.export_labels(tmp_path / "labels.nii.gz", after, geom)
    np.testing.assert_array_equal(read_volume(out)[0], after)
    ctl.cleanup()
    other.cleanup()
    assert not ctl.run_root.exists()


def test_stop_mid_run_then_warm_start_keeps_the_architecture(disc_stack):
    ctl, view = _controller()
    img, gt = disc_stack()
    view.on_step = lambda event: ctl.stop()  # press Stop as the first step arrives
    assert _run(ctl, img, _labels(gt), [1, 4], 200)
    assert ctl.run.outcome == "cancelled", ctl.last_message
    assert ctl.run.event_counts["Cancelled"] == 1
    assert ctl.run.event_counts["Step"] <= 2  # within one iteration of the request
    assert not ctl.run.stop_flag.is_set()  # a fresh flag for the next run
    first = ctl.model.checkpoint
    assert first is not None and first.exists()
    view.on_step = None
    # a warm start keeps the checkpoint's architecture whatever the form says
    params = dict(TINY, iterations=1, overrides={"unet_size": 32, "tau": 0.9})
    task = _task(img, _labels(gt, (1, 2, 4)), [1, 2, 4])
    assert ctl.start_run(RunRequest(task, params, warm_start=True))
    assert ctl.run.outcome == "done", ctl.last_message
    assert ctl.model.init_checkpoint == first and ctl.model.checkpoint != first
    assert ctl.model.config["unet_size"] == 64 and ctl.model.config["tau"] == 0.9
    assert ctl.model.labeled == [1, 2, 4]


def test_refusals_and_engine_failure_are_messages(disc_stack):
    ctl, view = _controller()
    img, gt = disc_stack()
    assert ctl.review.next_uncertain([]) is None and "train first" in ctl.last_message
    assert ctl.review.accept(gt, 0) is None and "train first" in ctl.last_message
    assert not ctl.sessions.predict(img, False) and "No model yet" in ctl.last_message
    assert not ctl.stop()
    assert not _run(ctl, img, _labels(gt), [1, 4], 1, warm_start=True)
    assert "Nothing to warm-start from" in ctl.last_message and not ctl.busy
    with pytest.raises(ValueError, match="train first"):
        ctl.sessions.save("x.pt")
    # a second run while one runs is refused (asked from inside the running one)
    refused = []
    view.on_step = lambda e: refused.append(_run(ctl, img, _labels(gt), [1, 4], 1))
    assert _run(ctl, img, _labels(gt), [1, 4], 1)
    assert refused == [False] and ctl.run.outcome == "done"
    view.on_step = None
    # a ViT-B model without its checkpoint file: refused by the pre-flight check in the worker
    params = dict(TINY, profile="cpu-interactive", foundation="medsam-vitb", iterations=1)
    assert ctl.start_run(RunRequest(_task(img, _labels(gt), [1, 4]), params))
    assert ctl.run.outcome == "failed" and "checkpoint" in ctl.last_message.lower()
    assert view.messages[-1][1] is True and not ctl.running


def test_the_core_validator_refuses_before_a_run_starts(disc_stack):
    ctl, view = _controller()
    img, gt = disc_stack()
    params = dict(TINY, iterations=1, overrides={})
    bad = StackTask(img, np.zeros((Z, 32, 32), np.int32), [1])
    assert not ctl.start_run(
        RunRequest(bad, params, image_name="stack", labels_name="wrong shape")
    )
    assert "'wrong shape'" in ctl.last_message and "(6, 32, 32)" in ctl.last_message
    assert "(6, 64, 64)" in ctl.last_message and view.messages[-1][1] is True
    empty = StackTask(img, np.zeros((Z, H, W), np.int32), [])
    assert not ctl.start_run(RunRequest(empty, params, labels_name="empty"))
    assert "'empty' are empty" in ctl.last_message
    assert not ctl.start_run(RunRequest(StackTask(img, None, []), params))
    assert "Choose a Labels layer" in ctl.last_message
    assert not ctl.busy and ctl.run.count == 0 and ctl.run.event_counts == {}


def test_encoding_progress_and_partial_predictions(disc_stack, monkeypatch):
    """Frozen-encoder progress goes to its own determinate bar; partial predictions are
    assembled into stack-sized maps and only the predicted slices are ranked."""
    from napari_synfoc.core import interactive
    from napari_synfoc.core.events import Done, Encoding, Predictions, Started

    seen = {}
    k = 2
    part = np.zeros((2, k, H, W), np.float32)
    part[:, 1] = 1.0  # both models: foreground everywhere on slices 0 and 2
    part[1, 0, :, : W // 2], part[1, 1, :, : W // 2] = 1.0, 0.0
    full = np.full((3, k, H, W), 0.5, np.float32)

    def fake_train(task, cfg, **kw):
        seen.update(kw)
        yield Started("cpu", "fp32", 1, 2, 2)
        yield Encoding(1, 3)
        yield Encoding(2, 3)
        yield Predictions(0, part, part[::-1].copy(), slices=(0, 2), n_slices=3)
        yield Encoding(3, 3)
        yield Step(0, 2, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.1)
        yield Predictions(1, full, full)
        yield Done(2, None, 0.1)

    monkeypatch.setattr(interactive, "train_on_stack", fake_train)
    ctl, view = _controller()
    rankings = []
    view.on_maps = lambda: rankings.append(sorted(ctl.review.ranking([])))
    img, gt = disc_stack(z=3)
    task = StackTask(img, _labels(gt, (1,)), [1])
    assert ctl.start_run(RunRequest(task, dict(TINY, iterations=2), view_slice=2))
    assert ctl.run.outcome == "done", ctl.last_message
    assert seen["view_slice"] == 2
    assert view.encodings[:3] == [(1, 3), (2, 3), (3, 3)] and view.encodings[-1] == (0, 0)
    assert any("Encoding slices" in s and "(2/3)" in s for s in view.statuses)
    assert all(high > low for low, high, _ in view.bars)
    first = view.maps[0][0]
    assert first.fm_label.shape == (3, H, W)
    # slice 1 was not predicted yet: background in both maps, and not ranked
    assert not first.fm_label[1].any() and not first.unet_label[1].any()
    assert (first.fm_label[0] == 1).all() and (first.unet_label[2][:, W // 2 :] == 1).all()
    assert rankings[0] == [0, 2]  # unpredicted slice 1 is not offered for review
    assert rankings[1] == [0, 1, 2] and ctl.review.covered is None  # then the whole stack
    assert sorted(ctl.review.ranking([1])) == [0, 2]


def test_sync_runner_drains_any_event_generator_and_reports_errors():
    runner = JobRunner("sync")
    seen, done = [], []

    def events():
        assert runner.busy
        yield from (Step(i, 3, {}, 0.5, 0.1, 1.0, 0.1) for i in range(3))

    runner.start_events(events(), seen.append, on_finished=lambda: done.append(1))
    assert [e.iteration for e in seen] == [0, 1, 2] and done == [1] and not runner.busy

    def broken():
        yield 1
        raise RuntimeError("boom")

    errors, seen = [], []
    runner.start_events(broken(), seen.append, errors.append, lambda: done.append(2))
    assert seen == [1] and str(errors[0]) == "boom" and done == [1, 2] and not runner.busy
    results = []
    runner.start_call(lambda: 42, results.append)
    assert results == [42]

    def nested():
        with pytest.raises(RuntimeError, match="already running"):
            runner.start_call(lambda: 0, results.append)
        yield 0

    runner.start_events(nested(), seen.append)
    with pytest.raises(ValueError, match="unknown job backend"):
        JobRunner("gpu")


def test_training_sources_per_backend():
    from napari_synfoc.core import interactive

    assert training_source("thread") is interactive.train_on_stack
    assert training_source("sync") is interactive.train_on_stack
    runner = pytest.importorskip("napari_synfoc.core.process_runner")
    assert training_source("process") is runner.train_in_child
    assert JobRunner("process").synchronous is False


def test_controller_imports_no_qt_napari_or_torch():
    code = (
        "import sys\n"
        "import napari_synfoc.app.controller, napari_synfoc.app.jobs\n"
        "import napari_synfoc.app.worker, napari_synfoc.app.slices\n"
        "print(sorted(m for m in ('qtpy', 'PyQt5', 'PySide2', 'napari', 'torch') "
        "if m in sys.modules))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "DISPLAY"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_seconds_per_iteration_is_the_median_after_warm_up(disc_stack, monkeypatch):
    """The dock's time estimate uses the last run's median step time, its first two steps
    (warm-up) left out."""
    from napari_synfoc.core import interactive
    from napari_synfoc.core.events import Done, Started

    secs = [9.0, 5.0, 1.0, 3.0, 2.0]

    def fake_train(task, cfg, **kw):
        yield Started("cpu", "fp32", 1, 2, len(secs))
        for i, s in enumerate(secs):
            yield Step(i, len(secs), {"loss": 1.0}, 0.5, 0.1, 1.0, s)
        yield Done(len(secs), None, sum(secs))

    monkeypatch.setattr(interactive, "train_on_stack", fake_train)
    ctl, _ = _controller()
    assert ctl.run.seconds_per_iteration() is None
    img, gt = disc_stack(z=3)
    assert ctl.start_run(
        RunRequest(StackTask(img, _labels(gt, (1,)), [1]), dict(TINY, iterations=5))
    )
    assert ctl.run.outcome == "done", ctl.last_message
    assert ctl.run.seconds_per_iteration() == 2.0  # median of 1, 3, 2


def test_review_ranking_prefers_slices_unlike_the_labelled_ones(disc_stack):
    """Issue 12: the ranking no longer fills its top with a labelled slice's look-alike
    neighbours; the table's score is that priority and a run hands the features over."""
    from napari_synfoc.core.review import review_maps

    ctl, _ = _controller()
    z = 4
    fm = np.zeros((z, 2, 8, 8), np.float32)
    fm[:, 0] = 1.0
    un = fm.copy()
    for s_, rows in ((1, 4), (2, 3), (3, 2)):  # disagreement 4/8 > 3/8 > 2/8
        un[s_, 0, :rows], un[s_, 1, :rows] = 0.0, 1.0
    feats = np.array([[0.0], [0.1], [1.0], [2.0]])  # slice 1 looks like labelled slice 0
    ctl.review.set_maps(review_maps(fm, un), None, features=feats)
    assert ctl.review.acquisition == "diverse" and ctl.review.z_spread
    # on a volume the distance in z to slice 0 (1, 2, 3 -> 1/3, 2/3, 1) weighs in as well
    np.testing.assert_allclose(ctl.review.priorities([0]), [0.0, 0.025 / 3, 0.125, 0.25])
    ctl.review.z_spread = False  # a stack of separate images: its order means nothing
    # novelty d / max d = 0.05, 0.5, 1 -> priorities 0.5 x 0.05, 0.375 x 0.5, 0.25 x 1
    np.testing.assert_allclose(ctl.review.priorities([0]), [0.0, 0.025, 0.1875, 0.25])
    assert ctl.review.ranking([0]) == [3, 2, 1]
    order, scores = ctl.review.table([0])
    assert order == [3, 2, 1, 0] and scores[3] == pytest.approx(0.25)
    assert ctl.review.next_uncertain([0]) == 3 and "priority 0.2500" in ctl.last_message
    ctl.review.acquisition = "disagreement"  # the plain rule is still a switch away
    assert ctl.review.ranking([0]) == [1, 2, 3]
    # new maps of the same stack without features keep the features
    ctl.review.acquisition = "diverse"
    ctl.review.set_maps(review_maps(fm, un), None)
    assert ctl.review.ranking([0]) == [3, 2, 1]
    # a training run computes the stack's features in the worker and passes them on
    ctl, view = _controller()
    img, gt = disc_stack(z=4)
    assert _run(ctl, img, _labels(gt, (0, 2)), (0, 2), 3)
    assert ctl.run.outcome == "done", ctl.last_message
    assert ctl.review.slice_features is not None and ctl.review.slice_features.shape[0] == 4


def test_review_quality_follows_its_continuity_switch():
    """Issue 21: ``review.continuity`` reaches the estimate (None: the config's), and so what
    "Accept all slices estimated above q" takes: class 1 labelled on 0 and 4, slice 6 labelled
    without it; the models predict it on 1, 3 and 7, and 7 lies beyond its extent."""
    from napari_synfoc.core import quality
    from napari_synfoc.core.review import review_maps

    ctl, _ = _controller()
    z = 8
    fm = np.zeros((z, 2, 4, 4), np.float32)
    fm[:, 0] = 1.0
    fm[[1, 3, 7], 0, 1:3, 1:3], fm[[1, 3, 7], 1, 1:3, 1:3] = 0.0, 1.0
    ctl.review.set_maps(review_maps(fm, fm.copy()), None)
    labels = np.zeros((z, 4, 4), np.uint8)
    labels[[0, 4], 1:3, 1:3] = 1
    labels[6, 0, 0] = 2
    assert ctl.review.continuity is None
    default = ctl.review.quality(labels, [0, 4, 6]).predicted
    ctl.review.continuity = False
    off = ctl.review.quality(labels, [0, 4, 6]).predicted
    ctl.review.continuity = True
    on = ctl.review.quality(labels, [0, 4, 6]).predicted
    np.testing.assert_array_equal(default, on if quality.CONTINUITY else off)
    assert off[7] > 0.5 and on[7] == 0.0 and on[2] == 0.0
    se = ctl.review.accept_above(labels.copy(), 0.5, [0, 4, 6])
    assert 7 not in se.slices and {1, 3} <= set(se.slices)
    ctl.review.continuity = False
    assert 7 in ctl.review.accept_above(labels.copy(), 0.5, [0, 4, 6]).slices


def test_review_set_volume_drives_both_volume_rules(monkeypatch):
    """The fill box's "volume" sets the z spread (behind RANK_Z_SPREAD) and the continuity rule
    (None: the config's); a stack turns both off."""
    from napari_synfoc.app import review as review_mod

    ctl, _ = _controller()
    ctl.review.set_volume(False)
    assert ctl.review.z_spread is False and ctl.review.continuity is False
    ctl.review.set_volume(True)
    assert ctl.review.z_spread is True and ctl.review.continuity is None
    monkeypatch.setattr(review_mod, "RANK_Z_SPREAD", False)  # the switch off: no spread
    ctl.review.set_volume(True)
    assert ctl.review.z_spread is False and ctl.review.continuity is None
