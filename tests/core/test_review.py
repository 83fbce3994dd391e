"""Review maps, slice ranking and accepting proposals, on hand-made arrays."""

import numpy as np
import pytest

from napari_synfoc.core.review import (
    accept_into_labels,
    acquisition_scores,
    auroc,
    divergence_map,
    ensemble_margin,
    labeled_slices,
    rank_slices,
    review_maps,
    slice_changes,
    slice_features,
    squeeze_single,
    z_spread_weights,
)


def _probs(fg):
    """(Z, 2, Y, X) probabilities from a foreground-probability array (Z, Y, X)."""
    fg = np.asarray(fg, dtype=np.float32)
    return np.stack([1 - fg, fg], axis=1)


def test_review_maps_two_classes_by_hand():
    # one slice, 1x3 pixels
    fm = _probs([[[0.9, 0.2, 0.6]]])
    un = _probs([[[0.7, 0.8, 0.3]]])
    m = review_maps(fm, un, rule="argmax")
    assert m.fm_label.tolist() == [[[1, 0, 1]]]
    assert m.unet_label.tolist() == [[[1, 1, 0]]]
    # mean fg: 0.8, 0.5, 0.45 -> ensemble argmax of the sum; tie at 0.5 goes to class 0
    assert m.ensemble_label.tolist() == [[[1, 0, 0]]]
    # agree only on pixel 0 (class 1)
    assert m.consensus.tolist() == [[[1, 0, 0]]]
    assert m.divergence.tolist() == [[[0, 1, 1]]]
    # heat = |p_fm(fg) - p_unet(fg)| for two classes
    np.testing.assert_allclose(m.heat, [[[0.2, 0.6, 0.3]]], atol=1e-6)
    np.testing.assert_allclose(m.slice_scores, [(0.2 + 0.6 + 0.3) / 3], atol=1e-6)
    assert m.heat.dtype == np.float32 and m.fm_label.dtype == np.uint8
    # default rule: ensemble fg 0.8, 0.5, 0.45 -> margins 0.6, 0.0, 0.1; unsure below 0.4
    assert review_maps(fm, un).divergence.tolist() == [[[0, 1, 1]]]
    assert review_maps(fm, un, margin=0.05).divergence.tolist() == [[[0, 1, 0]]]


def test_review_maps_three_classes_half_l1():
    fm = np.zeros((1, 3, 1, 2), np.float32)
    un = np.zeros((1, 3, 1, 2), np.float32)
    fm[0, :, 0, 0] = [0.1, 0.7, 0.2]
    un[0, :, 0, 0] = [0.1, 0.2, 0.7]
    fm[0, :, 0, 1] = [0.0, 0.0, 1.0]
    un[0, :, 0, 1] = [0.0, 0.0, 1.0]
    m = review_maps(fm, un)
    # 0.5 * (0 + 0.5 + 0.5) = 0.5 ; identical vectors -> 0
    np.testing.assert_allclose(m.heat[0, 0], [0.5, 0.0], atol=1e-6)
    assert m.consensus[0, 0].tolist() == [0, 2]
    assert m.divergence[0, 0].tolist() == [1, 0]
    assert m.proposal("medsam")[0, 0, 0] == 1 and m.proposal("unet")[0, 0, 0] == 2
    with pytest.raises(ValueError, match="unknown proposal"):
        m.proposal("sam")


def test_review_maps_consensus_on_background_is_zero_and_scores_per_slice():
    fm = _probs(np.array([[[0.1, 0.1]], [[0.9, 0.1]]]))
    un = _probs(np.array([[[0.1, 0.1]], [[0.1, 0.1]]]))
    m = review_maps(fm, un)
    assert m.consensus.sum() == 0
    np.testing.assert_allclose(m.slice_scores, [0.0, 0.4], atol=1e-6)


def test_review_maps_rejects_bad_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        review_maps(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4, 5)))
    with pytest.raises(ValueError, match=r"\(Z, K, Y, X\)"):
        review_maps(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))


def test_rank_slices_unlabelled_first_then_labelled():
    scores = [0.1, 0.5, 0.3, 0.9, 0.3]
    assert rank_slices(scores, labeled_slices=[3]) == [1, 2, 4, 0, 3]
    assert rank_slices(scores, labeled_slices=[]) == [3, 1, 2, 4, 0]
    assert rank_slices(scores, labeled_slices=[1, 2]) == [3, 4, 0, 1, 2]


def test_labeled_slices_painted_and_marked():
    lab = np.zeros((5, 4, 4), np.int32)
    lab[1, 2, 2] = 1
    lab[4, 0, 0] = 2
    assert labeled_slices(lab) == [1, 4]
    assert labeled_slices(lab, marked=[0, 4, 9]) == [0, 1, 4]
    assert labeled_slices(np.zeros((4, 4))) == []
    assert labeled_slices(np.zeros((4, 4)), marked=[0]) == [0]
    assert labeled_slices(np.ones((4, 4))) == [0]


def test_slice_changes_and_accept_write_only_that_slice():
    lab = np.zeros((3, 2, 3), np.int32)
    lab[0] = 1
    lab[1, 0, 0] = 2  # a user stroke on the slice we accept into
    prop = np.array([[0, 1, 1], [1, 0, 0]], np.uint8)
    idx, vals = slice_changes(lab, 1, prop)
    assert set(idx[0].tolist()) == {1}
    # changed voxels: (0,0) 2->0, (0,1) 0->1, (0,2) 0->1, (1,0) 0->1
    assert len(vals) == 4 and vals.dtype == lab.dtype
    before = lab.copy()
    n = accept_into_labels(lab, 1, prop)
    assert n == 4
    np.testing.assert_array_equal(lab[1], prop)
    np.testing.assert_array_equal(lab[0], before[0])
    np.testing.assert_array_equal(lab[2], before[2])


def test_accept_keep_existing_preserves_user_labels():
    lab = np.zeros((2, 2, 2), np.int32)
    lab[0, 0, 0] = 3
    prop = np.array([[1, 1], [0, 1]])
    accept_into_labels(lab, 0, prop, keep_existing=True)
    assert lab[0].tolist() == [[3, 1], [0, 1]]


def test_slice_changes_2d_and_errors():
    lab = np.zeros((2, 2), np.uint8)
    idx, vals = slice_changes(lab, 0, np.array([[1, 0], [0, 1]]))
    assert len(idx) == 2 and vals.tolist() == [1, 1]
    with pytest.raises(ValueError, match="only slice 0"):
        slice_changes(lab, 1, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="outside the stack"):
        slice_changes(np.zeros((2, 2, 2)), 5, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="proposal has shape"):
        slice_changes(np.zeros((2, 2, 2)), 0, np.zeros((3, 2)))


def test_squeeze_single():
    a = np.zeros((1, 3, 4))
    assert squeeze_single(a, True).shape == (3, 4)
    assert squeeze_single(a, False).shape == (1, 3, 4)
    with pytest.raises(ValueError):
        squeeze_single(np.zeros((2, 3, 4)), True)


def test_auroc_by_hand_with_ties_and_degenerate_cases():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts half
    assert auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert auroc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert auroc([0.3, 0.2], [0, 0]) is None and auroc([0.3], [1]) is None
    with pytest.raises(ValueError, match="labels"):
        auroc([0.1, 0.2], [1])


def test_ensemble_margin_two_and_three_classes():
    # mean fg: (0.8+0.4)/2 = 0.6 -> margin |0.6-0.4| = 0.2; (0.5+0.5)/2 -> 0
    m = ensemble_margin(_probs([[[0.8, 0.5]]]), _probs([[[0.4, 0.5]]]))
    np.testing.assert_allclose(m, [[[0.2, 0.0]]], atol=1e-6)
    fm = np.array([0.6, 0.3, 0.1], np.float32).reshape(1, 3, 1, 1)
    un = np.array([0.2, 0.5, 0.3], np.float32).reshape(1, 3, 1, 1)
    # mean (0.4, 0.4, 0.2): top two equal -> margin 0
    np.testing.assert_allclose(ensemble_margin(fm, un), [[[0.0]]], atol=1e-6)


def test_divergence_rules_by_hand():
    fm = _probs([[[0.9, 0.2, 0.6, 0.55]]])
    un = _probs([[[0.7, 0.8, 0.3, 0.1]]])
    # argmax differs on pixels 1, 2, 3
    assert divergence_map(fm, un, "argmax").tolist() == [[[0, 1, 1, 1]]]
    # ensemble fg 0.8, 0.5, 0.45, 0.325 -> margins 0.6, 0.0, 0.1, 0.35; unsure below 0.5
    assert divergence_map(fm, un, "uncertain", margin=0.5).tolist() == [[[0, 1, 1, 1]]]
    assert divergence_map(fm, un, "uncertain", margin=0.3).tolist() == [[[0, 1, 1, 0]]]
    assert divergence_map(fm, un, "argmax_uncertain", margin=0.3).tolist() == [[[0, 1, 1, 0]]]
    fm2 = _probs([[[0.6]]])
    un2 = _probs([[[0.7]]])  # agree, ensemble 0.65 (margin 0.3): uncertain but not divergent
    assert divergence_map(fm2, un2, "uncertain", margin=0.5).tolist() == [[[1]]]
    assert divergence_map(fm2, un2, "argmax_uncertain", margin=0.5).tolist() == [[[0]]]
    with pytest.raises(ValueError, match="divergence rule"):
        divergence_map(fm, un, "both")


def test_acquisition_diverse_by_hand():
    scores = [0.2, 0.5, 0.4, 0.1]
    feats = np.array([[0.0], [0.1], [1.0], [2.0]])
    # distance to labelled slice 0: 0, 0.1, 1, 2 -> novelty /2: 0, 0.05, 0.5, 1
    out = acquisition_scores(scores, [0], feats, "diverse")
    np.testing.assert_allclose(out, [0.0, 0.025, 0.2, 0.1])
    assert rank_slices(out, [0]) == [2, 3, 1, 0]
    # plain disagreement would pick slice 1, the look-alike of the labelled slice
    assert rank_slices(acquisition_scores(scores, [0], feats, "disagreement"), [0])[0] == 1
    # nearest labelled slice counts: with 0 and 3 labelled, d = 0, 0.1, 1, 0 -> /1
    np.testing.assert_allclose(acquisition_scores(scores, [0, 3], feats), [0.0, 0.05, 0.4, 0.0])
    # no labelled slice: novelty 1
    np.testing.assert_allclose(acquisition_scores(scores, [], feats), scores)
    with pytest.raises(ValueError, match="features"):
        acquisition_scores(scores, [0], feats[:3])
    with pytest.raises(ValueError, match="acquisition"):
        acquisition_scores(scores, [0], feats, "entropy")


def test_z_spread_weights_by_hand():
    """Issue 21: distance in z to the nearest labelled slice, over its maximum."""
    # labelled 2 and 7 of 10: distances 2 1 0 1 2 2 1 0 1 2 -> / 2
    np.testing.assert_allclose(
        z_spread_weights([7, 2], 10), [1, 0.5, 0, 0.5, 1, 1, 0.5, 0, 0.5, 1]
    )
    np.testing.assert_allclose(z_spread_weights([0], 4), [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(z_spread_weights([], 3), [1, 1, 1])  # nothing labelled
    np.testing.assert_allclose(z_spread_weights([0, 1, 9], 2), [1, 1])  # all labelled
    scores, feats = [0.2, 0.5, 0.4, 0.1], np.array([[0.0], [0.1], [1.0], [2.0]])
    # "diverse" 0, 0.025, 0.2, 0.1 times 0, 1/3, 2/3, 1
    out = acquisition_scores(scores, [0], feats, "diverse", z_spread=True)
    np.testing.assert_allclose(out, [0.0, 0.025 / 3, 0.2 * 2 / 3, 0.1])
    # the plain disagreement too: 0, 0.5/3, 0.4 x 2/3, 0.1 -> slice 2 first, not slice 1
    out = acquisition_scores(scores, [0], None, "disagreement", z_spread=True)
    np.testing.assert_allclose(out, [0.0, 0.5 / 3, 0.4 * 2 / 3, 0.1])
    assert rank_slices(out, [0])[0] == 2


def test_slice_features_separate_textures_not_noise_realisations():
    rng = np.random.default_rng(0)

    def texture(smooth: int) -> np.ndarray:
        a = rng.random((64, 64))
        k = np.ones(smooth) / smooth  # box blur along both axes: coarser texture
        a = np.apply_along_axis(np.convolve, 0, a, k, "same")
        return np.apply_along_axis(np.convolve, 1, a, k, "same").astype(np.float32)

    fine1, fine2, coarse = texture(1), texture(1), texture(6)
    stack = np.stack([fine1, fine2, coarse, fine1])
    f = slice_features(stack, bins=8, hist_bins=8)
    assert f.shape == (4, 16)
    np.testing.assert_allclose(f[0], f[3])  # the same slice twice
    np.testing.assert_allclose(f[:, :8].sum(axis=1), 0.0, atol=1e-5)  # spectrum: mean removed
    np.testing.assert_allclose(np.linalg.norm(f[:, 8:], axis=1), 1.0, atol=1e-5)  # sqrt(hist)
    same = np.linalg.norm(f[0] - f[1])
    other = np.linalg.norm(f[0] - f[2])
    assert other > 3 * same
    with pytest.raises(ValueError, match="stack"):
        slice_features(np.zeros((4, 4)))


def test_stack_features_shrink_large_slices_by_block_mean():
    from napari_synfoc.core.review import slice_features, stack_features

    rng = np.random.default_rng(0)
    big = rng.random((2, 600, 520)).astype(np.float32)
    # factor ceil(600 / 256) = 3: crop to 600 x 519, average 3 x 3 blocks -> 200 x 173
    small = big[:, :600, :519].reshape(2, 200, 3, 173, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(stack_features(big), slice_features(small), rtol=1e-5, atol=1e-6)
    # slices already within 256 px are used as they are; a single image counts as one slice
    img = rng.random((64, 80)).astype(np.float32)
    np.testing.assert_array_equal(stack_features(img), slice_features(img[None]))
    rgb = rng.random((64, 80, 3)).astype(np.float32)
    np.testing.assert_allclose(stack_features(rgb, rgb=True), slice_features(rgb.mean(-1)[None]))
