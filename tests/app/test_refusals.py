"""Issue 23 (dock side), headless: every refusal the controller can give, checked before any
training process starts, in the user's words (items 5, 6, 7, 8, 9, 11, 13, 15).

The synchronous job backend; training itself is a fake event generator where the run's content
does not matter (``interactive.train_on_stack`` replaced), so no model is built.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from napari_synfoc.app.controller import AppController, ControllerView, RunRequest
from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.app.messages import Refusal, message_problems
from napari_synfoc.core.events import Done, Progress, Started, Step
from napari_synfoc.core.task import StackTask

Z, H, W = 6, 64, 64
TINY = {"profile": "tiny", "device": "cpu", "foundation": "litemedsam", "checkpoint": None}
APP = Path(__file__).resolve().parents[2] / "napari_synfoc" / "app"


class Recorder(ControllerView):
    def __init__(self):
        self.messages, self.statuses = [], []

    def message(self, text, error=False, notify=True):
        self.messages.append((text, error))

    def status(self, text):
        self.statuses.append(text)


@pytest.fixture
def fake_training(monkeypatch):
    """``train_on_stack`` replaced by two steps; ``calls`` counts the runs that started."""
    from napari_synfoc.core import interactive

    calls = []

    def fake(task, cfg, **kw):
        calls.append(task)
        yield Started("cpu", "fp32", 1, 2, 2)
        yield Step(0, 2, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.1)
        yield Step(1, 2, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.1)
        yield Done(2, None, 0.1)

    monkeypatch.setattr(interactive, "train_on_stack", fake)
    return calls


def _controller():
    view = Recorder()
    return AppController(view, JobRunner("sync")), view


def _labels(gt, slices=(1, 4), value=None):
    lab = np.zeros_like(gt)
    for z in slices:
        lab[z] = gt[z] if value is None else (gt[z] > 0) * value
    return lab


def _all_messages(view):
    return [text for text, _ in view.messages]


# ----------------------------------------------------------------------------- item 13
def test_retrain_before_any_model_says_nothing_to_warm_start_not_empty_labels(disc_stack):
    ctl, view = _controller()
    img, gt = disc_stack()
    empty = StackTask(img, np.zeros_like(gt), [])
    assert not ctl.start_run(RunRequest(empty, dict(TINY), warm_start=True))
    assert "nothing to warm-start from yet" in ctl.last_message.lower(), ctl.last_message
    assert "empty" not in ctl.last_message


def _said_literals() -> list[tuple[str, str]]:
    """Every string (f-strings with ``{}`` for their fields) passed to say / message / status
    or to an exception in app/, with where it is."""
    sinks = {"say", "message", "status", "Refusal", "ValueError", "RuntimeError"}
    out = []
    for path in sorted(APP.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name not in sinks or not node.args:
                continue
            for arg in ast.walk(node.args[0]):
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    out.append((arg.value, f"{path.name}:{node.lineno}"))
                elif isinstance(arg, ast.JoinedStr):
                    text = "".join(
                        v.value if isinstance(v, ast.Constant) else "{}" for v in arg.values
                    )
                    out.append((text, f"{path.name}:{node.lineno}"))
    return out


def test_every_message_the_app_can_say_keeps_the_rules():
    said = _said_literals()
    assert len(said) > 40  # the walk finds the messages (not an empty pass)
    bad = [(where, text, message_problems(text)) for text, where in said if message_problems(text)]
    assert bad == []


def test_message_rules_catch_what_they_must():
    assert message_problems("every pixel is np.float32(100.0)")
    assert message_problems("cannot write x: [Errno 30] Read-only file system")
    assert message_problems("pass --checkpoint PATH")
    assert message_problems("Re-running torch.load with weights_only set to False")
    assert message_problems("Traceback (most recent call last):")
    assert not message_problems("Image 'ct' has NaN or infinite values on slice 2 (1 slice(s)).")
    assert not message_problems("a U-Net 64-32 wide, 0.5 s/iteration")


def test_refusal_paths_driven_keep_the_rules(disc_stack, fake_training, tmp_path):
    """Drive the refusals end to end and check every message said."""
    ctl, view = _controller()
    img, gt = disc_stack()
    ctl.review.next_uncertain([])
    ctl.review.accept(gt, 0)
    ctl.sessions.predict(img, False)
    ctl.start_run(RunRequest(StackTask(img, None, []), dict(TINY)))
    ctl.start_run(RunRequest(StackTask(img, np.zeros_like(gt), []), dict(TINY)))
    bad = StackTask(img.astype(np.float32), _labels(gt), [1, 4])
    bad.image[2, 3, 3] = np.nan
    ctl.start_run(RunRequest(bad, dict(TINY), image_name="ct"))
    vit = dict(TINY, profile="cpu-interactive", foundation="medsam-vitb")
    for ckpt in (None, str(tmp_path / "none.pth"), str(tmp_path)):
        vit["checkpoint"] = ckpt
        ctl.start_run(RunRequest(StackTask(img, _labels(gt), [1, 4]), vit))
    said = _all_messages(view)
    assert len(said) >= 8
    assert [(t, message_problems(t)) for t in said if message_problems(t)] == []


# ----------------------------------------------------------------------------- item 11
def test_foundation_weights_checked_before_the_training_process_starts(
    disc_stack, fake_training, tmp_path
):
    ctl, view = _controller()
    img, gt = disc_stack()
    task = StackTask(img, _labels(gt), [1, 4])
    params = dict(TINY, profile="cpu-interactive", foundation="medsam-vitb")
    missing = tmp_path / "medsam_vit_b.pth"
    assert ctl.start_run(RunRequest(task, dict(params, checkpoint=str(missing))))
    assert fake_training == []  # refused before training (the child) started
    assert ctl.run.outcome == "failed"
    assert "does not exist" in ctl.last_message and "--" not in ctl.last_message
    assert not ctl.last_message.startswith("Training failed")
    folder = tmp_path / "weights"
    folder.mkdir()
    assert ctl.start_run(RunRequest(task, dict(params, checkpoint=str(folder))))
    assert fake_training == [] and "is a folder" in ctl.last_message
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    assert ctl.start_run(RunRequest(task, dict(params, checkpoint=str(junk))))
    assert fake_training == [] and "weights_only" not in ctl.last_message
    assert "not a PyTorch weights file" in ctl.last_message


# ----------------------------------------------------------------------------- item 5
def test_only_class_2_of_2_painted_is_said_before_the_run(disc_stack, fake_training):
    ctl, view = _controller()
    img, gt = disc_stack()
    task = StackTask(img, _labels(gt, value=2), [1, 4])
    assert ctl.start_run(RunRequest(task, dict(TINY), labels_name="annotations"))
    warnings = [t for t in _all_messages(view) if "class 1" in t]
    assert warnings, _all_messages(view)
    text = warnings[0]
    assert "class 2" in text and "not painted" in text
    # said before the run started (before the "Training on ..." message)
    order = _all_messages(view)
    assert order.index(text) < next(i for i, t in enumerate(order) if t.startswith("Training on"))
    # every class painted: no such warning
    ctl2, view2 = _controller()
    assert ctl2.start_run(RunRequest(StackTask(img, _labels(gt), [1, 4]), dict(TINY)))
    assert not [t for t in _all_messages(view2) if "not painted" in t]


# ----------------------------------------------------------------------------- item 8
def _fake_model(ctl, tmp_path, in_channels=1):
    ckpt = tmp_path / "session.pt"
    ckpt.write_bytes(b"x")
    ctl.model.checkpoint = ckpt
    ctl.model.config = {"in_channels": in_channels}


def test_predict_on_nan_says_the_train_message_once(disc_stack, tmp_path, monkeypatch):
    from napari_synfoc.core import interactive

    monkeypatch.setattr(
        interactive, "predict_stack_maps", lambda *a, **k: pytest.fail("predicted a NaN image")
    )
    ctl, view = _controller()
    _fake_model(ctl, tmp_path)
    img, _ = disc_stack()
    img[2, 10, 10] = np.nan
    ctl.sessions.predict(img, False, name="ct")
    errors = [t for t, e in view.messages if e]
    assert len(errors) == 1, view.messages
    assert errors[0].startswith("Image 'ct' has NaN or infinite values on slice 2"), errors
    assert "Prediction failed" not in errors[0] and "before predicting" in errors[0]
    assert ctl.run.outcome == "failed" and not ctl.busy


# ----------------------------------------------------------------------------- item 9
def test_predict_rgb_on_a_grey_model_is_one_refusal_before_the_job(
    disc_stack, tmp_path, monkeypatch
):
    from napari_synfoc.core import interactive

    monkeypatch.setattr(
        interactive, "predict_stack_maps", lambda *a, **k: pytest.fail("predicted")
    )
    ctl, view = _controller()
    _fake_model(ctl, tmp_path, in_channels=1)
    img, _ = disc_stack(z=1)
    rgb = np.repeat(img[0][..., None], 3, axis=-1)
    assert not ctl.sessions.predict(rgb, True, name="photo")
    assert len(view.messages) == 1 and view.messages[0][1] is True
    assert (
        "'photo' is a colour (RGB) image but the model was trained on grey"
        in (view.messages[0][0])
    )
    assert not any(s.startswith("Predicting") for s in view.statuses)


def test_unexpected_predict_error_is_a_failure_with_its_traceback_logged(
    disc_stack, tmp_path, monkeypatch, caplog
):
    from napari_synfoc.core import interactive

    def broken(*a, **k):
        raise KeyError("unet_student")

    def refusing(*a, **k):
        raise Refusal("Image 'x' is refused.")

    ctl, view = _controller()
    _fake_model(ctl, tmp_path)
    img, _ = disc_stack()
    monkeypatch.setattr(interactive, "predict_stack_maps", broken)
    with caplog.at_level("ERROR"):
        ctl.sessions.predict(img, False)
    assert ctl.last_message.startswith("Prediction failed: KeyError")
    assert any(r.exc_info for r in caplog.records)  # unexpected: its traceback is logged
    caplog.clear()
    monkeypatch.setattr(interactive, "predict_stack_maps", refusing)
    with caplog.at_level("ERROR"):
        ctl.sessions.predict(img, False)
    assert ctl.last_message == "Image 'x' is refused."  # expected: the text alone
    assert not [r for r in caplog.records if r.exc_info]


# ----------------------------------------------------------------------------- item 7
def test_session_of_another_size_says_so_and_keeps_no_slice_list(monkeypatch, tmp_path):
    from napari_synfoc.core import interactive

    info = {
        "config": {"foundation": "litemedsam", "in_channels": 1},
        "labeled_slices": [1, 4],
        "iteration": 300,
        "image_shape": [6, 64, 64],
        "intensity": None,
    }
    monkeypatch.setattr(interactive, "read_session", lambda path: dict(info))
    ctl, view = _controller()
    labels = np.zeros((3, 32, 32), np.int32)
    _, marked = ctl.sessions.load(tmp_path / "s.pt", labels, image_shape=(3, 32, 32))
    assert marked == []
    text = ctl.last_message
    assert "6 × 64 × 64" in text and "3 × 32 × 32" in text, text
    assert "Predict" in text and "Retrain" in text
    assert "1, 4" in text and "not marked" in text
    # same size: the session's empty labelled slices are marked, and no size notice
    ctl2, _ = _controller()
    same = np.zeros((6, 64, 64), np.int32)
    _, marked = ctl2.sessions.load(tmp_path / "s.pt", same, image_shape=(6, 64, 64))
    assert marked == [1, 4] and "trained on" not in ctl2.last_message


# ----------------------------------------------------------------------------- item 6
def test_image_deleted_while_training_is_said_at_once(disc_stack, monkeypatch):
    from napari_synfoc.core import interactive

    ctl, view = _controller()
    img, gt = disc_stack()
    said_during = []

    def fake(task, cfg, **kw):
        yield Started("cpu", "fp32", 1, 2, 3)
        yield Step(0, 3, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.1)
        ctl.input_deleted("image", "stack")  # the user deletes the image layer now
        said_during.append(ctl.last_message)
        yield Step(1, 3, {"loss": 1.0}, 0.5, 0.1, 1.0, 0.1)
        yield Done(3, None, 0.1)

    monkeypatch.setattr(interactive, "train_on_stack", fake)
    assert ctl.start_run(RunRequest(StackTask(img, _labels(gt), [1, 4]), dict(TINY)))
    text = said_during[0]
    assert "Image layer 'stack' was deleted" in text, text
    assert "Stop" in text and "Save session" in text
    assert ctl.input_deleted("image", "stack") is False  # nothing runs now: nothing said


# ----------------------------------------------------------------------------- item 15
def test_start_stages_are_shown_before_the_first_iteration(disc_stack, fake_training):
    ctl, view = _controller()
    img, gt = disc_stack()
    assert ctl.start_run(RunRequest(StackTask(img, _labels(gt), [1, 4]), dict(TINY)))
    assert view.statuses[0] == "Starting: checking the image values…", view.statuses
    vit = dict(TINY, profile="cpu-interactive", foundation="medsam-vitb", checkpoint="x.pth")
    ctl.start_run(RunRequest(StackTask(img, _labels(gt), [1, 4]), vit))
    assert "Starting: checking the image values and the foundation model's weights…" in (
        view.statuses
    )
    # a stage from the engine before Started: shown as it is, with no dangling "on"
    ctl.run.begin()
    ctl.on_event(Progress("Loading the training libraries (torch)", 1, 4))
    assert view.statuses[-1] == "Starting: loading the training libraries (torch) (step 1 of 4)…"
