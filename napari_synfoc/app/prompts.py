"""Prompted labelling without Qt or napari: boxes, clicks, fixes where the models disagree,
box propagation (``controller.prompts``).  The dock's prompt tool
(:mod:`napari_synfoc.widgets.prompt_tool`) hands plain arrays in and applies the returned
:class:`~.slice_edit.SliceEdit` to the Labels layer as one undoable step.

Coordinates are napari's data coordinates of the image: a box is a Shapes rectangle's vertices
(``4×2`` ``(row, col)`` or ``4×3`` ``(z, row, col)``), points are ``N×2`` / ``N×3``.  The
frozen LiteMedSAM prompt model (:class:`~napari_synfoc.core.prompting.PromptSegmenter`) is built
on first use, so the dock opens without torch.

Edit semantics (:mod:`napari_synfoc.core.label_edit`): ``"replace"``: on that slice the class
becomes the mask (its pixels outside the mask are cleared); ``"add"``: the mask's background
pixels get the class, nothing is removed.  Other classes and other slices are never changed.
Points refine the last mask of the same slice and class: in "add" mode only pixels of that last
mask can be removed again.

Box propagation is the composed :class:`~.propagation.BoxPropagation` (``prompts.propagation``),
the M_d region fix lives in :mod:`.region_fix`, :class:`~.slice_edit.SliceEdit` and its array
helpers in :mod:`.slice_edit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import label_edit as le
from ..core.label_edit import LabelEdit
from .jobs import JobRunner
from .propagation import BoxPropagation
from .region_fix import SOURCES, maps_problem, region_fix_edit
from .slice_edit import SliceEdit, concat_edits, emptied, plane


@dataclass
class _Mask:
    z: int
    cls: int
    mask: np.ndarray
    source: str  # "box", "points", "ensemble seed"
    box: tuple | None = None  # the box a "box" mask came from (reused while unchanged)


class PromptController:
    """Prompt state (last mask, proposals) and actions; every method reports through ``say``.

    Parameters
    ----------
    say : callable, optional
        ``say(text, error)``: a message for the user.
    segmenter_factory : callable, optional
        Builds the :class:`~napari_synfoc.core.prompting.PromptSegmenter` on first use (default:
        the bundled LiteMedSAM).
    jobs : JobRunner, optional
        Runs box propagation (default: a thread, or synchronous with ``SYNFOC_NOTHREADS=1``).

    Attributes
    ----------
    propagation : BoxPropagation
        Box propagation and its proposals (``start``, ``stop``, ``accept``).
    """

    def __init__(
        self,
        say: Callable[[str, bool], None] | None = None,
        segmenter_factory: Callable[[], Any] | None = None,
        jobs: JobRunner | None = None,
    ):
        self._say = say or (lambda text, error=False: None)
        self.segmenter_factory = segmenter_factory
        self.jobs = jobs or JobRunner()
        self.propagation = BoxPropagation(
            self.say, self.jobs, lambda: self.segmenter, self.prepared, lambda: self.mode
        )
        self._segmenter: Any = None
        self._prep_key: tuple | None = None
        self._prepared: list[np.ndarray] | None = None
        self.mode = "replace"
        self.window: tuple[float, float] | None = None  # the dock's intensity choice
        self.base: _Mask | None = None  # what points refine (box mask or ensemble seed)
        self.last: _Mask | None = None  # the last mask written
        self.last_message = ""

    # ------------------------------------------------------------------ state
    def say(self, text: str, error: bool = False) -> None:
        self.last_message = text
        self._say(text, error)

    @property
    def segmenter(self):
        """The frozen prompt model (built on first use)."""
        if self._segmenter is None:
            if self.segmenter_factory is not None:
                self._segmenter = self.segmenter_factory()
            else:
                from ..config import PROFILES
                from ..core.prompting import PromptSegmenter

                # the interactive profile's encoder runtime (OpenVINO/ONNX Runtime on a CPU,
                # torch on a GPU or when neither works; the reason is logged)
                runtime = PROFILES["cpu-interactive"].overrides.get("encoder_runtime", "torch")
                self._segmenter = PromptSegmenter("litemedsam", encoder_runtime=runtime)
        return self._segmenter

    def forget(self) -> None:
        """Forget the last mask and its base (after Clear)."""
        self.base = self.last = None

    def prepared(self, image: np.ndarray, rgb: bool) -> list[np.ndarray]:
        """The image's slices normalised as the trainer does, through ``window`` (the dock's
        intensity choice; None: the percentile stretch); cached per image array and window."""
        from ..core.prompting import prepare_volume

        window = None if self.window is None else tuple(float(v) for v in self.window)
        key = (id(image), np.shape(image), str(getattr(image, "dtype", "")), bool(rgb), window)
        if self._prepared is None or key != self._prep_key:
            self._prepared = prepare_volume(np.asarray(image), rgb, window)
            self.base = None  # a mask from other intensities is not what points refine
            self._prep_key = key
        return self._prepared

    # ------------------------------------------------------------------ checks
    def _check(self, image, labels, z: int, rgb: bool, cls: int) -> str | None:
        if image is None:
            return "No image: choose an Image layer in the dock before prompting."
        if labels is None:
            return "No Labels layer: choose one in the dock (the mask is written there)."
        spatial = np.shape(image)[:-1] if rgb else np.shape(image)
        if tuple(spatial) != tuple(np.shape(labels)):
            return (
                f"The Labels layer's shape {np.shape(labels)} does not match the image's "
                f"{tuple(spatial)}: choose matching layers."
            )
        if np.ndim(labels) not in (2, 3):
            return f"Labels must be (Y, X) or (Z, Y, X), got shape {np.shape(labels)}."
        if np.ndim(labels) == 3 and not 0 <= z < np.shape(labels)[0]:
            return f"Slice {z} is outside the image's slices 0..{np.shape(labels)[0] - 1}."
        if int(cls) < 1:
            return f"Class {cls} is not a foreground class (1 or more)."
        return None

    def _edit(self, labels: np.ndarray, z: int, mask: np.ndarray, cls: int) -> LabelEdit:
        zz = None if labels.ndim == 2 else z
        last = self.last
        if self.mode == "add" and last is not None and (last.z, last.cls) == (z, cls):
            # refining the last mask: pixels it added and the new mask drops are cleared again
            add = le.mask_edit(labels, zz, mask, cls, "add")
            pl = plane(labels, z)
            ys, xs = np.nonzero(last.mask & ~mask & (pl == cls))
            rm_idx = (ys, xs) if labels.ndim == 2 else (np.full(ys.shape, z, ys.dtype), ys, xs)
            rm = LabelEdit(rm_idx, pl[ys, xs].copy(), np.zeros(ys.shape, labels.dtype))
            return concat_edits(labels, [add, rm])
        return le.mask_edit(labels, zz, mask, cls, self.mode)

    def _result(self, labels, z, mask, cls, source, t0) -> SliceEdit | None:
        if not mask.any():
            self.say(
                f"The prompt gave an empty mask on slice {z}: nothing changed; move the box or "
                "add a positive point.",
                error=True,
            )
            return None
        edit = self._edit(labels, z, mask, cls)
        self.last = _Mask(z, cls, mask, source)
        took = time.perf_counter() - t0
        self.say(
            f"Slice {z}, class {cls}: {source} mask of {int(mask.sum())} px ({self.mode}, "
            f"{edit.size} px changed, {took * 1000:.0f} ms; Ctrl-Z undoes it).",
        )
        return SliceEdit([z], edit, emptied(labels, edit, [z]), mask, took)

    # ------------------------------------------------------------------ prompts
    def prompt(
        self,
        image: np.ndarray | None,
        labels: np.ndarray | None,
        z: int,
        *,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        point_labels: Sequence[int] | None = None,
        cls: int = 1,
        rgb: bool = False,
    ) -> SliceEdit | None:
        """Segment slice ``z`` from a box and/or points (napari data coordinates); the edit that
        writes the mask as class ``cls``, or None with a message (nothing to change).

        Points refine the box's mask, or the base of the last prompt on this slice (a box mask or
        an ensemble seed); without either they are the whole prompt.
        """
        from ..core import prompting as P

        t0 = time.perf_counter()
        z, cls = int(z), int(cls)
        problem = self._check(image, labels, z, rgb, cls)
        if problem is None and box is None and (points is None or len(points) == 0):
            problem = f"No prompt on slice {z}: draw a box (B) or place points (P / N) first."
        if problem:
            self.say(problem, error=True)
            return None
        labels = np.asarray(labels)
        zq = None if labels.ndim == 2 else z
        if box is not None and zq is not None and np.shape(box)[-1] == 3:
            on = sorted({int(round(v)) for v in np.asarray(box)[:, 0]})
            if on != [z]:
                self.say(
                    f"Prompt on slice {z}: the box is on slice(s) {on}, not on slice {z}; "
                    "draw it on the current slice.",
                    error=True,
                )
                return None
        try:
            chw = self.prepared(image, rgb)[0 if labels.ndim == 2 else z]
            hw = chw.shape[-2:]
            b = None if box is None else P.check_box(P.box_from_napari(box, zq), hw)
            base = self.base if self.base and (self.base.z, self.base.cls) == (z, cls) else None
            if b is not None and (base is None or base.box != tuple(b)):
                bmask = self.segmenter.segment_with_box(chw, b)
                base = self.base = _Mask(z, cls, bmask, "box", tuple(b))
            if points is not None and len(points):
                xy = P.points_from_napari(points, zq)
                mask = self.segmenter.segment_with_points(
                    chw, xy, list(point_labels), None if base is None else base.mask, box=b
                )
                source = "points" if base is None else f"{base.source} + points"
            else:
                mask, source = base.mask, base.source
        except ValueError as exc:
            self.say(f"Prompt on slice {z}: {exc}", error=True)
            return None
        return self._result(labels, z, np.asarray(mask, bool), cls, source, t0)

    def reprompt_from_ensemble(
        self, image, labels, z: int, point, positive: bool, maps: Any, cls: int = 1, rgb=False
    ) -> SliceEdit | None:
        """One click re-prompts LiteMedSAM seeded with the ensemble's class-``cls`` mask of slice
        ``z`` (``point``: napari ``(row, col)`` or ``(z, row, col)``)."""
        from ..core import prompting as P

        t0 = time.perf_counter()
        z, cls = int(z), int(cls)
        problem = self._check(image, labels, z, rgb, cls) or maps_problem(maps, labels)
        if problem:
            self.say(problem, error=True)
            return None
        labels = np.asarray(labels)
        seed = np.asarray(maps.ensemble_label[0 if labels.ndim == 2 else z] == cls)
        try:
            chw = self.prepared(image, rgb)[0 if labels.ndim == 2 else z]
            xy = P.points_from_napari(point, None if labels.ndim == 2 else z)
            self.base = _Mask(z, cls, seed, "ensemble seed")
            mask = self.segmenter.segment_with_points(chw, xy, [int(positive)], seed)
        except ValueError as exc:
            self.say(f"Re-prompt on slice {z}: {exc}", error=True)
            return None
        sign = "positive" if positive else "negative"
        return self._result(labels, z, np.asarray(mask, bool), cls, f"ensemble + {sign}", t0)

    # ------------------------------------------------------------------ disagreement regions
    def fix_region(
        self, labels, z: int, point, maps: Any, source: str = "ensemble", keep_existing=False
    ) -> SliceEdit | None:
        """Accept ``source``'s prediction inside the connected M_d (divergence) region under
        ``point`` (napari ``(row, col)`` or ``(z, row, col)``) on slice ``z`` only."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; choose from {tuple(SOURCES)}")
        problem = "No Labels layer: choose one in the dock." if labels is None else None
        if problem is None:
            problem = maps_problem(maps, labels)
        if problem:
            self.say(problem, error=True)
            return None
        lab = np.asarray(labels)
        z = int(z)
        try:
            edit, region_px = region_fix_edit(lab, z, point, maps, source, keep_existing)
        except ValueError as exc:
            self.say(str(exc), error=True)
            return None
        self.say(
            f"Accepted the {SOURCES[source]} prediction in one disagreement region of slice {z} "
            f"({region_px} px, {edit.size} changed; Ctrl-Z undoes it).",
        )
        return SliceEdit([z], edit, emptied(lab, edit, [z]))
