"""What each engine event of a training run does to the controller's state and view (Qt-free).

:class:`RunEvents` is the controller's ``on_event``: events arrive in order (in the GUI thread
for the dock) and update ``controller.run``, ``controller.model`` and ``controller.review``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from .estimate import SpeedMeter
from .review import Review
from .state import ModelState, RunState
from .view import Notices
from .worker import Refused, ReviewUpdate


class RunEvents:
    """Applies a training run's events to ``run``, ``model`` and ``review``; tells ``notices``."""

    def __init__(self, notices: Notices, run: RunState, model: ModelState, review: Review):
        self.notices, self.run, self.model, self.review = notices, run, model, review
        self.status_note = ""  # kept at the end of the iteration status (e.g. a deleted layer)
        self.speed = SpeedMeter()  # this run's measured seconds per iteration
        self.unet_only: list[int] = []  # slices holding the U-Net's prediction only, so far
        self.unet_only_maps: Any = None  # the review maps ``unet_only`` belongs to
        self.coverage_note = ""  # "N of Z slices: both models; M: U-Net only" (status)

    def __call__(self, event: Any) -> None:
        """One engine event: count it, update the state and tell the view."""
        name = type(event).__name__
        self.run.event_counts[name] = self.run.event_counts.get(name, 0) + 1
        for kind, handler in (
            (Started, self._started),
            (Progress, self._progress),
            (Encoding, self._encoding),
            (Step, self._step),
            (Refused, self._refused),
            (ReviewUpdate, self._review_update),
            (CheckpointSaved, self._checkpoint),
            ((Done, Cancelled, Failed), self._ended),
        ):
            if isinstance(event, kind):
                handler(event)
                return

    @property
    def view(self):
        return self.notices.view

    def _started(self, event: Started) -> None:
        run = self.run
        run.device = f"{event.device} ({event.precision})"
        run.peak_mb = 0.0
        run.step_seconds = []
        self.speed.started()
        self.unet_only, self.coverage_note = [], ""
        run.start_iteration = int(event.start_iteration)
        self.view.run_started(run.start_iteration, run.start_iteration + int(event.iterations))
        if event.config:
            self.model.config = dict(event.config)
        self.view.status(
            f"Training on {run.device}: {event.n_labeled} labelled, "
            f"{event.n_unlabeled} unlabelled images, {event.iterations} iterations."
        )

    def _progress(self, event: Progress) -> None:
        self.view.progress(0, max(1, event.total), event.done)
        if not self.run.device:  # a start stage, before the engine said where it trains
            what = event.message[:1].lower() + event.message[1:]
            step = f" (step {event.done} of {event.total})" if event.total > 1 else ""
            self.view.status(f"Starting: {what}{step}…")
            return
        self.view.status(f"{event.message} ({event.done}/{event.total}) on {self.run.device}")

    def _encoding(self, event: Encoding) -> None:
        self.view.encoding(event.done, event.total)
        if not self.run.event_counts.get("Step"):
            self.view.status(
                f"Encoding slices with the frozen encoder ({event.done}/{event.total}) "
                f"on {self.run.device}"
            )

    def _step(self, event: Step) -> None:
        run = self.run
        lo = run.start_iteration if event.total > run.start_iteration else 0
        self.view.progress(lo, event.total, event.iteration + 1)
        self.speed.step(event.iteration)
        self.view.step(event)
        run.step_seconds.append(float(event.seconds))
        if event.memory_mb is not None:
            run.peak_mb = max(run.peak_mb, float(event.memory_mb))
        mem = f" · {event.memory_mb:.0f} MB" if event.memory_mb is not None else ""
        self.view.status(
            f"Iteration {event.iteration + 1}/{event.total} on {run.device}{mem} · "
            f"{event.seconds:.2f} s/it · α {event.alpha:.2f}{self.coverage_note}"
            f"{self.status_note}"
        )

    def _refused(self, event: Refused) -> None:
        self.run.outcome = "failed"
        self.notices.say(event.message, error=True)

    def _review_update(self, event: ReviewUpdate) -> None:
        self.unet_only, self.unet_only_maps = list(event.unet_only), event.maps
        self.coverage_note = ""
        if event.unet_only or event.covered is not None:
            n = event.n_slices
            both = n - len(event.unet_only) if event.covered is None else len(event.covered)
            self.coverage_note = f" · {both} of {n} slices: both models; " + (
                f"{len(event.unet_only)}: U-Net only"
                if event.unet_only
                else f"{n - both}: not predicted yet"
            )
            self.view.status(
                f"Predictions at iteration {event.iteration}:{self.coverage_note[2:]}"
            )
        if self.review.set_maps(event.maps, self.run.target, event.covered, event.features):
            return  # the view calls overlays_built() when the layers exist
        self.run.overlays_ready.set()

    def _checkpoint(self, event: CheckpointSaved) -> None:
        self.model.checkpoint = Path(event.path)
        self.view.changed()

    def _ended(self, event: Done | Cancelled | Failed) -> None:
        if event.checkpoint is not None:
            self.model.checkpoint = Path(event.checkpoint)
        say = self.notices.say
        if isinstance(event, Done):
            self.run.outcome = "done"
            say(
                f"Training done: {event.iteration} iterations in {event.seconds:.0f} s. "
                "Review the slices below, accept or correct, then Retrain.",
                notify=False,
            )
        elif isinstance(event, Cancelled):
            self.run.outcome = "cancelled"
            say(f"Training stopped at iteration {event.iteration}.", notify=False)
        else:
            self.run.outcome = "failed"
            say(f"Training failed: {event.message}", error=True)
