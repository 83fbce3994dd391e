"""The dock's state and actions without Qt or napari: runs, review maps, ranking, accept, sessions.

The dock hands plain arrays in and is told what to show through a :class:`ControllerView`
(every method a no-op here).  Layers never reach this module: where a result belongs to a layer,
the dock passes an opaque ``target`` that comes back with the maps.  Tests drive it headless with
the synchronous job backend (:mod:`.jobs`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..config import arch_fields
from ..core.events import (
    Cancelled,
    CheckpointSaved,
    Done,
    Encoding,
    Failed,
    Progress,
    Started,
    Step,
)
from ..core.review import ReviewMaps
from ..core.task import StackTask, validate_task
from .controller_io import SessionActions
from .controller_review import LabelEdit, ReviewActions
from .jobs import JobRunner, training_source
from .process_tweaks import GcFreeze, avoid_triton_llvm_clash
from .worker import OVERLAY_WAIT_S, Refused, ReviewUpdate, training_events

__all__ = ["OVERLAY_WAIT_S", "ControllerView", "DockController", "LabelEdit", "ReviewUpdate"]


class ControllerView:
    """What the controller tells its front end.  Every method is a no-op; the dock overrides."""

    def message(self, text: str, error: bool = False, notify: bool = True) -> None:
        """A message for the user (``notify``: also as a napari notification)."""

    def status(self, text: str) -> None:
        """The one-line status of the running job."""

    def progress(self, low: int, high: int, value: int) -> None:
        """A determinate progress bar: ``value`` in ``[low, high]``."""

    def encoding(self, done: int, total: int) -> None:
        """Frozen-encoder progress (a second determinate bar); ``done >= total``: hide it."""

    def run_started(self, first: int, last: int) -> None:
        """Training runs from iteration ``first`` to ``last`` (the loss plot's x range)."""

    def step(self, event: Step) -> None:
        """One training iteration ended."""

    def show_maps(self, maps: ReviewMaps, target: Any) -> bool:
        """Show ``maps`` for ``target``; True while overlay layers are still being built."""
        return False

    def changed(self) -> None:
        """Run state, checkpoint or maps changed (buttons, ranking)."""

    def finished(self) -> None:
        """A job ended (after the controller's own bookkeeping)."""


class DockController(ReviewActions, SessionActions):
    """Run state and the dock's actions, Qt-free.

    Parameters
    ----------
    view : ControllerView, optional
        Receives messages, progress and maps (default: a silent view).
    jobs : JobRunner, optional
        Where jobs run (default: a thread, or synchronous with ``SYNFOC_NOTHREADS=1``).
    """

    def __init__(self, view: ControllerView | None = None, jobs: JobRunner | None = None):
        self.view = view or ControllerView()
        self.jobs = jobs or JobRunner()
        self.running = False  # a training run (not a prediction) is in progress
        self.stop_flag = threading.Event()
        self.overlays_ready = threading.Event()  # set: no overlay layer left to build
        self.run_root = Path(tempfile.mkdtemp(prefix="synfoc-"))
        weakref.finalize(self, shutil.rmtree, str(self.run_root), True)
        self.run_count = 0
        self.latest_checkpoint: Path | None = None
        self.checkpoint_config: dict[str, Any] | None = None
        self.maps: ReviewMaps | None = None
        self.maps_target: Any = None
        self.covered: set[int] | None = None  # slices with predictions (None: all)
        self.visited: set[int] = set()
        self.trained_labeled: list[int] = []
        self.train_image_shape: tuple[int, ...] = ()
        self.train_intensity: dict[str, Any] | None = None  # {"mode", "window"} of the model
        self.train_target: Any = None
        self.labels_edited_while_training = False
        self.outcome: str | None = None
        self.last_message = ""
        self.event_counts: dict[str, int] = {}
        self.prediction_updates = 0
        self.last_init_checkpoint: Path | None = None
        self.device = ""
        self._start_it = 0
        self._peak_mb = 0.0
        self._step_seconds: list[float] = []
        self._t0 = 0.0
        self._gc = GcFreeze()
        self._pending: tuple[StackTask, dict[str, Any], dict[str, Any]] | None = None

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """True while a job (training or prediction) runs."""
        return self.jobs.busy

    @property
    def stopping(self) -> bool:
        """True from Stop until the running training has ended (a new Train is queued)."""
        return self.running and self.stop_flag.is_set()

    def say(self, text: str, error: bool = False, notify: bool = True) -> None:
        self.last_message = text
        self.view.message(text, error, notify)

    # ------------------------------------------------------------------ training
    def start_run(
        self,
        task: StackTask,
        params: dict[str, Any],
        *,
        folder: str | None = None,
        predict_every: int = 0,
        warm_start: bool = False,
        target: Any = None,
        image_name: str | None = None,
        labels_name: str | None = None,
        overlays_exist: bool = False,
        view_slice: int | None = None,
        intensity_mode: str | None = None,
    ) -> bool:
        """Validate ``task`` and start training on it; False (with a message) if it cannot start.

        ``task`` holds snapshots (the labels already copied); ``params`` are
        :func:`.task_builder.build_config` arguments; ``folder``'s images are added as
        unlabelled data in the worker.  ``image_name`` / ``labels_name`` name the layers in
        messages; ``view_slice`` (the slice in view) lets a frozen encoder start there.
        ``intensity_mode`` names the choice behind ``task.intensity_window`` (saved in sessions).
        """
        if self.busy:
            if self.stopping:  # Stop then Train: start this one as soon as that one has ended
                self._pending = (task, params, {
                    "folder": folder, "predict_every": predict_every, "warm_start": warm_start,
                    "target": target, "image_name": image_name, "labels_name": labels_name,
                    "overlays_exist": overlays_exist, "view_slice": view_slice,
                    "intensity_mode": intensity_mode,
                })  # fmt: skip
                self.say(
                    "Stopping the running training: the new run starts as soon as it has ended.",
                    notify=False,
                )
                return True
            self.say("Training is already running: stop it first.", error=True)
            return False
        # shapes and labels now; the passes over every voxel run in the worker (Refused)
        problem = validate_task(task, image_name, labels_name, image_values=False)
        if problem:
            self.say(problem, error=True)
            return False
        params = dict(params)
        overrides = dict(params.get("overrides") or {})
        init = None
        if warm_start:
            if self.latest_checkpoint is None or not Path(self.latest_checkpoint).exists():
                self.say(
                    "Nothing to warm-start from: train once (or load a session) first.", error=True
                )
                return False
            init = self.latest_checkpoint
            for key in arch_fields():  # a warm start keeps the checkpoint's architecture
                if self.checkpoint_config and key in self.checkpoint_config:
                    val = self.checkpoint_config[key]
                    overrides[key] = tuple(val) if isinstance(val, list) else val
        params["overrides"] = overrides
        self.last_init_checkpoint = init
        self.run_count += 1
        out_dir = self.run_root / f"run{self.run_count:03d}"
        self.stop_flag = threading.Event()
        self.overlays_ready = threading.Event()
        if overlays_exist or self.jobs.synchronous:
            # nothing to wait for (the sync backend builds overlays at once in this thread)
            self.overlays_ready.set()
        labeled = sorted({int(z) for z in task.labeled_slices})
        events = training_events(
            task, params, self.stop_flag, folder=folder, init_checkpoint=init, out_dir=out_dir,
            predict_every=predict_every, overlays_ready=self.overlays_ready,
            source=training_source(self.jobs.backend), view_slice=view_slice,
            image_name=image_name, labels_name=labels_name,
        )  # fmt: skip
        self.train_target = target
        self.trained_labeled = labeled
        window = task.intensity_window
        self.train_intensity = {
            "mode": intensity_mode or ("window" if window is not None else "auto (percentile)"),
            "window": None if window is None else [float(v) for v in window],
        }
        shape = tuple(int(s) for s in np.shape(task.image))
        self.train_image_shape = shape[:-1] if task.rgb else shape
        self.labels_edited_while_training = False
        self.outcome = None
        self.event_counts = {}
        self._start_it = 0
        self.device = ""
        self._t0 = time.perf_counter()
        self.view.progress(0, 1, 0)  # determinate from the start: never a busy bar
        self.view.status("Starting (loading models)…")
        self.say(
            f"Training on '{image_name or 'the image'}' with {len(labeled)} labelled slice(s)"
            + (" (warm start)." if warm_start else "."),
            notify=False,
        )
        self.running = True
        avoid_triton_llvm_clash()
        self._gc.hold()
        self.view.changed()
        self.jobs.start_events(events, self.handle_event, self._on_error, self._on_run_finished)
        return True

    def stop(self) -> bool:
        """Ask training to stop (ends within one iteration); False when nothing runs."""
        if not self.running:
            return False
        self.stop_flag.set()
        self.overlays_ready.set()
        self.view.status("Stopping after the current iteration…")
        self.view.changed()
        return True

    def labels_edited(self) -> None:
        """The user painted: remembered if a run is going on (its snapshot is older)."""
        if self.running:
            self.labels_edited_while_training = True

    def overlays_built(self) -> None:
        """The front end finished building the overlay layers: training may go on."""
        self.overlays_ready.set()

    def handle_event(self, event: Any) -> None:
        """One engine event (in the GUI thread): update the state and tell the view."""
        name = type(event).__name__
        self.event_counts[name] = self.event_counts.get(name, 0) + 1
        view = self.view
        if isinstance(event, Started):
            self.device = f"{event.device} ({event.precision})"
            self._peak_mb = 0.0
            self._step_seconds = []
            self._start_it = int(event.start_iteration)
            view.run_started(self._start_it, self._start_it + int(event.iterations))
            if event.config:
                self.checkpoint_config = dict(event.config)
            view.status(
                f"Training on {self.device}: {event.n_labeled} labelled, "
                f"{event.n_unlabeled} unlabelled images, {event.iterations} iterations."
            )
        elif isinstance(event, Progress):
            view.progress(0, max(1, event.total), event.done)
            view.status(f"{event.message} ({event.done}/{event.total}) on {self.device}")
        elif isinstance(event, Encoding):
            view.encoding(event.done, event.total)
            if not self.event_counts.get("Step"):
                view.status(
                    f"Encoding slices with the frozen encoder ({event.done}/{event.total}) "
                    f"on {self.device}"
                )
        elif isinstance(event, Step):
            lo = self._start_it if event.total > self._start_it else 0
            view.progress(lo, event.total, event.iteration + 1)
            view.step(event)
            self._step_seconds.append(float(event.seconds))
            if event.memory_mb is not None:
                self._peak_mb = max(self._peak_mb, float(event.memory_mb))
            mem = f" · {event.memory_mb:.0f} MB" if event.memory_mb is not None else ""
            view.status(
                f"Iteration {event.iteration + 1}/{event.total} on {self.device}{mem} · "
                f"{event.seconds:.2f} s/it · α {event.alpha:.2f}"
            )
        elif isinstance(event, Refused):
            self.outcome = "failed"
            self.say(event.message, error=True)
        elif isinstance(event, ReviewUpdate):
            if self.set_maps(event.maps, self.train_target, event.covered, event.features):
                return  # the view calls overlays_built() when the layers exist
            self.overlays_ready.set()
        elif isinstance(event, CheckpointSaved):
            self.latest_checkpoint = Path(event.path)
            view.changed()
        elif isinstance(event, (Done, Cancelled, Failed)):
            if event.checkpoint is not None:
                self.latest_checkpoint = Path(event.checkpoint)
            if isinstance(event, Done):
                self.outcome = "done"
                self.say(
                    f"Training done: {event.iteration} iterations in {event.seconds:.0f} s. "
                    "Review the slices below, accept or correct, then Retrain.",
                    notify=False,
                )
            elif isinstance(event, Cancelled):
                self.outcome = "cancelled"
                self.say(f"Training stopped at iteration {event.iteration}.", notify=False)
            else:
                self.outcome = "failed"
                self.say(f"Training failed: {event.message}", error=True)

    def seconds_per_iteration(self) -> float | None:
        """The last run's median seconds per iteration (its first two steps left out: they
        warm up); None before three steps."""
        steps = self._step_seconds[2:]
        if not steps:
            return None
        return float(sorted(steps)[len(steps) // 2])

    def _on_error(self, exc: BaseException) -> None:
        self.outcome = "failed"
        self.say(f"Training failed: {type(exc).__name__}: {exc}", error=True)

    def _on_run_finished(self) -> None:
        self._gc.release()
        self.running = False
        self.stop_flag = threading.Event()
        # no gc.collect() here: the engine frees its models and GPU memory in the worker, and a
        # full collection of napari's heap would stall the event loop for ~0.5 s
        tail = ""
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            tail = f" GPU memory still allocated: {torch.cuda.memory_allocated() / 2**20:.0f} MB."
        took = time.perf_counter() - self._t0
        where = f" on {self.device}" if self.device else ""
        peak = f", peak memory {self._peak_mb:.0f} MB" if self._peak_mb else ""
        self.view.encoding(0, 0)
        self.view.status(
            f"Idle: training {self.outcome or 'finished'} after {took:.1f} s{where}{peak}.{tail}"
        )
        if self.labels_edited_while_training and self.outcome != "failed":
            self.say(
                self.last_message + " Labels changed while training ran: Retrain to use them.",
                notify=False,
            )
        self.view.changed()
        self.view.finished()
        pending, self._pending = self._pending, None
        if pending is not None:  # Train was pressed while this run was stopping
            self.start_run(pending[0], pending[1], **pending[2])
            self.view.changed()

    def detach(self) -> None:
        """The front end is gone (dock removed, viewer closed): show nothing more, stop the
        running job and drop its remaining events.  Returns at once; safe to call twice."""
        self.view = ControllerView()
        self._pending = None
        self.stop_flag.set()
        self.overlays_ready.set()
        self.jobs.abandon()

    def cleanup(self) -> None:
        """Remove this controller's run folder (checkpoints of unsaved runs)."""
        shutil.rmtree(self.run_root, ignore_errors=True)
