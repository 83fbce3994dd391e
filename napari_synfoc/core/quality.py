"""Per-slice quality estimate: a predicted Dice for every slice, from the two models' agreement.

Qt-free numpy on the (Z, K, Y, X) class probabilities of the foundation model and the U-Net.

- **Score.** For each slice and foreground class k that the ensemble's label map holds there
  (:data:`PRESENT_BY`), the soft Dice between the two models' probability maps,
  ``2 Σ p_fm·p_un / (Σ p_fm + Σ p_un)`` (:func:`slice_agreement`); the slice's score is the
  lowest over those classes (a slice is as good as its worst class), 1.0 when the ensemble
  predicts no foreground there.
- **Prior.** Uncalibrated, the score itself is the predicted Dice (two models that agree are
  right more often than two that differ).
- **Calibration** (:func:`fit_calibration`) on slices whose true labels are known: a monotone
  (isotonic, pool-adjacent-violators) fit of the slices' true Dice against their score, shrunk
  toward the prior with ``prior_weight`` pseudo-points, so a handful of points moves it a little
  and many points move it all the way.  Slices the models were trained on agree optimistically
  (the models have learnt them), so they weigh ``trained_weight`` each; slices labelled or
  accepted since the predictions were made (the models have not seen them) weigh 1: they are the
  leave-one-out points of the loop.
- **True Dice** of a slice (:func:`slice_dice_true`): the lowest per-class Dice over the classes
  the reference or the prediction holds on that slice, 1.0 when neither holds any.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .slice_boxes import BOX_FIELDS, boxed_slice_dice, class_boxes

# a class counts on a slice when either model's argmax holds at least this many pixels of it
MIN_CLASS_PIXELS = 1
# which classes the estimate scores on a slice: "ensemble" (those the ensemble's label map, what
# Accept writes, holds there) or "either" (those either model predicts, the first version: a
# speck one model alone predicts then set the slice's score to its near-zero agreement although
# it is not in what would be accepted; measured on the CT, benchmarks/quality_study.py: MAE
# 0.161 -> 0.102 over three first runs, docs/results/effort_cpu/quality_study)
PRESENT_BY = "ensemble"
PRIOR_WEIGHT = 4.0  # pseudo-points of the prior y = score in the calibration
TRAINED_WEIGHT = 0.25  # weight of a slice the models were trained on (optimistic agreement)
# Issue 21: structure continuity in a volume (:func:`continuity_zeros`): a slice whose nearest
# labelled slices on both sides hold a class the ensemble misses there, or whose ensemble holds
# a class beyond that class's labelled extent, is predicted at Dice 0.  Replayed on nine
# distinct CT first-run states (benchmarks/quality_study.py, effort_cpu/quality_study_v2): MAE
# 0.105 -> 0.093; on the loop's three 0.099 -> 0.082; on the three first runs of the loop with
# the ranking spread in z, not used to choose it (effort_cpu/z_spread/quality_study): 0.086 ->
# 0.074 (goal 0.08).  In the loop (seed 0, effort_cpu/z_spread_continuity) accept-above-q took
# the same 41 slices and the run the same 88 interactions.  It assumes a volume: the dock turns
# it off with the "fill between labelled slices" box (a stack of separate images)
CONTINUITY = True


def _probs(fm_prob: np.ndarray, unet_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fm = np.asarray(fm_prob, dtype=np.float32)
    un = np.asarray(unet_prob, dtype=np.float32)
    if fm.shape != un.shape or fm.ndim != 4 or fm.shape[1] < 2:
        raise ValueError(
            "quality estimate: both probability arrays must be (Z, K, Y, X) with K >= 2 and the "
            f"same shape, got {fm.shape} and {un.shape}"
        )
    return fm, un


def slice_agreement(
    fm_prob: np.ndarray,
    unet_prob: np.ndarray,
    min_pixels: int = MIN_CLASS_PIXELS,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    ensemble: np.ndarray | None = None,
    present_by: str = PRESENT_BY,
) -> np.ndarray:
    """Soft Dice between the two models per slice and foreground class: (Z, K-1).

    NaN where the class is absent on the slice (nothing to score): by ``present_by``
    (:data:`PRESENT_BY`), where the ensemble's argmax (``ensemble``, or ``argmax(fm + un)``)
    holds fewer than ``min_pixels`` of it ("ensemble"), or where neither model's argmax does
    ("either").  ``labels``: the two models' argmax maps when already computed ((Z, Y, X) each).
    """
    fm, un = _probs(fm_prob, unet_prob)
    z, k = fm.shape[:2]
    if present_by == "ensemble":
        ens = (fm + un).argmax(axis=1) if ensemble is None else np.asarray(ensemble)
        maps = (ens.reshape(z, -1),)
    elif present_by == "either":
        if labels is None:
            labels = (fm.argmax(axis=1), un.argmax(axis=1))
        maps = tuple(np.asarray(m).reshape(z, -1) for m in labels)
    else:
        raise ValueError(f"present_by must be 'ensemble' or 'either', got {present_by!r}")
    out = np.full((z, k - 1), np.nan)
    for c in range(1, k):
        pf = fm[:, c].reshape(z, -1)
        pu = un[:, c].reshape(z, -1)
        present = np.zeros(z, bool)
        for m in maps:
            present |= (m == c).sum(1) >= min_pixels
        denom = pf.sum(1, dtype=np.float64) + pu.sum(1, dtype=np.float64)
        inter = np.einsum("ij,ij->i", pf, pu, dtype=np.float64)
        soft = 2.0 * inter / np.maximum(denom, 1e-12)
        out[:, c - 1] = np.where(present, soft, np.nan)
    return out


def ensemble_classes_only(agreement: np.ndarray, ensemble_label: np.ndarray) -> np.ndarray:
    """``agreement`` ((Z, K-1)) with NaN wherever the ensemble's label map ((Z, Y, X)) does not
    hold the class on the slice (an agreement computed with ``present_by="either"`` turned into
    the ``"ensemble"`` one; scans the volume: not for the GUI thread)."""
    a = np.array(agreement, dtype=np.float64)
    ens = np.asarray(ensemble_label).reshape(len(ensemble_label), -1)
    for c in range(1, a.shape[1] + 1):
        a[~(ens == c).any(axis=1), c - 1] = np.nan
    return a


def slice_scores(agreement: np.ndarray) -> np.ndarray:
    """One score per slice from :func:`slice_agreement`: the lowest over the classes present,
    1.0 on a slice where no class is present."""
    a = np.asarray(agreement, dtype=np.float64)
    out = np.ones(a.shape[0])
    some = ~np.all(np.isnan(a), axis=1)
    out[some] = np.nanmin(a[some], axis=1)
    return np.clip(out, 0.0, 1.0)


def slice_dice_true(
    pred: np.ndarray, ref: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """Per-slice Dice of label maps ``pred`` against ``ref`` ((Z, Y, X) integers): the lowest
    per-class Dice over the foreground classes either holds on the slice; 1.0 when neither holds
    any foreground."""
    p = np.asarray(pred).reshape(len(pred), -1)
    r = np.asarray(ref).reshape(len(ref), -1)
    if p.shape != r.shape:
        raise ValueError(f"prediction and reference differ in shape: {p.shape} vs {r.shape}")
    k = int(num_classes) if num_classes else int(max(p.max(initial=0), r.max(initial=0))) + 1
    out = np.ones(p.shape[0])
    for c in range(1, k):
        pc, rc = p == c, r == c
        n = pc.sum(1) + rc.sum(1)
        d = np.where(n > 0, 2.0 * (pc & rc).sum(1) / np.maximum(n, 1), 1.0)
        out = np.minimum(out, d)
    return out


def pav(
    x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) least-squares fit of ``y`` on ``x`` by pool-adjacent-violators.

    Returns the knots: the weighted mean ``x`` of each pooled block and its fitted value (both
    ascending).  Ties in ``x`` are pooled first.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64).ravel()
    if not (x.size == y.size == w.size) or x.size == 0:
        raise ValueError("pav: x, y and w must be non-empty and of the same length")
    order = np.argsort(x, kind="mergesort")
    blocks: list[list[float]] = []  # [sum w, sum w*x, sum w*y]
    for i in order:
        xi, yi, wi = x[i], y[i], w[i]
        if blocks and blocks[-1][1] / blocks[-1][0] == xi:  # a tie: pool at once
            b = blocks[-1]
            b[0] += wi
            b[1] += wi * xi
            b[2] += wi * yi
        else:
            blocks.append([wi, wi * xi, wi * yi])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][0] > blocks[-1][2] / blocks[-1][0]:
            last = blocks.pop()
            for j in range(3):
                blocks[-1][j] += last[j]
    bw = np.array([b[0] for b in blocks])
    return np.array([b[1] for b in blocks]) / bw, np.array([b[2] for b in blocks]) / bw


@dataclass(frozen=True)
class Calibration:
    """A monotone map from a slice's agreement score to its predicted Dice.

    ``knots_x`` / ``knots_y``: the isotonic fit (interpolated linearly between knots; beyond
    them it moves one for one with the score, as the prior does); ``weight``: the calibration
    points' total weight; ``prior_weight``: the prior's pseudo-points.  Without points
    (``weight`` 0) the prediction is the score itself.
    """

    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    weight: float = 0.0
    prior_weight: float = PRIOR_WEIGHT

    def predict(self, score: np.ndarray | float) -> np.ndarray:
        """Predicted Dice for ``score`` (array or number): the calibrated fit and the prior
        ``y = score``, weighted ``weight : prior_weight``."""
        s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
        if self.weight <= 0 or not self.knots_x:
            return s
        kx, ky = np.asarray(self.knots_x), np.asarray(self.knots_y)
        fit = np.interp(s, kx, ky)
        # beyond the calibrated range the fit follows the prior's slope (1) from its last knot
        fit = np.where(s < kx[0], ky[0] + s - kx[0], fit)
        fit = np.clip(np.where(s > kx[-1], ky[-1] + s - kx[-1], fit), 0.0, 1.0)
        a = self.weight / (self.weight + self.prior_weight)
        return np.clip(a * fit + (1.0 - a) * s, 0.0, 1.0)


def fit_calibration(
    scores: np.ndarray,
    true_dice: np.ndarray,
    trained: np.ndarray | None = None,
    *,
    trained_weight: float = TRAINED_WEIGHT,
    prior_weight: float = PRIOR_WEIGHT,
) -> Calibration:
    """:class:`Calibration` from slices with known labels: their agreement ``scores``, their
    ``true_dice`` (the predictions against the labels) and which were ``trained`` on (those
    weigh ``trained_weight``, the others 1)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    d = np.asarray(true_dice, dtype=np.float64).ravel()
    if s.size != d.size:
        raise ValueError(f"calibration: {s.size} scores but {d.size} Dice values")
    t = np.zeros(s.size, bool) if trained is None else np.asarray(trained, bool).ravel()
    w = np.where(t, float(trained_weight), 1.0)
    keep = w > 0
    if not keep.any():
        return Calibration(prior_weight=prior_weight)
    kx, ky = pav(s[keep], d[keep], w[keep])
    return Calibration(tuple(kx), tuple(ky), float(w[keep].sum()), prior_weight)


@dataclass
class QualityEstimate:
    """Per-slice predicted Dice (``predicted``, (Z,)), the agreement ``scores`` behind it and
    the :class:`Calibration` used."""

    predicted: np.ndarray
    scores: np.ndarray
    calibration: Calibration

    def above(self, q: float, among: Iterable[int] | None = None) -> list[int]:
        """Slices (of ``among``, default all) whose predicted Dice is at least ``q``, ascending."""
        idx = range(self.predicted.size) if among is None else sorted({int(i) for i in among})
        return [int(i) for i in idx if 0 <= i < self.predicted.size and self.predicted[i] >= q]


def estimate_quality(
    fm_prob: np.ndarray,
    unet_prob: np.ndarray,
    labels: np.ndarray | None = None,
    labeled: Iterable[int] = (),
    trained: Iterable[int] = (),
    **kwargs,
) -> QualityEstimate:
    """:func:`estimate_from_agreement` from the two models' (Z, K, Y, X) probabilities."""
    fm, un = _probs(fm_prob, unet_prob)
    ens = (fm + un).argmax(axis=1)
    return estimate_from_agreement(
        slice_agreement(fm, un), ens, labels, labeled, trained, **kwargs
    )


def estimate_from_agreement(
    agreement: np.ndarray,
    ensemble_label: np.ndarray,
    labels: np.ndarray | None = None,
    labeled: Iterable[int] = (),
    trained: Iterable[int] = (),
    *,
    trained_weight: float = TRAINED_WEIGHT,
    prior_weight: float = PRIOR_WEIGHT,
    continuity: bool | None = None,
    ensemble_boxes: np.ndarray | None = None,
) -> QualityEstimate:
    """Predicted Dice of the ensemble on every slice from the models' per-class ``agreement``
    ((Z, K-1), :func:`slice_agreement`), calibrated on the ``labeled`` slices of ``labels``
    ((Z, Y, X)) against the ensemble's label map ((Z, Y, X)); slices in ``trained`` (the ones
    the predicting models were trained on) weigh ``trained_weight``.  Which classes count on a
    slice is the ``agreement``'s (:func:`slice_agreement`, :data:`PRESENT_BY`): the review maps
    carry it, computed in the worker, so no volume is scanned here (on 300 x 512 x 512 a scan
    of the ensemble's labels stalled the GUI for 225 ms at every refresh).  ``continuity``
    (None: :data:`CONTINUITY`): with ``labels``, slices :func:`continuity_zeros` names are
    predicted at 0.  ``ensemble_boxes``: the ensemble's
    :func:`~napari_synfoc.core.slice_boxes.class_boxes` (the maps carry them; None: computed
    here on the labelled slices), so each labelled slice is read once per class."""
    agree = np.asarray(agreement, dtype=np.float64)
    ens = np.asarray(ensemble_label)
    if agree.ndim != 2 or ens.ndim != 3 or agree.shape[0] != ens.shape[0]:
        raise ValueError(
            f"quality estimate: agreement {agree.shape} and ensemble labels {ens.shape} must "
            "be (Z, K-1) and (Z, Y, X) for the same Z slices"
        )
    scores = slice_scores(agree)
    cal = Calibration(prior_weight=prior_weight)
    lab_idx = sorted({int(z) for z in labeled if 0 <= int(z) < ens.shape[0]})
    if labels is not None and lab_idx:
        lab = np.asarray(labels)
        if lab.shape != ens.shape:
            raise ValueError(
                f"quality estimate: labels of shape {lab.shape} do not match the predictions' "
                f"{ens.shape}"
            )
        k = agree.shape[1] + 1
        boxes = ensemble_boxes
        if boxes is None:
            boxes = np.zeros((ens.shape[0], k - 1, BOX_FIELDS), np.int64)
            boxes[lab_idx] = class_boxes(ens[lab_idx], k)
        true, holds = boxed_slice_dice(ens, boxes, lab, lab_idx, k)
        done = {int(z) for z in trained}
        cal = fit_calibration(
            scores[lab_idx], true, np.array([z in done for z in lab_idx]),
            trained_weight=trained_weight, prior_weight=prior_weight,
        )  # fmt: skip
    predicted = cal.predict(scores)
    if (CONTINUITY if continuity is None else continuity) and labels is not None and lab_idx:
        predicted = np.array(predicted, dtype=np.float64)
        predicted[continuity_zeros(agree, labels, lab_idx, holds=holds)] = 0.0
    return QualityEstimate(predicted, scores, cal)


def continuity_zeros(
    agreement: np.ndarray,
    labels: np.ndarray,
    labeled: Iterable[int],
    *,
    holds: np.ndarray | None = None,
) -> list:
    """Unlabelled slices whose ensemble cannot be right in a volume where each class spans
    one run of slices: a class that the nearest labelled slices on both sides hold is missing
    there (``agreement`` NaN: the ensemble does not hold it), or the ensemble holds a class
    beyond its labelled extent (:func:`~napari_synfoc.core.model_prompts.labelled_extent`).
    Both make the slice's true Dice 0 if the structure really is continuous.  Reads only the
    labelled slices of ``labels`` ((Z, Y, X)), or none with ``holds`` ((n, K-1) bool: which
    classes each labelled slice holds, in ascending slice order)."""
    from .model_prompts import extent_from_holds

    agree = np.asarray(agreement, dtype=np.float64)
    z = agree.shape[0]
    done = sorted({int(i) for i in labeled if 0 <= int(i) < z})
    given = None if holds is None else np.asarray(holds, bool)
    if given is not None and given.shape != (len(done), agree.shape[1]):
        raise ValueError(f"continuity: holds of shape {given.shape} for {len(done)} labelled "
                         f"slices and {agree.shape[1]} classes")  # fmt: skip
    if not done:
        return []
    if given is None:
        given = np.array(
            [[(np.asarray(labels[i]) == c).any() for c in range(1, agree.shape[1] + 1)]
             for i in done]
        ).reshape(len(done), agree.shape[1])  # fmt: skip
    # for every unlabelled slice, its nearest labelled slices below (pos - 1) and above (pos)
    idx = np.arange(z)
    pos = np.searchsorted(np.asarray(done), idx)
    free = np.ones(z, bool)
    free[done] = False
    inside = (pos > 0) & (pos < len(done))
    lo, hi = np.clip(pos - 1, 0, None), np.clip(pos, None, len(done) - 1)
    out = np.zeros(z, bool)
    for c in range(1, agree.shape[1] + 1):
        h = given[:, c - 1]
        present = ~np.isnan(agree[:, c - 1])
        out |= free & inside & h[lo] & h[hi] & ~present
        extent = extent_from_holds(dict(zip(done, h.tolist())), z)
        if extent:
            out |= free & present & ((idx < extent[0]) | (idx > extent[1]))
    return np.flatnonzero(out).tolist()
