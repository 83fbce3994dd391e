"""What one training run needs (:class:`RunRequest`): the task snapshot and the dock's choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.task import StackTask


@dataclass(frozen=True)
class RunRequest:
    """A training run to start, as :meth:`~.controller.AppController.start_run` takes it.

    ``task`` holds snapshots (the labels already copied).  ``params`` are
    :func:`.task_builder.build_config` arguments (profile, device, foundation, checkpoint,
    iterations, overrides).  ``folder``'s images are added as unlabelled data in the worker.
    ``predict_every``: predictions every that many iterations (0: the config's).
    ``warm_start``: continue from the latest checkpoint (its architecture is kept).
    ``target``: opaque, handed back with the maps (the dock passes the image layer).
    ``image_name`` / ``labels_name`` name the layers in messages.  ``overlays_exist``: the front
    end need not build overlay layers, so training never waits for it.  ``view_slice``: the slice
    in view (a frozen encoder starts there).  ``intensity_mode`` names the choice behind
    ``task.intensity_window`` (saved in sessions).
    """

    task: StackTask
    params: dict[str, Any] = field(default_factory=dict)
    folder: str | None = None
    predict_every: int = 0
    warm_start: bool = False
    target: Any = None
    image_name: str | None = None
    labels_name: str | None = None
    overlays_exist: bool = False
    view_slice: int | None = None
    intensity_mode: str | None = None
