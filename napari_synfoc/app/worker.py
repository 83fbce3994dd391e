"""What a training run does in the worker thread (no Qt, no napari): check the image's values,
build the config, train, and turn predictions into review maps before the GUI sees them."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.events import Failed, Predictions, Progress
from ..core.process_runner import START_STAGES, train_in_child
from ..core.review import (
    MAPS_CHUNK,
    ReviewMaps,
    blank_review_maps,
    review_maps_into,
    stack_features,
)
from ..core.task import image_values_problem
from . import task_builder
from .preflight import weights_problem
from .run_request import RunRequest
from .task_builder import load_folder_images

# Longest pause of training while the GUI builds the overlay layers (about 0.5 s, once a viewer).
OVERLAY_WAIT_S = 5.0


@dataclass
class Refused:
    """The task failed the full check in the worker (NaN/Inf, a constant image): ``message``
    is what the GUI thread would have said, naming the layer and what to do."""

    message: str


@dataclass
class ReviewUpdate:
    """Predictions turned into review maps in the worker thread (what the GUI receives).

    ``covered``: the slices that hold a prediction (None: all); the others show background
    until the view-first encoder reaches them.  ``features``: the stack's per-slice appearance
    vectors (:func:`~napari_synfoc.core.review.slice_features`) for the review ranking.
    """

    iteration: int
    maps: ReviewMaps
    covered: list[int] | None = None
    features: np.ndarray | None = None
    unet_only: list[int] = dataclasses.field(default_factory=list)
    n_slices: int = 0


def _blank_foundation_rows(maps: ReviewMaps, rows: list[int]) -> ReviewMaps:
    """On ``rows`` (the U-Net's prediction only so far) nothing that needs the foundation
    model: no MedSAM label, ensemble, consensus, M_d, heat or disagreement score."""
    if rows:
        for arr in (maps.fm_label, maps.ensemble_label, maps.consensus, maps.divergence):
            arr[rows] = 0
        maps.heat[rows] = 0.0
        maps.slice_scores[rows] = 0.0
        if maps.agreement is not None:
            maps.agreement[rows] = np.nan
        if maps.ensemble_boxes is not None:
            maps.ensemble_boxes[rows] = 0
    return maps


class _FullPredictions:
    """Stack-sized review maps assembled from partial ``Predictions`` events.

    No probabilities are kept: each event's rows go through
    :func:`~napari_synfoc.core.review.review_maps_into` onto the slices it brings, in place, so
    an update costs O(event) memory and CPU, not O(stack).  The arrays are shared by the
    updates of a run (each gets its own :class:`ReviewMaps`; the GUI may see later rows land);
    a whole-stack event, or a new stack shape, starts fresh arrays.

    ``covered``: the slices holding both models' predictions; ``unet_seen``: those holding the
    U-Net's (with ``unet_first``, every slice soon after the warm-up).  A slice an event lists
    without its foundation row holds the U-Net's prediction only from then on (its earlier
    MedSAM maps are dropped, not paired with a later U-Net's).  Slices without a prediction
    are background everywhere, with no divergence.
    """

    def __init__(self) -> None:
        self.maps: ReviewMaps | None = None
        self.shape: tuple[int, ...] = ()  # (Z, K, Y, X) of the stack the maps are for
        self.covered: set[int] = set()
        self.unet_seen: set[int] = set()

    def _fresh(self, shape: tuple[int, ...]) -> None:
        self.maps = blank_review_maps(shape[0], shape[1], shape[2:])
        self.shape = tuple(shape)
        self.covered, self.unet_seen = set(), set()

    def add(self, event: Predictions) -> ReviewUpdate:
        fm, un = np.asarray(event.fm_prob), np.asarray(event.unet_prob)
        if event.slices is None:
            n = len(fm)
            self._fresh(fm.shape)
            review_maps_into(self.maps, range(n), fm, un)
            self.covered, self.unet_seen = set(range(n)), set(range(n))
            return ReviewUpdate(event.iteration, dataclasses.replace(self.maps), n_slices=n)
        n = int(event.n_slices)
        shape = (n, *fm.shape[1:])
        if self.maps is None or self.shape != shape:
            self._fresh(shape)
        maps = self.maps
        ready = event.foundation_ready or (True,) * len(event.slices)
        both = [r for r, ok in enumerate(ready) if ok]
        only = [r for r, ok in enumerate(ready) if not ok]
        slices = [int(z) for z in event.slices]
        if both:
            rows = [slices[r] for r in both]
            some = len(both) < len(ready)  # else all rows: no copy
            review_maps_into(maps, rows, fm[both] if some else fm, un[both] if some else un)
            self.covered.update(rows)
        if only:
            rows = [slices[r] for r in only]
            for s in range(0, len(only), MAPS_CHUNK):
                part = only[s : s + MAPS_CHUNK]
                maps.unet_label[rows[s : s + MAPS_CHUNK]] = un[part].argmax(axis=1)
            _blank_foundation_rows(maps, rows)
            self.covered.difference_update(rows)
        self.unet_seen = self.unet_seen | set(slices) | self.covered
        unet_only = sorted(self.unet_seen - self.covered)
        covered = None if len(self.covered) == n else sorted(self.covered)
        update = dataclasses.replace(maps)  # its own object: the GUI tells updates apart by it
        return ReviewUpdate(event.iteration, update, covered, unet_only=unet_only, n_slices=n)


def training_events(
    request: RunRequest,
    stop_flag: threading.Event,
    *,
    source: Callable[..., Iterator[Any]] | None = None,
    init_checkpoint: Path | None = None,
    out_dir: Path | None = None,
    overlays_ready: threading.Event | None = None,
) -> Iterator[Any]:
    """Worker-thread generator: check the image's values and the foundation model's weights
    file, build the config, add the folder's images, train, yield events.  No Qt; every call
    goes down to the engine.

    The GUI thread checked shapes and labels (:func:`~napari_synfoc.core.task.validate_task`
    with ``image_values=False``); the passes over every voxel (NaN/Inf, a constant image: ~0.1 s
    on 200x512x512) run here, once, and end the job with :class:`Refused` (the message names the
    request's layers).  ``source`` trains and yields events (default: ``train_on_stack``; the
    controller passes its job backend's, :func:`.jobs.training_source`).  After yielding
    predictions, it waits (at most ``OVERLAY_WAIT_S``) until ``overlays_ready`` is set again:
    while the GUI thread builds or updates the overlay layers, training pauses (a training
    child too: it waits for the next event to be asked for), so the GUI thread does not share a
    2-core machine with a training step.
    """
    task = request.task
    problem = image_values_problem(task, request.image_name)
    problem = problem or weights_problem(request.params)  # before the training process starts
    if problem:
        yield Refused(problem)
        return
    try:
        if request.folder:
            extra = [*task.extra_unlabeled, *load_folder_images(request.folder, task.rgb)]
            task = dataclasses.replace(task, extra_unlabeled=extra)
        cfg = task_builder.build_config(**request.params)
        if source is None:
            from ..core.interactive import train_on_stack as source
    except Exception as exc:  # noqa: BLE001 - reported in the widget
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        yield Failed(msg, 0, None, exc)
        return
    if source is not train_in_child:  # the child reports its own start stages
        yield Progress(START_STAGES[2], 0, 1)
    view = {"view_slice": request.view_slice} if request.view_slice is not None else {}
    events = source(
        task, cfg, should_stop=stop_flag.is_set, init_checkpoint=init_checkpoint,
        out_dir=out_dir, predict_every=request.predict_every or None, background=True, **view,
    )  # fmt: skip
    yield from _review_updates(events, task, stop_flag, overlays_ready)


def _review_updates(events, task, stop_flag, overlays_ready) -> Iterator[Any]:
    """``events`` with each ``Predictions`` turned into a :class:`ReviewUpdate` (then a bounded
    pause until ``overlays_ready``)."""
    full = _FullPredictions()
    features = None
    for event in events:
        if features is None:  # once, while the engine encodes (~1.5 s for 200 slices of 512²)
            features = stack_features(task.image, task.rgb)
        if isinstance(event, Predictions):
            update = dataclasses.replace(full.add(event), features=features)
            if overlays_ready is not None:
                overlays_ready.clear()  # the view sets it once these maps are on screen
            yield update
            if overlays_ready is not None:
                deadline = time.monotonic() + OVERLAY_WAIT_S
                while not (overlays_ready.is_set() or stop_flag.is_set()):
                    if time.monotonic() > deadline:
                        break
                    overlays_ready.wait(0.05)
        else:
            yield event
