"""The controller's review part (Qt-free; ``controller.review``): maps, ranking, accept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import RANK_Z_SPREAD
from ..core.label_edit import LabelEdit
from ..core.quality import QualityEstimate
from ..core.review import (
    DEFAULT_ACQUISITION,
    ReviewMaps,
    acquisition_scores,
    rank_slices,
    slice_changes,
)
from .region_fix import SOURCES
from .review_quality import accept_above_edit, quality_estimate
from .slice_edit import SliceEdit, emptied
from .view import Notices

NO_LABELS = (
    "There is no Labels layer to accept into: choose one in Labels (or add one with "
    "Layers > New Labels layer), then Accept again."
)


def _size(shape: Sequence[int]) -> str:
    return " × ".join(str(int(s)) for s in shape)


class Review:
    """The latest review maps, the slice ranking, the next uncertain slice and accept.

    ``maps``: the latest :class:`~napari_synfoc.core.review.ReviewMaps` (None before any);
    ``target``: what they belong to (opaque; the dock's image layer); ``covered``: the slices
    that hold predictions (None: all); ``visited``: slices :meth:`next_uncertain` showed since;
    ``updates``: how many times maps arrived.
    """

    def __init__(self, notices: Notices):
        self.notices = notices
        self.maps: ReviewMaps | None = None
        self.target: Any = None
        self.covered: set[int] | None = None
        self.visited: set[int] = set()
        self.updates = 0
        # how the table ranks slices (core.review.ACQUISITIONS); "diverse" needs slice features
        self.acquisition: str = DEFAULT_ACQUISITION
        self.slice_features: np.ndarray | None = None
        # a volume: spread the picks in z (core.review.z_spread_weights); off for a stack of
        # separate images (the dock follows the Prompt panel's "fill between" box)
        self.z_spread: bool = RANK_Z_SPREAD
        # the quality estimate's continuity rule (core.quality.continuity_zeros; None: config)
        self.continuity: bool | None = None
        self.estimate: QualityEstimate | None = None  # the last quality(), for these maps
        self._estimate_maps: ReviewMaps | None = None

    def set_volume(self, volume: bool) -> None:
        """Whether the slices form a volume (the Prompt panel's "fill between labelled slices"
        box): only then does the ranking spread its picks in z (:data:`RANK_Z_SPREAD`) and the
        quality estimate use its continuity rule (the config's ``CONTINUITY``)."""
        self.z_spread = bool(volume) and RANK_Z_SPREAD
        self.continuity = None if volume else False

    def say(self, text: str, error: bool = False, notify: bool = True) -> None:
        self.notices.say(text, error, notify)

    def set_maps(
        self, maps: ReviewMaps, target: Any, covered: Sequence[int] | None = None,
        features: np.ndarray | None = None,
    ) -> bool:  # fmt: skip
        """New review maps for ``target``; True while the view still builds overlay layers.

        ``covered``: the slices that hold predictions (None: all); only they are ranked.
        ``features``: the stack's :func:`~napari_synfoc.core.review.slice_features`, for the
        ``"diverse"`` ranking (kept until new maps bring others).
        """
        if (
            features is not None
            or self.maps is None
            or len(maps.slice_scores) != len(self.maps.slice_scores)
        ):
            self.slice_features = features
        self.maps = maps
        self.target = target
        self.covered = None if covered is None else {int(z) for z in covered}
        self.visited.clear()
        self.updates += 1
        pending = bool(self.notices.view.show_maps(maps, target))
        self.notices.view.changed()
        return pending

    def maps_fit(self, labels_shape: Sequence[int] | None) -> bool:
        """True if a labels array of ``labels_shape`` matches the current maps."""
        if self.maps is None or labels_shape is None:
            return False
        want = self.maps.fm_label.shape
        have = tuple(labels_shape)
        return have == (want[1:] if len(have) == 2 else want)

    def labels_problem(self, labels) -> str | None:
        """Why the prediction cannot be accepted into ``labels`` (None: it can)."""
        if labels is None:
            return NO_LABELS
        if self.maps_fit(np.shape(labels)):
            return None
        return (
            f"The Labels layer is {_size(np.shape(labels))} voxels but the predictions are "
            f"{_size(self.maps.fm_label.shape)}: choose the Labels layer of the predicted image "
            "in Labels, then Accept again."
        )

    def priorities(self, labeled: Sequence[int] = ()) -> np.ndarray:
        """Per-slice "label me next" score: :func:`~napari_synfoc.core.review.acquisition_scores`
        by :attr:`acquisition` ("diverse": disagreement times the distance in appearance to the
        nearest labelled slice, so a labelled slice's look-alike neighbours rank lower), times
        the distance in z to the nearest labelled slice while :attr:`z_spread` is on."""
        if self.maps is None:
            return np.zeros(0)
        # without features (maps set by a script) novelty is 1: the disagreement order
        q = self.predicted_dice() if self.acquisition == "gain" else None
        return acquisition_scores(
            self.maps.slice_scores, labeled, self.slice_features, self.acquisition, q,
            z_spread=self.z_spread,
        )  # fmt: skip

    # ------------------------------------------------------------------ quality (issue 21)
    def quality(self, labels, labeled: Sequence[int] = (), trained: Sequence[int] = ()):
        """The predicted Dice of every slice (:mod:`~napari_synfoc.core.quality`), calibrated on
        the ``labeled`` slices of ``labels``; ``trained``: the slices the model that made these
        maps was trained on (they count less).  Kept for the "gain" ranking; None before maps."""
        if self.maps is None:
            return None
        self.estimate = quality_estimate(
            self.maps, labels, labeled, trained, continuity=self.continuity
        )
        self._estimate_maps = self.maps
        return self.estimate

    def predicted_dice(self) -> np.ndarray | None:
        """The last :meth:`quality` for the current maps, else the uncalibrated prior."""
        if self.maps is None:
            return None
        if self.estimate is None or self._estimate_maps is not self.maps:
            return quality_estimate(self.maps, None).predicted
        return self.estimate.predicted

    def accept_above(
        self, labels, q: float, labeled: Sequence[int] = (), trained: Sequence[int] = ()
    ) -> SliceEdit | None:
        """One edit accepting the ensemble on every unlabelled predicted slice estimated at
        Dice >= ``q`` (one undoable step); None (with a message) when it cannot."""
        if self.maps is None:
            self.say("No predictions yet: train first.", error=True, notify=False)
            return None
        problem = self.labels_problem(labels)
        if problem is None and np.ndim(labels) != 3:
            problem = "Accept above q works on a stack of slices: this Labels layer is 2D."
        if problem:
            self.say(problem, error=True)
            return None
        est = self.quality(labels, labeled, trained)
        done = {int(z) for z in labeled}
        todo = [z for z in range(len(est.predicted)) if z not in done and self._predicted(z)]
        se = accept_above_edit(self.maps, labels, est, q, todo)
        self.say(
            f"Accepted the ensemble on {len(se.slices)} slice(s) estimated at Dice >= {q:.2f} "
            f"({se.size} voxels changed; Ctrl-Z undoes it)." if se.slices else
            f"No unlabelled slice is estimated at Dice >= {q:.2f}: nothing accepted.",
            notify=False,
        )  # fmt: skip
        return se

    def ranking(self, labeled: Sequence[int] = ()) -> list[int]:
        """Unlabelled predicted slices by descending :meth:`priorities` (empty before
        predictions exist)."""
        if self.maps is None:
            return []
        done = {int(z) for z in labeled}
        order = rank_slices(self.priorities(done), done)
        return [z for z in order if z not in done and self._predicted(z)]

    def _predicted(self, z: int) -> bool:
        return self.covered is None or z in self.covered

    def table(self, labeled: Sequence[int] = ()) -> tuple[list[int], Any]:
        """Every slice in review-table order (unlabelled first) and the per-slice scores
        (:meth:`priorities`; labelled slices score 0)."""
        if self.maps is None:
            return [], []
        done = {int(z) for z in labeled}
        scores = self.priorities(done)
        order = rank_slices(scores, done)
        return [z for z in order if z in done or self._predicted(z)], scores

    def next_uncertain(self, labeled: Sequence[int] = ()) -> int | None:
        """The most uncertain unlabelled slice not visited since the last predictions."""
        if self.maps is None:
            self.say("No predictions yet: train first.", error=True, notify=False)
            return None
        order = self.ranking(labeled)
        if not order:
            self.say("Every slice is labelled.", notify=False)
            return None
        todo = [z for z in order if z not in self.visited]
        if not todo:
            self.visited.clear()
            todo = order
        z = todo[0]
        self.visited.add(z)
        self.say(
            f"Slice {z}: priority {self.priorities(labeled)[z]:.4f}, disagreement "
            f"{self.maps.slice_scores[z]:.4f} (rank {order.index(z) + 1} of {len(order)} "
            "unlabelled).",
            notify=False,
        )
        return z

    def accept(
        self, labels: np.ndarray | None, slice_index: int, source: str = "ensemble",
        keep_existing: bool = False,
    ) -> SliceEdit | None:  # fmt: skip
        """The edit that writes the ``source`` prediction into one slice, or None (message).

        ``source`` is "medsam", "unet" or "ensemble".  The caller applies ``edit.edit`` (one
        undoable step) and marks its ``empty_slices`` labelled.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; choose from {tuple(SOURCES)}")
        if self.maps is None:
            self.say("No predictions yet: train first.", error=True, notify=False)
            return None
        problem = self.labels_problem(labels)
        if problem:
            self.say(problem, error=True)
            return None
        z = int(slice_index)
        lab = np.asarray(labels)
        idx, values = slice_changes(lab, z, self.maps.proposal(source)[z], keep_existing)
        edit = LabelEdit(idx, lab[idx], np.asarray(values))
        self.say(
            f"Accepted the {SOURCES[source]} prediction into slice {z} ({values.size} voxels "
            "changed; Ctrl-Z on the Labels layer undoes it).",
            notify=False,
        )
        return SliceEdit([z], edit, emptied(lab, edit, [z]))
