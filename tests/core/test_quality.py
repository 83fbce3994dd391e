"""Per-slice quality estimate (core.quality): hand-computed expectations."""

import numpy as np
import pytest

from napari_synfoc.core.quality import (
    Calibration,
    estimate_quality,
    fit_calibration,
    pav,
    slice_agreement,
    slice_dice_true,
    slice_scores,
)


def _two_class(p1: np.ndarray) -> np.ndarray:
    """(Z, 2, Y, X) probabilities from the class-1 probability (Z, Y, X)."""
    p1 = np.asarray(p1, np.float32)
    return np.stack([1.0 - p1, p1], axis=1)


def test_agreement_is_the_soft_dice_between_the_models():
    fm = _two_class([[[1, 1], [0, 0]]])
    un = _two_class([[[1, 0], [0, 0]]])
    # 2 * (1*1) / (2 + 1)
    assert slice_agreement(fm, un)[0, 0] == pytest.approx(2 / 3)
    soft = _two_class([[[0.8, 0.6], [0.0, 0.0]]])
    # 2 * (0.8*1 + 0.6*1) / (1.4 + 2) = 2.8 / 3.4
    assert slice_agreement(soft, fm)[0, 0] == pytest.approx(2.8 / 3.4, rel=1e-6)


def test_absent_class_is_nan_and_an_empty_slice_scores_one():
    fm = _two_class(np.zeros((2, 2, 2)))
    un = _two_class(np.zeros((2, 2, 2)))
    un[1, :, 0, 0] = [0.3, 0.7]  # the U-Net alone predicts one pixel on slice 1
    a = slice_agreement(fm, un, present_by="either")
    assert np.isnan(a[0, 0])
    # 2 * 0 / (0 + 0.7)
    assert a[1, 0] == pytest.approx(0.0)
    np.testing.assert_allclose(slice_scores(a), [1.0, 0.0])
    # the dock's rule: the ensemble (1.3 background against 0.7) holds nothing on slice 1
    a = slice_agreement(fm, un)
    assert np.isnan(a).all()
    np.testing.assert_allclose(slice_scores(a), [1.0, 1.0])


def test_slice_score_is_the_worst_class():
    a = np.array([[0.9, 0.4], [0.8, np.nan], [np.nan, np.nan]])
    np.testing.assert_allclose(slice_scores(a), [0.4, 0.8, 1.0])


def test_true_dice_lowest_class_and_empty_is_one():
    ref = np.array([[[1, 1, 0, 2]], [[0, 0, 0, 0]], [[0, 0, 0, 0]]])
    pred = np.array([[[1, 0, 0, 2]], [[0, 0, 0, 0]], [[0, 1, 0, 0]]])
    # slice 0: class 1 2*1/(1+2) = 2/3, class 2 = 1 -> 2/3; slice 1 both empty; slice 2 FP -> 0
    np.testing.assert_allclose(slice_dice_true(pred, ref), [2 / 3, 1.0, 0.0])


def test_pav_pools_violators():
    kx, ky = pav([0, 1, 2, 3], [1, 0, 2, 3])
    np.testing.assert_allclose(kx, [0.5, 2, 3])
    np.testing.assert_allclose(ky, [0.5, 2, 3])
    # weights: the first point weighs 3, so the pooled block sits at (0.25, 0.75)
    kx, ky = pav([0, 1], [1, 0], [3, 1])
    np.testing.assert_allclose(kx, [0.25])
    np.testing.assert_allclose(ky, [0.75])


def test_pav_pools_ties_in_x():
    kx, ky = pav([0.5, 0.5, 1.0], [0.2, 0.6, 0.9])
    np.testing.assert_allclose(kx, [0.5, 1.0])
    np.testing.assert_allclose(ky, [0.4, 0.9])


def test_calibration_shrinks_toward_the_prior():
    # four points all at true Dice 0.5 with score 0.9, prior weight 4: halfway (0.5+0.9)/2
    cal = fit_calibration([0.9] * 4, [0.5] * 4, prior_weight=4.0)
    assert cal.weight == 4.0
    assert float(cal.predict(0.9)) == pytest.approx(0.7)
    # no points: the prediction is the score itself
    assert float(Calibration().predict(0.37)) == pytest.approx(0.37)


def test_trained_slices_weigh_less():
    # two trained slices (weight 0.25 each) and one fresh slice; prior weight 1
    cal = fit_calibration([0.9, 0.9, 0.9], [1.0, 1.0, 0.4], [True, True, False], prior_weight=1.0)
    # pooled fit: (0.25*1 + 0.25*1 + 1*0.4) / 1.5 = 0.6; a = 1.5 / 2.5
    assert cal.weight == pytest.approx(1.5)
    assert float(cal.predict(0.9)) == pytest.approx(0.6 * 0.6 + 0.4 * 0.9)
    ignored = fit_calibration([0.9], [0.1], [True], trained_weight=0.0)
    assert ignored.weight == 0.0 and float(ignored.predict(0.9)) == pytest.approx(0.9)


def test_estimate_quality_calibrates_on_labelled_slices():
    # three slices; the models agree perfectly on slices 0 and 2 (score 1), half on slice 1
    fm = _two_class([[[1, 1], [0, 0]], [[1, 1], [0, 0]], [[1, 0], [0, 0]]])
    un = _two_class([[[1, 1], [0, 0]], [[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    labels = np.zeros((3, 2, 2), np.uint8)
    labels[2] = [[0, 1], [0, 0]]  # slice 2 is labelled: the ensemble there is wrong (Dice 0)
    est = estimate_quality(fm, un, labels, labeled=[2], prior_weight=1.0)
    np.testing.assert_allclose(est.scores, [1.0, 2 / 3, 1.0])
    # one fresh point (1.0 -> 0.0), prior weight 1: predictions are the mean of fit and score
    np.testing.assert_allclose(est.predicted, [0.5, (0.0 + 2 / 3) / 2, 0.5])
    assert est.above(0.4) == [0, 2]
    assert est.above(0.4, among=[1, 2]) == [2]


def test_bad_shapes_have_clear_messages():
    fm = _two_class(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        slice_agreement(fm, fm[:1])
    with pytest.raises(ValueError, match="do not match"):
        estimate_quality(fm, fm, np.zeros((3, 2, 2)), labeled=[0])


def test_review_maps_carry_the_agreement_and_estimate_from_maps_matches():
    from napari_synfoc.core.quality import estimate_from_agreement
    from napari_synfoc.core.review import review_maps

    rng = np.random.default_rng(0)
    fm = _two_class(rng.random((4, 6, 6)))
    un = _two_class(rng.random((4, 6, 6)))
    maps = review_maps(fm, un)
    np.testing.assert_allclose(maps.agreement, slice_agreement(fm, un))
    labels = (rng.random((4, 6, 6)) > 0.5).astype(np.uint8)
    a = estimate_quality(fm, un, labels, labeled=[0, 3], trained=[0])
    b = estimate_from_agreement(maps.agreement, maps.ensemble_label, labels, [0, 3], [0])
    np.testing.assert_allclose(a.predicted, b.predicted)


def test_beyond_the_knots_the_fit_follows_the_prior_slope():
    # one knot (0.9 -> 0.8), weight 1, prior weight 1
    cal = fit_calibration([0.9], [0.8], prior_weight=1.0)
    # score 0.5: fit 0.8 + (0.5 - 0.9) = 0.4, mean with the prior 0.5 -> 0.45
    assert float(cal.predict(0.5)) == pytest.approx(0.45)
    # score 1.0: fit 0.9, prior 1.0 -> 0.95
    assert float(cal.predict(1.0)) == pytest.approx(0.95)


def test_a_class_counts_only_where_the_ensemble_holds_it():
    """Issue 21: slice 0, the ensemble holds class 1 and one model a speck of class 2 that the
    ensemble does not hold: class 2 is not scored there ("ensemble"), so the slice scores
    class 1's agreement; the first version ("either") scored the speck's near-zero agreement.
    Hand-computed: class 1 agreement 2 * (1 * 1) / (1 + 1) = 1 on slice 0."""
    fm = np.zeros((1, 3, 2, 2), np.float32)
    fm[:, 0] = 1.0  # background everywhere but where set below
    un = fm.copy()
    fm[0, :, 0, 0] = un[0, :, 0, 0] = [0.0, 1.0, 0.0]  # both: class 1 at (0, 0)
    un[0, :, 1, 1] = [0.3, 0.0, 0.7]  # the U-Net alone: class 2 at (1, 1)
    ens = (fm + un).argmax(axis=1)
    assert not (ens == 2).any()  # 0.3 + 1.0 (background) beats 0.7
    now = slice_agreement(fm, un)
    assert now[0, 0] == pytest.approx(1.0) and np.isnan(now[0, 1])
    old = slice_agreement(fm, un, present_by="either")
    assert old[0, 1] == pytest.approx(0.0)  # 2 * 0 / (0 + 0.7)
    np.testing.assert_allclose(slice_scores(now), [1.0])
    np.testing.assert_allclose(slice_scores(old), [0.0])
    from napari_synfoc.core.quality import ensemble_classes_only

    np.testing.assert_array_equal(ensemble_classes_only(old, ens), now)
    with pytest.raises(ValueError, match="present_by"):
        slice_agreement(fm, un, present_by="models")


def test_continuity_zeros_a_missing_expected_class_and_a_class_beyond_its_extent():
    """Slices 0 and 4 hold class 1, slice 6 is labelled without it (extent 0..5).  The ensemble
    misses class 1 on slice 2 (between two labelled slices holding it): Dice 0 there; it holds
    class 1 on slice 7 (beyond the extent): Dice 0; slice 5 (inside the extent, no labelled
    slice above holding the class) missing it is not judged."""
    from napari_synfoc.core.quality import continuity_zeros, estimate_from_agreement

    z = 8
    labels = np.zeros((z, 4, 4), np.uint8)
    labels[[0, 4], 1:3, 1:3] = 1
    labels[6, 0, 0] = 2  # labelled, without class 1
    agree = np.full((z, 2), np.nan)
    agree[[1, 3, 7], 0] = 0.9  # the ensemble holds class 1 on 1, 3, 7; not on 2 or 5
    assert continuity_zeros(agree, labels, [0, 4, 6]) == [2, 7]
    assert continuity_zeros(agree, labels, []) == []
    # the classes each labelled slice holds, given instead of read from the labels
    given = np.array([[True, False], [True, False], [False, True]])
    assert continuity_zeros(agree, None, [6, 0, 4], holds=given) == [2, 7]
    with pytest.raises(ValueError, match="holds"):
        continuity_zeros(agree, None, [0, 4, 6], holds=given[:2])
    ens = np.zeros((z, 4, 4), np.uint8)
    ens[[1, 3, 7], 1:3, 1:3] = 1
    off = estimate_from_agreement(agree, ens, labels, [0, 4, 6], continuity=False).predicted
    on = estimate_from_agreement(agree, ens, labels, [0, 4, 6], continuity=True).predicted
    assert off[2] > 0.5 and off[7] > 0.5  # no class to score on 2: 1.0; 7 agrees: high
    assert on[2] == 0.0 and on[7] == 0.0
    np.testing.assert_array_equal(np.delete(on, [2, 7]), np.delete(off, [2, 7]))


def _continuity_by_definition(agree, labels, labeled):
    """The rule slice by slice, as first written: nearest labelled slices by a scan."""
    from napari_synfoc.core.model_prompts import extent_from_holds
    from napari_synfoc.core.slice_interpolation import neighbours

    z = agree.shape[0]
    done = sorted({int(i) for i in labeled if 0 <= int(i) < z})
    out = set()
    for c in range(1, agree.shape[1] + 1):
        holds = {i: bool((labels[i] == c).any()) for i in done}
        present = ~np.isnan(agree[:, c - 1])
        extent = extent_from_holds(holds, z)
        for i in range(z):
            if i in holds:
                continue
            lo, hi = neighbours(done, i)
            if lo is not None and hi is not None and holds[lo] and holds[hi] and not present[i]:
                out.add(i)
            if extent and present[i] and not extent[0] <= i <= extent[1]:
                out.add(i)
    return sorted(out)


def test_continuity_zeros_equals_the_slice_by_slice_rule_on_random_volumes():
    from napari_synfoc.core.quality import continuity_zeros

    rng = np.random.default_rng(5)
    for trial in range(40):
        z, k = int(rng.integers(3, 30)), int(rng.integers(2, 4))
        labels = rng.integers(0, k, size=(z, 3, 3)) * (rng.random((z, 1, 1)) < 0.7)
        agree = np.where(rng.random((z, k - 1)) < 0.4, np.nan, rng.random((z, k - 1)))
        labeled = rng.choice(z, size=int(rng.integers(0, z)), replace=False).tolist()
        want = _continuity_by_definition(agree, labels, labeled)
        assert continuity_zeros(agree, labels, labeled) == want, trial
