"""Typed events the trainer generator yields (no Qt, no napari).

The widget consumes them in napari's ``thread_worker`` ``yielded`` signal; the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Started:
    """Training began: where, on what, and for how long."""

    device: str
    precision: str
    n_labeled: int
    n_unlabeled: int
    iterations: int
    start_iteration: int = 0
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    """A preparatory step (e.g. caching image embeddings): ``done`` of ``total``."""

    message: str
    done: int
    total: int


@dataclass
class Step:
    """One training iteration: every loss term, alpha, and the confident-pixel fraction."""

    iteration: int  # 0-based iteration just finished
    total: int
    losses: dict[str, float]
    alpha: float  # mean SMC alpha over the unlabelled batch
    confident_fraction: float  # fraction of pixels with ensemble max-prob > tau
    lam: float  # consistency weight lambda(t)
    seconds: float  # wall time of this iteration
    memory_mb: float | None = None  # peak VRAM (GPU) or RSS (CPU)

    @classmethod
    def from_logs(
        cls,
        iteration: int,
        total: int,
        logs: dict[str, float],
        seconds: float,
        memory: float | None,
    ) -> Step:
        """A step's event from its logged values (``alpha``, ``confident_fraction`` and
        ``lambda`` get their own fields; the rest are the losses)."""
        own = ("alpha", "confident_fraction", "lambda")
        return cls(
            iteration, total, {k: v for k, v in logs.items() if k not in own}, logs["alpha"],
            logs["confident_fraction"], logs["lambda"], seconds, memory,
        )  # fmt: skip


@dataclass
class Encoding:
    """Frozen-encoder progress: ``done`` of ``total`` slices hold an image embedding.

    Separate from training ``Progress``/``Step``: a GUI shows it in a determinate bar.
    """

    done: int
    total: int


@dataclass
class Predictions:
    """Per-slice class probabilities of both students, at the input slices' resolution.

    ``slices`` None: ``fm_prob`` and ``unet_prob`` are float32 arrays (Z, K, Y, X) covering the
    whole stack.  ``slices`` given (a partial refresh): the arrays are (len(slices), K, Y, X) and
    row ``i`` belongs to stack slice ``slices[i]``; ``n_slices`` is the stack's Z.  Slices not
    listed keep their previous predictions (or have none yet); see :meth:`scatter_into`.

    ``foundation_ready`` (view-first runs with ``unet_first``): one flag per row; False means
    the frozen encoder has not reached that slice yet, so the row holds the U-Net's prediction
    only and ``fm_prob``'s row is zeros, not a prediction (no ensemble, consensus or M_d there
    yet).  None: every row holds both.  A slice holds only the U-Net until an event lists it
    with its flag True (or a whole-stack event arrives).
    """

    iteration: int
    fm_prob: Any
    unet_prob: Any
    slices: tuple[int, ...] | None = None
    n_slices: int | None = None
    foundation_ready: tuple[bool, ...] | None = None

    def covered(self) -> list[int]:
        """The stack slices this event holds a prediction for (the U-Net's at least)."""
        if self.slices is None:
            return list(range(len(self.unet_prob)))
        return [int(z) for z in self.slices]

    def foundation_slices(self) -> list[int]:
        """The slices this event holds both predictions for."""
        rows = self.covered()
        if self.foundation_ready is None:
            return rows
        return [z for z, ok in zip(rows, self.foundation_ready, strict=True) if ok]

    def unet_only_slices(self) -> list[int]:
        """The slices this event holds the U-Net's prediction only for."""
        if self.foundation_ready is None:
            return []
        rows = self.covered()
        return [z for z, ok in zip(rows, self.foundation_ready, strict=True) if not ok]

    def scatter_into(self, fm_full: Any, unet_full: Any) -> list[int]:
        """Write this event's rows into full (Z, K, Y, X) arrays in place: every U-Net row, and
        the foundation rows of the slices it has.  Returns the slices that now hold both."""
        unet_full[self.covered()] = self.unet_prob
        if self.foundation_ready is None:
            fm_full[self.covered()] = self.fm_prob
            return self.covered()
        rows = [i for i, ok in enumerate(self.foundation_ready) if ok]
        idx = self.foundation_slices()
        if rows:
            fm_full[idx] = self.fm_prob[rows]
        return idx


@dataclass
class CheckpointSaved:
    path: Path
    iteration: int


@dataclass
class Done:
    iteration: int
    checkpoint: Path | None
    seconds: float


@dataclass
class Cancelled:
    iteration: int
    checkpoint: Path | None


@dataclass
class Failed:
    """Training stopped on an error; ``checkpoint`` is the last good one (if any)."""

    message: str
    iteration: int
    checkpoint: Path | None = None
    exception: BaseException | None = None


Event = (
    Started
    | Progress
    | Encoding
    | Step
    | Predictions
    | CheckpointSaved
    | Done
    | Cancelled
    | Failed
)
