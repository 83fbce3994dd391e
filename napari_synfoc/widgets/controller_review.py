"""The controller's review actions (Qt-free; see :mod:`.controller`): maps, ranking, accept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.review import (
    DEFAULT_ACQUISITION,
    ReviewMaps,
    acquisition_scores,
    rank_slices,
    slice_changes,
)

SOURCES = {"medsam": "MedSAM", "unet": "U-Net", "ensemble": "ensemble"}


@dataclass
class LabelEdit:
    """What accepting a prediction changes: napari ``data_setitem`` input for one slice.

    ``now_empty``: the slice holds no label after the edit (the dock marks it labelled).
    """

    slice_index: int
    indices: tuple[np.ndarray, ...]
    values: np.ndarray
    now_empty: bool


class ReviewActions:
    """Review maps, ranking, next uncertain slice and accept.

    A mixin of :class:`~.controller.DockController`: it uses the controller's state (``maps``,
    ``covered``, ``visited``, ``view``, ``say``).
    """

    # how the table ranks slices (core.review.ACQUISITIONS); "diverse" needs slice features
    acquisition: str = DEFAULT_ACQUISITION
    slice_features: np.ndarray | None = None

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
        self.maps_target = target
        self.covered = None if covered is None else {int(z) for z in covered}
        self.visited.clear()
        self.prediction_updates += 1
        pending = bool(self.view.show_maps(maps, target))
        self.view.changed()
        return pending

    def maps_fit(self, labels_shape: Sequence[int] | None) -> bool:
        """True if a labels array of ``labels_shape`` matches the current maps."""
        if self.maps is None or labels_shape is None:
            return False
        want = self.maps.fm_label.shape
        have = tuple(labels_shape)
        return have == (want[1:] if len(have) == 2 else want)

    def priorities(self, labeled: Sequence[int] = ()) -> np.ndarray:
        """Per-slice "label me next" score: :func:`~napari_synfoc.core.review.acquisition_scores`
        by :attr:`acquisition` ("diverse": disagreement times the distance in appearance to the
        nearest labelled slice, so a labelled slice's look-alike neighbours rank lower)."""
        if self.maps is None:
            return np.zeros(0)
        # without features (maps set by a script) novelty is 1: the disagreement order
        return acquisition_scores(
            self.maps.slice_scores, labeled, self.slice_features, self.acquisition
        )

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
    ) -> LabelEdit | None:  # fmt: skip
        """The edit that writes the ``source`` prediction into one slice, or None (message).

        ``source`` is "medsam", "unet" or "ensemble".  The caller applies the edit (one undoable
        step) and, when ``now_empty``, marks the slice labelled.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; choose from {tuple(SOURCES)}")
        if self.maps is None:
            self.say("No predictions yet: train first.", error=True, notify=False)
            return None
        if labels is None or not self.maps_fit(np.shape(labels)):
            self.say(
                "The selected Labels layer does not match the predictions' shape "
                f"{self.maps.fm_label.shape}.",
                error=True,
            )
            return None
        z = int(slice_index)
        lab = np.asarray(labels)
        idx, values = slice_changes(lab, z, self.maps.proposal(source)[z], keep_existing)
        after = np.array(lab if lab.ndim == 2 else lab[z], copy=True)
        after[idx if lab.ndim == 2 else idx[1:]] = values
        self.say(
            f"Accepted the {SOURCES[source]} prediction into slice {z} ({values.size} voxels "
            "changed; Ctrl-Z on the Labels layer undoes it).",
            notify=False,
        )
        return LabelEdit(z, idx, values, not after.any())
