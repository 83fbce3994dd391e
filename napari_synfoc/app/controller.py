"""The application without Qt or napari: training runs, and the composed review, sessions and
prompt parts.

The front end hands plain arrays in and is told what to show through a
:class:`~.view.ControllerView` (every method a no-op there).  Layers never reach this package:
where a result belongs to a layer, the front end passes an opaque ``target`` that comes back with
the maps.  Tests and scripts drive it headless with the synchronous job backend (:mod:`.jobs`)::

    ctl = AppController(jobs=JobRunner("sync"))
    ctl.start_run(RunRequest(task, {"profile": "tiny", "device": "cpu", "iterations": 20}))
    z = ctl.review.next_uncertain(labeled)        # the slice to look at next
    edit = ctl.review.accept(labels, z, "ensemble")   # a SliceEdit; apply edit.edit
    ctl.sessions.predict(image, rgb=False)        # maps for another image
    ctl.prompts.prompt(image, labels, z, box=box)  # a box prompt; ctl.prompts.propagation.start
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from ..config import arch_fields
from ..core.task import validate_task
from .jobs import JobRunner, training_source
from .messages import failure_text
from .preflight import classes_notice, needs_weights_check
from .process_tweaks import avoid_triton_llvm_clash
from .prompts import PromptController
from .review import Review
from .run_events import RunEvents
from .run_request import RunRequest
from .sessions import Sessions
from .state import ModelState, RunState
from .view import ControllerView, Notices
from .worker import OVERLAY_WAIT_S, training_events

__all__ = ["OVERLAY_WAIT_S", "AppController", "ControllerView", "RunRequest"]


class AppController:
    """Training runs and, composed, the review, sessions and prompt parts; Qt-free.

    Parameters
    ----------
    view : ControllerView, optional
        Receives messages, progress and maps (default: a silent view).
    jobs : JobRunner, optional
        Where jobs run (default: a thread, or synchronous with ``SYNFOC_NOTHREADS=1``).

    Attributes
    ----------
    run : RunState
        The running or last job: ``running``, ``outcome``, ``event_counts``, flags, timings.
    model : ModelState
        The latest model: ``checkpoint``, ``config``, the slices and image it was trained on.
    review : Review
        Review maps, ranking, ``next_uncertain``, ``accept``.
    sessions : Sessions
        ``save``, ``load``, ``predict``, ``export_labels``, ``export_predictions``.
    prompts : PromptController
        Box / point prompts, region fixes, ``propagation`` (its own job runner: it may run
        while training does).
    """

    def __init__(self, view: ControllerView | None = None, jobs: JobRunner | None = None):
        self.notices = Notices(view)
        self.jobs = jobs or JobRunner()
        self.run = RunState()
        self.model = ModelState()
        self.review = Review(self.notices)
        self.sessions = Sessions(self.notices, self.model, self.run, self.jobs, self.review)
        prompt_jobs = JobRunner(
            "sync" if self.jobs.synchronous else "thread", threads=self.jobs.threads
        )
        self.prompts = PromptController(
            lambda text, error=False: self.say(text, error, notify=error), jobs=prompt_jobs
        )
        self.on_event = RunEvents(self.notices, self.run, self.model, self.review)
        self.run_root = Path(tempfile.mkdtemp(prefix="synfoc-"))
        weakref.finalize(self, shutil.rmtree, str(self.run_root), True)

    # ------------------------------------------------------------------ state
    @property
    def view(self) -> ControllerView:
        return self.notices.view

    @property
    def speed(self):
        """The running (or last) run's measured speed (:class:`~.estimate.SpeedMeter`)."""
        return self.on_event.speed

    @property
    def unet_only_slices(self) -> list[int]:
        """Slices of the shown maps that hold the U-Net's prediction only so far (the frozen
        encoder has not reached them): no MedSAM, ensemble, consensus or M_d there yet."""
        events = self.on_event
        return list(events.unet_only) if self.review.maps is events.unet_only_maps else []

    @property
    def last_message(self) -> str:
        return self.notices.last_message

    @property
    def busy(self) -> bool:
        """True while a job (training or prediction) runs."""
        return self.jobs.busy

    @property
    def running(self) -> bool:
        """True while a training run (not a prediction) is in progress."""
        return self.run.running

    @property
    def stopping(self) -> bool:
        """True from Stop until the running training has ended (a new Train is queued)."""
        return self.run.running and self.run.stop_flag.is_set()

    def say(self, text: str, error: bool = False, notify: bool = True) -> None:
        """A message for the user (``error``: shown as one; ``notify``: also a notification)."""
        self.notices.say(text, error, notify)

    # ------------------------------------------------------------------ training
    def start_run(self, request: RunRequest) -> bool:
        """Check ``request.task`` and start training on it; False (with a message) if it cannot
        start.  With the "sync" backend the run has ended when this returns.

        The shapes and labels are checked here; the passes over every voxel run in the worker
        (:func:`.worker.training_events`), which refuses with the same message.  Pressed while a
        stopped run is still ending, the request waits and starts when that run has ended.
        """
        if self.busy:
            if self.stopping:  # Stop then Train: start this one as soon as that one has ended
                self.run.pending = request
                self.say(
                    "Stopping the running training: the new run starts as soon as it has ended.",
                    notify=False,
                )
                return True
            self.say("Training is already running: stop it first.", error=True)
            return False
        task = request.task
        init = self._warm_start_from() if request.warm_start else None
        if request.warm_start and init is None:  # said before the labels' own problems
            return False
        problem = validate_task(task, request.image_name, request.labels_name, image_values=False)
        if problem:
            self.say(problem, error=True)
            return False
        notice = classes_notice(task, request.labels_name)
        if notice:  # said before the run (it goes on: the user may mean it)
            self.say(notice, error=False, notify=True)
        params = dict(request.params)
        params["overrides"] = {**(params.get("overrides") or {}), **self._kept_architecture(init)}
        run, model = self.run, self.model
        model.init_checkpoint = init
        run.count += 1
        run.begin(request.target)
        self.on_event.status_note = ""
        if request.overlays_exist or self.jobs.synchronous:
            # nothing to wait for (the sync backend builds overlays at once in this thread)
            run.overlays_ready.set()
        events = training_events(
            dataclasses.replace(request, params=params), run.stop_flag,
            source=training_source(self.jobs.backend), init_checkpoint=init,
            out_dir=self.run_root / f"run{run.count:03d}", overlays_ready=run.overlays_ready,
        )  # fmt: skip
        labeled = sorted({int(z) for z in task.labeled_slices})
        self._remember_training_data(request, labeled)
        self.view.progress(0, 1, 0)  # determinate from the start: never a busy bar
        self.view.status(
            "Starting: checking the image values"
            + (" and the foundation model's weights" if needs_weights_check(params) else "")
            + "…"
        )
        self.say(
            f"Training on '{request.image_name or 'the image'}' with {len(labeled)} labelled "
            f"slice(s)"
            + (" (warm start)." if request.warm_start else ".")
            + (f" {notice}" if notice else ""),
            notify=False,
        )
        run.running = True
        avoid_triton_llvm_clash()
        run.gc.hold()
        self.view.changed()
        self.jobs.start_events(events, self.on_event, self._on_error, self._on_run_finished)
        return True

    def _warm_start_from(self) -> Path | None:
        """The checkpoint a warm start continues from, or None (with a message)."""
        ckpt = self.model.checkpoint
        if ckpt is None or not Path(ckpt).exists():
            self.say(
                "Nothing to warm-start from yet: Retrain continues a trained model; press Train "
                "first (or load a session).",
                True,
            )
            return None
        return ckpt

    def _kept_architecture(self, init: Path | None) -> dict:
        """Overrides that keep the warm-start checkpoint's architecture (none for a cold start)."""
        config = self.model.config if init is not None else None
        if not config:
            return {}
        return {
            key: tuple(config[key]) if isinstance(config[key], list) else config[key]
            for key in arch_fields()
            if key in config
        }

    def _remember_training_data(self, request: RunRequest, labeled: list[int]) -> None:
        """What a session saves with the model: its slices, image shape and intensity mapping."""
        task, model = request.task, self.model
        model.labeled = labeled
        window = task.intensity_window
        model.intensity = {
            "mode": request.intensity_mode
            or ("window" if window is not None else "auto (percentile)"),
            "window": None if window is None else [float(v) for v in window],
        }
        shape = tuple(int(s) for s in np.shape(task.image))
        model.image_shape = shape[:-1] if task.rgb else shape

    def stop(self) -> bool:
        """Ask training to stop (ends within one iteration); False when nothing runs."""
        if not self.run.running:
            return False
        self.run.stop_flag.set()
        self.run.overlays_ready.set()
        self.view.status("Stopping after the current iteration…")
        self.view.changed()
        return True

    def labels_edited(self) -> None:
        """The user painted: remembered if a run is going on (its snapshot is older)."""
        if self.run.running:
            self.run.labels_edited = True

    def overlays_built(self) -> None:
        """The front end finished building the overlay layers: training may go on."""
        self.run.overlays_ready.set()

    def input_deleted(self, kind: str, name: str) -> bool:
        """The run's ``kind`` ("image" or "labels") layer ``name`` was deleted while training
        runs: say at once what happens and what the user can do; False when nothing runs."""
        if not self.run.running or self.stopping:
            return False
        if kind == "image":
            text = (
                f"Image layer '{name}' was deleted while training runs: its overlays cannot be "
                "shown. Training goes on with the copy it took at its start: let it finish and "
                "Save session to keep the model (Predict then shows it on any image), or press "
                "Stop to end it now (the model so far is kept)."
            )
        else:
            text = (
                f"Labels layer '{name}' was deleted while training runs: the run uses the copy "
                "it took at its start, so it goes on; Save session when it ends to keep the "
                "model, or press Stop to end it now."
            )
        self.say(text, error=True)
        self.on_event.status_note = f" · {kind} layer '{name}' deleted (Stop, or Save session)"
        return True

    def _on_error(self, exc: BaseException) -> None:
        self.run.outcome = "failed"
        self.say(failure_text("Training failed", exc), error=True)

    def _on_run_finished(self) -> None:
        run = self.run
        run.gc.release()
        run.running = False
        run.stop_flag = threading.Event()
        # no gc.collect() here: the engine frees its models and GPU memory in the worker, and a
        # full collection of napari's heap would stall the event loop for ~0.5 s
        self.view.encoding(0, 0)
        self.view.status(self._idle_status())
        if run.labels_edited and run.outcome != "failed":
            self.say(
                self.last_message + " Labels changed while training ran: Retrain to use them.",
                notify=False,
            )
        self.view.changed()
        self.view.finished()
        pending, run.pending = run.pending, None
        if pending is not None:  # Train was pressed while this run was stopping
            self.start_run(pending)
            self.view.changed()

    def _idle_status(self) -> str:
        run = self.run
        tail = ""
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            tail = f" GPU memory still allocated: {torch.cuda.memory_allocated() / 2**20:.0f} MB."
        took = time.perf_counter() - run.t0
        where = f" on {run.device}" if run.device else ""
        peak = f", peak memory {run.peak_mb:.0f} MB" if run.peak_mb else ""
        if self.unet_only_slices:  # stopped before the encoder reached every slice
            tail += f" {self.on_event.coverage_note[3:]}."
        return f"Idle: training {run.outcome or 'finished'} after {took:.1f} s{where}{peak}.{tail}"

    # ------------------------------------------------------------------ teardown
    def detach(self) -> None:
        """The front end is gone (dock removed, viewer closed): show nothing more, stop the
        running job and drop its remaining events.  Returns at once; safe to call twice."""
        self.notices.silence()
        self.run.pending = None
        self.run.stop_flag.set()
        self.run.overlays_ready.set()
        self.jobs.abandon()

    def cleanup(self) -> None:
        """Remove this controller's run folder (checkpoints of unsaved runs)."""
        shutil.rmtree(self.run_root, ignore_errors=True)
