"""The "gain" review ranking (core.review): estimated error times novelty, hand-computed."""

import numpy as np
import pytest

from napari_synfoc.core.review import acquisition_scores, novelty, rank_slices


def test_gain_is_estimated_error_times_novelty():
    q = [1.0, 0.5, 0.8, 0.2]
    feats = np.array([[0.0], [1.0], [2.0], [4.0]])
    # slice 0 labelled: distances 0, 1, 2, 4 -> novelty 0, 0.25, 0.5, 1
    s = acquisition_scores(np.zeros(4), [0], feats, "gain", predicted_dice=q)
    np.testing.assert_allclose(s, [0.0, 0.5 * 0.25, 0.2 * 0.5, 0.8 * 1.0])
    assert rank_slices(s, [0]) == [3, 1, 2, 0]


def test_gain_without_features_is_the_estimated_error():
    s = acquisition_scores([0.9, 0.9, 0.9], [], None, "gain", predicted_dice=[0.3, 0.95, 0.6])
    np.testing.assert_allclose(s, [0.7, 0.05, 0.4])


def test_gain_differs_from_disagreement_ranking():
    # slice 1 disagrees most but is estimated good; slice 2 agrees but is estimated bad
    disagreement = [0.1, 0.6, 0.2]
    q = [0.9, 0.95, 0.3]
    by_dis = rank_slices(acquisition_scores(disagreement, [], method="disagreement"), [])
    by_gain = rank_slices(
        acquisition_scores(disagreement, [], method="gain", predicted_dice=q), []
    )
    assert by_dis[0] == 1 and by_gain[0] == 2


def test_gain_needs_predicted_dice():
    with pytest.raises(ValueError, match="predicted Dice"):
        acquisition_scores([0.1, 0.2], [], method="gain")
    with pytest.raises(ValueError, match="3 values for 2 slices"):
        acquisition_scores([0.1, 0.2], [], method="gain", predicted_dice=[0.1, 0.2, 0.3])


def test_novelty_scales_to_one():
    np.testing.assert_allclose(novelty(np.array([[0.0], [3.0], [1.0]]), [0], 3), [0, 1, 1 / 3])
    np.testing.assert_allclose(novelty(None, [0], 2), [1, 1])


def test_novelty_matches_the_pairwise_definition():
    """The matrix form equals min over labelled slices of the Euclidean distance, scaled by its
    maximum, on random features with a duplicated slice; labelled slices are exactly 0."""
    rng = np.random.default_rng(3)
    f = rng.normal(size=(40, 7)) * 5.0
    f[11] = f[4]  # an unlabelled look-alike of a labelled slice: distance 0
    labeled = [4, 9, 30]
    d = np.array([min(np.linalg.norm(f[z] - f[j]) for j in labeled) for z in range(40)])
    got = novelty(f, labeled, 40)
    np.testing.assert_allclose(got, d / d.max(), atol=1e-9)
    assert got[labeled].tolist() == [0.0, 0.0, 0.0]
    assert got[11] < 1e-6
