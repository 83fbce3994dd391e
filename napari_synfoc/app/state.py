"""The controller's state, grouped: the model it holds (:class:`ModelState`) and the running or
last job (:class:`RunState`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .process_tweaks import GcFreeze


@dataclass
class ModelState:
    """The latest model: its checkpoint and what it was trained on (saved in sessions)."""

    checkpoint: Path | None = None  # latest checkpoint or loaded session
    config: dict[str, Any] | None = None  # the checkpoint's config
    labeled: list[int] = field(default_factory=list)  # the slices it was trained on
    image_shape: tuple[int, ...] = ()  # the spatial shape of its image
    intensity: dict[str, Any] | None = None  # {"mode", "window"} of its image
    init_checkpoint: Path | None = None  # what the last run warm-started from (None: cold)


@dataclass
class RunState:
    """The running or last job (training or prediction).

    ``running``: a training run is in progress.  ``stop_flag``: Stop was asked.
    ``overlays_ready``: set when no overlay layer is left to build (training may go on).
    ``outcome``: "done", "cancelled" or "failed" once the last job ended.
    """

    running: bool = False
    stop_flag: threading.Event = field(default_factory=threading.Event)
    overlays_ready: threading.Event = field(default_factory=threading.Event)
    outcome: str | None = None
    count: int = 0  # training runs started
    target: Any = None  # handed back with the run's maps
    event_counts: dict[str, int] = field(default_factory=dict)
    device: str = ""
    start_iteration: int = 0
    peak_mb: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    t0: float = 0.0
    labels_edited: bool = False  # the user painted while the run went on
    pending: Any = None  # a RunRequest queued by Train while the last run was stopping
    gc: GcFreeze = field(default_factory=GcFreeze)

    def begin(self, target: Any = None) -> None:
        """A new training run: fresh flags and counters."""
        self.stop_flag = threading.Event()
        self.overlays_ready = threading.Event()
        self.target = target
        self.labels_edited = False
        self.outcome = None
        self.event_counts = {}
        self.start_iteration = 0
        self.device = ""
        self.t0 = time.perf_counter()

    def seconds_per_iteration(self) -> float | None:
        """The last run's median seconds per iteration (its first two steps left out: they
        warm up); None before three steps."""
        steps = self.step_seconds[2:]
        if not steps:
            return None
        return float(sorted(steps)[len(steps) // 2])
