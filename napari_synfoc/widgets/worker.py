"""What a training run does in the worker thread (no Qt, no napari): build the task and the
config from snapshots, train, and turn predictions into review maps before the GUI sees them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.events import Failed, Predictions
from ..core.review import ReviewMaps, review_maps
from .jobs import training_source

# Longest pause of training while the GUI builds the overlay layers (about 0.5 s, once a viewer).
OVERLAY_WAIT_S = 5.0


@dataclass
class ReviewUpdate:
    """Predictions turned into review maps in the worker thread (what the GUI receives)."""

    iteration: int
    maps: ReviewMaps


def training_events(
    image, rgb, labels, labeled, extra, folder, params, init_checkpoint, out_dir,
    predict_every, stop_flag, overlays_ready=None, source=None,
):  # fmt: skip
    """Worker-thread generator: build the task and config, train, yield events (no Qt here).

    ``source`` trains and yields events (default: ``train_on_stack``).  After yielding
    predictions, it waits (at most ``OVERLAY_WAIT_S``) until ``overlays_ready`` is set: while the
    GUI thread builds the overlay layers (the first predictions only), training pauses, so the
    GUI thread does not share a 2-core machine with a training step.
    """
    try:
        from .task_builder import build_config, build_task, load_folder_images, match_channels

        extra_arrays = [match_channels(a, rgb, is_rgb) for a, is_rgb in extra]
        if folder:
            extra_arrays += load_folder_images(folder, rgb)
        cfg = build_config(**params)
        task = build_task(image, rgb, labels, labeled, extra_arrays)
        if source is None:
            source = training_source("thread")
    except Exception as exc:  # noqa: BLE001 - reported in the widget
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        yield Failed(msg, 0, None, exc)
        return
    del image, labels, extra
    for event in source(
        task, cfg, should_stop=stop_flag.is_set, init_checkpoint=init_checkpoint,
        out_dir=out_dir, predict_every=predict_every or None, background=True,
    ):  # fmt: skip
        if isinstance(event, Predictions):
            yield ReviewUpdate(event.iteration, review_maps(event.fm_prob, event.unet_prob))
            if overlays_ready is not None:
                deadline = time.monotonic() + OVERLAY_WAIT_S
                while not (overlays_ready.is_set() or stop_flag.is_set()):
                    if time.monotonic() > deadline:
                        break
                    overlays_ready.wait(0.05)
        else:
            yield event
