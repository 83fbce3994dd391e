"""Prompted labelling without Qt or napari: boxes, clicks, fixes where the models disagree,
box propagation.  The dock's prompt tool (:mod:`.prompt_tool`) hands plain arrays in and applies
the returned :class:`PromptEdit` to the Labels layer as one undoable step.

Coordinates are napari's data coordinates of the image: a box is a Shapes rectangle's vertices
(``4×2`` ``(row, col)`` or ``4×3`` ``(z, row, col)``), points are ``N×2`` / ``N×3``.  The
frozen LiteMedSAM prompt model (:class:`~napari_synfoc.core.prompting.PromptSegmenter`) is built
on first use, so the dock opens without torch.

Edit semantics (:mod:`napari_synfoc.core.label_edit`): ``"replace"``: on that slice the class
becomes the mask (its pixels outside the mask are cleared); ``"add"``: the mask's background
pixels get the class, nothing is removed.  Other classes and other slices are never changed.
Points refine the last mask of the same slice and class: in "add" mode only pixels of that last
mask can be removed again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import label_edit as le
from ..core.label_edit import LabelEdit
from .jobs import JobRunner

SOURCES = {"medsam": "MedSAM", "unet": "U-Net", "ensemble": "ensemble"}


@dataclass
class PromptEdit:
    """What a prompt or an accept changes: ``edit`` goes to ``Labels.data_setitem`` as one
    undoable step; ``empty_slices`` hold no label afterwards (the dock marks them labelled)."""

    slices: list[int]
    edit: LabelEdit
    empty_slices: list[int] = field(default_factory=list)
    mask: np.ndarray | None = None  # the slice's new mask (prompts only)
    seconds: float = 0.0  # time spent computing the mask and the edit

    @property
    def size(self) -> int:
        return self.edit.size


@dataclass
class _Mask:
    z: int
    cls: int
    mask: np.ndarray
    source: str  # "box", "points", "ensemble seed"
    box: tuple | None = None  # the box a "box" mask came from (reused while unchanged)


def _plane(a: np.ndarray, z: int) -> np.ndarray:
    return a if a.ndim == 2 else a[z]


def _emptied(labels: np.ndarray, edit: LabelEdit, slices: Sequence[int]) -> list[int]:
    """The slices of ``slices`` that hold no label once ``edit`` is applied."""
    out = []
    for z in slices:
        after = np.array(_plane(labels, z), copy=True)
        sel = np.ones(edit.old_values.shape, bool) if labels.ndim == 2 else edit.indices[0] == z
        yx = edit.indices[-2:]
        after[yx[0][sel], yx[1][sel]] = edit.new_values[sel]
        if not after.any():
            out.append(int(z))
    return out


def _concat(labels: np.ndarray, parts: Sequence[LabelEdit]) -> LabelEdit:
    idx = tuple(np.concatenate([p.indices[d] for p in parts]) for d in range(labels.ndim))
    return LabelEdit(
        idx,
        np.concatenate([p.old_values for p in parts]),
        np.concatenate([p.new_values for p in parts]),
    )


def boxes_by_slice(shapes: Sequence[np.ndarray], ndim: int) -> dict[int, np.ndarray]:
    """``{z: vertices}`` of Shapes rectangles (3-D vertices); each shape must lie on one slice
    and each slice hold one box, else ``ValueError`` naming the slice."""
    out: dict[int, np.ndarray] = {}
    for i, verts in enumerate(shapes):
        v = np.asarray(verts, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != ndim or ndim != 3:
            raise ValueError(
                f"box {i} has vertices of shape {v.shape}: boxes for propagation are drawn on "
                "the slices of a (Z, Y, X) image"
            )
        zs = np.unique(np.round(v[:, 0]).astype(int))
        if zs.size != 1:
            raise ValueError(f"box {i} spans slices {zs.tolist()}: draw each box on one slice")
        z = int(zs[0])
        if z in out:
            raise ValueError(f"two boxes on slice {z}: keep one box per slice (delete the other)")
        out[z] = v
    return out


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
        self._segmenter: Any = None
        self._prep_key: tuple | None = None
        self._prepared: list[np.ndarray] | None = None
        self.mode = "replace"
        self.base: _Mask | None = None  # what points refine (box mask or ensemble seed)
        self.last: _Mask | None = None  # the last mask written
        self.proposals: dict[int, np.ndarray] = {}
        self.proposal_cls = 1
        self.plan: dict[int, tuple[float, ...]] = {}
        self.stop_flag = threading.Event()
        self.last_message = ""
        self.propagation_outcome: str | None = None

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
                from ..core.prompting import PromptSegmenter

                self._segmenter = PromptSegmenter("litemedsam")
        return self._segmenter

    @property
    def propagating(self) -> bool:
        return self.jobs.busy

    def forget(self) -> None:
        """Forget the last mask and its base (after Clear)."""
        self.base = self.last = None

    def prepared(self, image: np.ndarray, rgb: bool) -> list[np.ndarray]:
        """The image's slices normalised as the trainer does (cached per image array)."""
        from ..core.prompting import prepare_volume

        key = (id(image), np.shape(image), str(getattr(image, "dtype", "")), bool(rgb))
        if self._prepared is None or key != self._prep_key:
            self._prepared = prepare_volume(np.asarray(image), rgb)
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
            plane = _plane(labels, z)
            ys, xs = np.nonzero(last.mask & ~mask & (plane == cls))
            rm_idx = (ys, xs) if labels.ndim == 2 else (np.full(ys.shape, z, ys.dtype), ys, xs)
            rm = LabelEdit(rm_idx, plane[ys, xs].copy(), np.zeros(ys.shape, labels.dtype))
            return _concat(labels, [add, rm])
        return le.mask_edit(labels, zz, mask, cls, self.mode)

    def _result(self, labels, z, mask, cls, source, t0) -> PromptEdit | None:
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
        return PromptEdit([z], edit, _emptied(labels, edit, [z]), mask, took)

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
    ) -> PromptEdit | None:
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
    ) -> PromptEdit | None:
        """One click re-prompts LiteMedSAM seeded with the ensemble's class-``cls`` mask of slice
        ``z`` (``point``: napari ``(row, col)`` or ``(z, row, col)``)."""
        from ..core import prompting as P

        t0 = time.perf_counter()
        z, cls = int(z), int(cls)
        problem = self._check(image, labels, z, rgb, cls) or self._maps_problem(maps, labels)
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
    @staticmethod
    def _maps_problem(maps: Any, labels) -> str | None:
        if maps is None:
            return "No predictions yet: train (or Predict) first to see where the models disagree."
        want = maps.fm_label.shape
        have = tuple(np.shape(labels))
        if have != (want[1:] if len(have) == 2 else want):
            return f"The Labels layer's shape {have} does not match the predictions' {want}."
        return None

    def fix_region(
        self, labels, z: int, point, maps: Any, source: str = "ensemble", keep_existing=False
    ) -> PromptEdit | None:
        """Accept ``source``'s prediction inside the connected M_d (divergence) region under
        ``point`` (napari ``(row, col)`` or ``(z, row, col)``) on slice ``z`` only."""
        from scipy import ndimage as ndi

        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; choose from {tuple(SOURCES)}")
        problem = "No Labels layer: choose one in the dock." if labels is None else None
        if problem is None:
            problem = self._maps_problem(maps, labels)
        if problem:
            self.say(problem, error=True)
            return None
        lab = np.asarray(labels)
        z = int(z)
        p = np.asarray(point, dtype=np.float64).reshape(-1)
        if lab.ndim == 3 and p.size == 3 and int(round(p[0])) != z:
            self.say(f"The click is on slice {int(round(p[0]))}, not slice {z}.", error=True)
            return None
        r, c = (int(round(v)) for v in p[-2:])
        zi = 0 if lab.ndim == 2 else z
        div = np.asarray(maps.divergence[zi]) != 0
        if not (0 <= r < div.shape[0] and 0 <= c < div.shape[1]) or not div[r, c]:
            self.say(
                f"No disagreement (M_d) region at ({r}, {c}) on slice {z}: click inside a "
                "highlighted Divergence (M_d) region.",
                error=True,
            )
            return None
        comp, _ = ndi.label(div, structure=np.ones((3, 3), bool))
        region = comp == comp[r, c]
        plane = _plane(lab, z)
        prop = np.asarray(maps.proposal(source)[zi]).astype(lab.dtype)
        new = np.where(region, prop, plane)
        if keep_existing:
            new = np.where(plane != 0, plane, new)
        ys, xs = np.nonzero(new != plane)
        idx = (ys, xs) if lab.ndim == 2 else (np.full(ys.shape, z, ys.dtype), ys, xs)
        edit = LabelEdit(idx, plane[ys, xs].copy(), new[ys, xs])
        self.say(
            f"Accepted the {SOURCES[source]} prediction in one disagreement region of slice {z} "
            f"({int(region.sum())} px, {edit.size} changed; Ctrl-Z undoes it).",
        )
        return PromptEdit([z], edit, _emptied(lab, edit, [z]))

    # ------------------------------------------------------------------ propagation
    def start_propagation(
        self,
        image: np.ndarray | None,
        labels_shape: Sequence[int] | None,
        shapes: Sequence[np.ndarray],
        *,
        cls: int = 1,
        rgb: bool = False,
        on_slice: Callable[[int, np.ndarray, int, int], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> bool:
        """Interpolate the boxes (Shapes rectangles, one per slice, ≥ 2 slices) over the slices
        between them and segment each in the job runner.  Each finished slice reaches
        ``on_slice(z, mask, done, total)`` whole and is kept in :attr:`proposals`; a stopped run
        keeps the whole slices done so far.  False (with a message) when it cannot start."""
        from ..core import prompting as P

        if self.propagating:
            self.say("Box propagation is already running: stop it first.", error=True)
            return False
        problem = None
        if image is None:
            problem = "No image: choose an Image layer before propagating boxes."
        elif labels_shape is None:
            problem = "No Labels layer: choose one (its shape sets the proposals layer)."
        elif len(labels_shape) != 3:
            problem = "Box propagation needs a (Z, Y, X) image; this one is 2-D."
        if problem:
            self.say(problem, error=True)
            return False
        try:
            verts = boxes_by_slice(shapes, 3)
            if len(verts) < 2:
                raise ValueError(
                    f"boxes on {len(verts)} slice(s): draw boxes on at least two slices"
                )
            hw = tuple(labels_shape[1:])
            boxes = {}
            for z, v in verts.items():
                if not 0 <= z < labels_shape[0]:
                    raise ValueError(f"box on slice {z} outside slices 0..{labels_shape[0] - 1}")
                boxes[z] = P.check_box(P.box_from_napari(v, z), hw, where=f"box on slice {z}")
            plan = P.interpolate_boxes(boxes)
        except ValueError as exc:
            self.say(f"Box propagation: {exc}", error=True)
            return False
        self.proposals, self.plan, self.proposal_cls = {}, plan, int(cls)
        self.stop_flag = threading.Event()
        self.propagation_outcome = None
        stop = self.stop_flag
        seg = self.segmenter

        def events():
            prepared = self.prepared(image, rgb)
            total = len(plan)
            for i, z in enumerate(sorted(plan)):
                if stop.is_set():
                    return
                yield z, np.asarray(seg.segment_with_box(prepared[z], plan[z]), bool), i + 1, total

        def got(ev):
            z, mask, done, total = ev
            self.proposals[z] = mask
            if on_slice is not None:
                on_slice(z, mask, done, total)

        def failed(exc):
            self.propagation_outcome = "failed"
            self.say(f"Box propagation failed: {type(exc).__name__}: {exc}", error=True)

        def finished():
            if self.propagation_outcome is None:
                self.propagation_outcome = "cancelled" if stop.is_set() else "done"
            n = len(self.proposals)
            tail = " (stopped)" if stop.is_set() else ""
            if self.propagation_outcome != "failed":
                self.say(
                    f"Box propagation{tail}: proposals on {n} of {len(plan)} slices "
                    f"({min(plan)}..{max(plan)}); accept them slice by slice or all at once."
                )
            if on_finished is not None:
                on_finished()

        self.say(f"Propagating boxes over {len(plan)} slices ({min(plan)}..{max(plan)})…")
        self.jobs.start_events(events(), got, failed, finished)
        return True

    def stop_propagation(self) -> bool:
        """Ask the propagation to stop before its next slice; False when none runs."""
        if not self.propagating:
            return False
        self.stop_flag.set()
        return True

    def accept_proposals(self, labels, slices: Sequence[int] | None = None) -> PromptEdit | None:
        """One edit writing the proposals of ``slices`` (default: all) into ``labels`` with the
        current mode; accepted slices leave :attr:`proposals`."""
        if self.propagating:
            self.say("Box propagation is still running: wait or stop it first.", error=True)
            return None
        if not self.proposals:
            self.say("No proposals: draw boxes on two or more slices and Propagate.", error=True)
            return None
        todo = sorted(self.proposals) if slices is None else [int(z) for z in slices]
        missing = [z for z in todo if z not in self.proposals]
        if missing:
            self.say(f"No proposal on slice(s) {missing}.", error=True)
            return None
        lab = np.asarray(labels) if labels is not None else None
        if lab is None or lab.ndim != 3 or lab.shape[1:] != self.proposals[todo[0]].shape:
            self.say("The Labels layer does not match the proposals' shape.", error=True)
            return None
        masks: Mapping[int, np.ndarray] = {z: self.proposals[z] for z in todo}
        edit = le.masks_edit(lab, masks, self.proposal_cls, self.mode)
        for z in todo:
            del self.proposals[z]
        self.say(
            f"Accepted the proposals of {len(todo)} slice(s) ({edit.size} px changed, "
            f"{self.mode}; Ctrl-Z undoes it); they count as labelled."
        )
        return PromptEdit(todo, edit, _emptied(lab, edit, todo))
