"""Box propagation (Qt-free): boxes drawn on a few slices are interpolated over the slices
between them, each slice is segmented in the job runner, and the results wait as proposals until
accepted.  Proposals from the models (issue 21) go the same way, boxed by the ensemble's masks.
:class:`BoxPropagation` is ``controller.prompts.propagation``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..config import (
    PROPOSALS_FILL_BETWEEN,
    PROPOSALS_MIN_3D_PART,
    PROPOSALS_WITHIN_LABELLED_EXTENT,
)
from ..core import label_edit as le
from .jobs import JobRunner
from .slice_edit import SliceEdit, emptied


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


def propagation_plan(
    shapes: Sequence[np.ndarray], labels_shape: Sequence[int]
) -> dict[int, tuple[float, ...]]:
    """``{z: box}`` for every slice between the boxes (Shapes rectangles, one per slice, on at
    least two slices of a ``(Z, Y, X)`` image); ``ValueError`` naming the slice otherwise."""
    from ..core import prompting as P

    verts = boxes_by_slice(shapes, 3)
    if len(verts) < 2:
        raise ValueError(f"boxes on {len(verts)} slice(s): draw boxes on at least two slices")
    hw = tuple(labels_shape[1:])
    boxes = {}
    for z, v in verts.items():
        if not 0 <= z < labels_shape[0]:
            raise ValueError(f"box on slice {z} outside slices 0..{labels_shape[0] - 1}")
        boxes[z] = P.check_box(P.box_from_napari(v, z), hw, where=f"box on slice {z}")
    return P.interpolate_boxes(boxes)


def _models_problem(image, labels_shape, ensemble_label, slices) -> str | None:
    """Why proposals from the models cannot start on these inputs (None: they can)."""
    if image is None:
        return "No image: choose an Image layer before asking the models for proposals."
    if labels_shape is None or len(labels_shape) != 3:
        return "Proposals from the models need a (Z, Y, X) image and Labels layer."
    if ensemble_label is None:
        return "No predictions yet: Train first, then ask the models for proposals."
    if tuple(np.shape(ensemble_label)) != tuple(labels_shape):
        return (
            f"The predictions' shape {np.shape(ensemble_label)} does not match the Labels "
            f"layer's {tuple(labels_shape)}: train on these layers first."
        )
    if not len(slices):
        return "No slices to propose on: every predicted slice is labelled already."
    return None


class BoxPropagation:
    """Box propagation and its proposals.

    Parameters
    ----------
    say : callable
        ``say(text, error=False)``: a message for the user.
    jobs : JobRunner
        Runs the propagation.
    segmenter : callable
        Returns the prompt model (built on first use by the caller).
    prepare : callable
        ``prepare(image, rgb)``: the image's slices normalised for the prompt model.
    mode : callable
        Returns the current edit mode ("replace" or "add") for :meth:`accept`.
    """

    def __init__(
        self,
        say: Callable[..., None],
        jobs: JobRunner,
        segmenter: Callable[[], Any],
        prepare: Callable[[np.ndarray, bool], list[np.ndarray]],
        mode: Callable[[], str],
    ):
        self.say, self.jobs = say, jobs
        self._segmenter, self._prepare, self._mode = segmenter, prepare, mode
        self.proposals: dict[int, np.ndarray] = {}
        self.cls = 1  # the class the proposals are written as
        self.plan: dict[int, tuple[float, ...]] = {}
        self.stop_flag = threading.Event()
        self.outcome: str | None = None
        # proposals from the models stay inside the class's labelled extent (config)
        self.within_labelled_extent = PROPOSALS_WITHIN_LABELLED_EXTENT
        self.skipped: list[int] = []  # slices the last proposals left out (outside the extent)
        # proposals from the models drop 3-D parts under this fraction of the largest (config)
        self.min_part_fraction = PROPOSALS_MIN_3D_PART
        self.dropped_parts = 0  # parts the last proposals dropped
        # proposals from the models fill the slices between two labelled slices that hold the
        # class by interpolating their masks (config), the models' masks elsewhere
        self.fill_between = PROPOSALS_FILL_BETWEEN
        self.interpolated: list[int] = []  # slices the last proposals filled by interpolation
        # {class: slices} written by accepting proposals of that class: such a slice says
        # nothing about the other classes (no one looked for them there)
        self.accepted: dict[int, set[int]] = {}

    @property
    def running(self) -> bool:
        return self.jobs.busy

    def start(
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
        if self.running:
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
            plan = propagation_plan(shapes, labels_shape)
        except ValueError as exc:
            self.say(f"Box propagation: {exc}", error=True)
            return False

        def segment(seg, prepared, z):
            return seg.segment_with_box(prepared[z], plan[z])

        what = "Box propagation"
        self.skipped = []
        self.say(f"Propagating boxes over {len(plan)} slices ({min(plan)}..{max(plan)})…")
        return self._launch(what, plan, segment, image, rgb, int(cls), on_slice, on_finished)

    def start_from_models(
        self,
        image: np.ndarray | None,
        labels_shape: Sequence[int] | None,
        ensemble_label: np.ndarray | None,
        slices: Sequence[int],
        *,
        cls: int = 1,
        rgb: bool = False,
        labels: np.ndarray | None = None,
        labeled: Sequence[int] = (),
        on_slice: Callable[[int, np.ndarray, int, int], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> bool:
        """Propose from the models (issue 21): on each of ``slices``, LiteMedSAM boxed by each
        part of the ensemble's class-``cls`` mask (:func:`~napari_synfoc.core.model_prompts.
        model_prompted_mask`), as proposals accepted like box propagation's.  With ``labels``
        and its ``labeled`` slices, and :attr:`within_labelled_extent` on, slices beyond the
        class's labelled extent (:func:`~napari_synfoc.core.model_prompts.labelled_extent`) are
        left out (:attr:`skipped`).  With ``labels`` and :attr:`fill_between` on, a slice between
        two labelled slices that both hold the class gets their masks' interpolation instead
        (:func:`~napari_synfoc.core.slice_interpolation.fill_between`; listed in
        :attr:`interpolated` once proposed).  False (with a message) when it cannot start."""
        from ..core.model_prompts import (
            drop_small_parts_3d,
            extent_from_holds,
            model_prompted_mask,
        )

        if self.running:
            self.say("Box propagation is already running: stop it first.", error=True)
            return False
        problem = _models_problem(image, labels_shape, ensemble_label, slices)
        todo = sorted({int(z) for z in slices})
        masks = {} if problem or labels is None else self._class_masks(labels, labeled, int(cls))
        extent = None
        if masks and self.within_labelled_extent:
            extent = extent_from_holds({z: bool(m.any()) for z, m in masks.items()}, len(labels))
        skipped = [z for z in todo if extent and not extent[0] <= z <= extent[1]]
        self.skipped = skipped
        if not problem and len(skipped) == len(todo):
            problem = (
                f"No slices to propose on: class {cls} is labelled only on slices "
                f"{extent[0]}..{extent[1]}, and every predicted unlabelled slice lies outside."
            )
        if problem:
            self.say(problem, error=True)
            return False
        plan = {z: () for z in todo if z not in skipped}
        # the rows as they are now: the review maps are updated in place by later predictions
        ens = {z: np.asarray(ensemble_label[z]) == cls for z in plan}
        fill = self._fill_source(masks if self.fill_between else {}, plan)

        def segment(seg, prepared, z):
            mask = fill(z)
            if mask is not None:
                return mask
            return model_prompted_mask(lambda b: seg.segment_with_box(prepared[z], b), ens[z])[0]

        where = ""
        if skipped:
            where = (
                f" inside class {cls}'s labelled extent {extent[0]}..{extent[1]} "
                f"({len(skipped)} slices beyond it left out)"
            )
        post = None
        frac = float(self.min_part_fraction)
        if frac > 0 and labels is not None:

            def post(masks):  # in the worker, once every slice has its proposal
                changed, self.dropped_parts = drop_small_parts_3d(masks, labels, int(cls), frac)
                return changed

        self.say(f"Proposals from the models on {len(plan)} slices{where}…")
        what = "Proposals from the models"
        return self._launch(
            what, plan, segment, image, rgb, int(cls), on_slice, on_finished, post=post
        )

    def _fill_source(self, known: Mapping[int, np.ndarray], plan):
        """``fill(z)``: the mask of slice ``z`` interpolated from ``known`` (the class's mask on
        each labelled slice; listed in :attr:`interpolated`), or None where the models should
        propose.  The interpolation runs in the worker, on the first call."""
        self.interpolated = []
        filled: dict[int, np.ndarray] | None = None

        def fill(z: int) -> np.ndarray | None:
            nonlocal filled
            if filled is None:
                from ..core.slice_interpolation import fill_between

                filled = fill_between(known, plan) if known else {}
            if z in filled:
                self.interpolated.append(z)
            return filled.get(z)

        return fill

    def _class_masks(self, labels, labeled: Sequence[int], cls: int) -> dict[int, np.ndarray]:
        """The class's mask on each labelled slice that speaks for it (:meth:`labeled_for`), as
        it is now: read once, for the extent and the fill (the user may edit while the worker
        runs)."""
        n = len(labels)
        return {
            z: np.asarray(labels[z]) == cls
            for z in self.labeled_for(labels, labeled, cls)
            if 0 <= z < n
        }

    def labeled_for(self, labels, labeled: Sequence[int], cls: int) -> list[int]:
        """The labelled slices that speak for class ``cls``: those of ``labeled`` except the
        ones labelled only by accepting another class's proposals (they do not hold ``cls``
        because no one looked for it there, not because it is absent)."""
        other = set().union(*(v for k, v in self.accepted.items() if k != cls))
        return [
            int(z)
            for z in labeled
            if int(z) not in other or (np.asarray(labels[int(z)]) == cls).any()
        ]

    def _launch(
        self, what, plan, segment, image, rgb, cls, on_slice, on_finished, post=None
    ) -> bool:
        """Run ``segment(seg, prepared, z)`` over ``plan``'s slices in the job runner; each
        finished slice is a proposal (see :meth:`start`).  ``post(masks) -> {slice: mask}``:
        run in the worker once every slice is done; the slices it returns are proposed again."""
        self.proposals, self.plan, self.cls = {}, plan, int(cls)
        self.dropped_parts = 0
        self.stop_flag = threading.Event()
        self.outcome = None
        stop = self.stop_flag
        seg = self._segmenter()

        def events():
            prepared = self._prepare(image, rgb)
            total = len(plan)
            masks = {}
            for i, z in enumerate(sorted(plan)):
                if stop.is_set():
                    return
                masks[z] = np.asarray(segment(seg, prepared, z), bool)
                yield z, masks[z], i + 1, total
            if post is not None and not stop.is_set():
                for z, mask in sorted(post(masks).items()):
                    yield z, mask, total, total

        def got(ev):
            z, mask, done, total = ev
            self.proposals[z] = mask
            if on_slice is not None:
                on_slice(z, mask, done, total)

        def failed(exc):
            self.outcome = "failed"
            self.say(f"{what} failed: {type(exc).__name__}: {exc}", error=True)

        def finished():
            if self.outcome is None:
                self.outcome = "cancelled" if stop.is_set() else "done"
            n = len(self.proposals)
            tail = " (stopped)" if stop.is_set() else ""
            if self.dropped_parts:
                tail += f" ({self.dropped_parts} small 3-D parts left out)"
            if self.interpolated:
                tail += f" ({len(self.interpolated)} slices filled between labelled slices)"
            if self.outcome != "failed":
                self.say(
                    f"{what}{tail}: proposals on {n} of {len(plan)} slices "
                    f"({min(plan)}..{max(plan)}); accept them slice by slice or all at once."
                )
            if on_finished is not None:
                on_finished()

        self.jobs.start_events(events(), got, failed, finished)
        return True

    def stop(self) -> bool:
        """Ask the propagation to stop before its next slice; False when none runs."""
        if not self.running:
            return False
        self.stop_flag.set()
        return True

    def accept(self, labels, slices: Sequence[int] | None = None) -> SliceEdit | None:
        """One edit writing the proposals of ``slices`` (default: all) into ``labels`` with the
        current mode; accepted slices leave :attr:`proposals`."""
        mode = self._mode()
        if self.running:
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
        edit = le.masks_edit(lab, masks, self.cls, mode)
        for z in todo:
            del self.proposals[z]
        self.accepted.setdefault(self.cls, set()).update(todo)
        self.say(
            f"Accepted the proposals of {len(todo)} slice(s) ({edit.size} px changed, "
            f"{mode}; Ctrl-Z undoes it); they count as labelled."
        )
        return SliceEdit(todo, edit, emptied(lab, edit, todo))
