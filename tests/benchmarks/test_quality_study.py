"""The offline quality-estimate study (benchmarks.quality_study) on hand-made numbers."""

from __future__ import annotations

import numpy as np

from benchmarks import quality_study as S


def test_zmedian_takes_the_median_of_each_slice_and_its_neighbours():
    a = np.array([[0.2, np.nan], [0.9, 0.5], [0.4, 0.7], [0.8, np.nan]])
    got = S.zmedian(a)
    # class 1: [.2, .9] -> .55; [.2, .9, .4] -> .4; [.9, .4, .8] -> .8; [.4, .8] -> .6
    np.testing.assert_allclose(got[:, 0], [0.55, 0.4, 0.8, 0.6])
    # class 2: NaN stays NaN; [0.5, 0.7] -> 0.6 on both defined slices
    assert np.isnan(got[0, 1]) and np.isnan(got[3, 1])
    np.testing.assert_allclose(got[1:3, 1], [0.6, 0.6])


def test_class_dice_per_slice():
    pred = np.zeros((3, 2, 2), int)
    ref = np.zeros((3, 2, 2), int)
    pred[0] = [[1, 1], [0, 0]]
    ref[0] = [[1, 0], [0, 0]]  # 2*1 / (2 + 1)
    pred[1] = [[2, 0], [0, 0]]  # class 1 absent in both on slice 1
    got = S.class_dice(pred, ref, 1)
    assert abs(got[0] - 2 / 3) < 1e-12 and np.isnan(got[1]) and np.isnan(got[2])


def test_per_class_estimate_without_points_is_the_lowest_class_agreement():
    agree = np.array([[0.9, 0.3], [0.8, np.nan], [np.nan, np.nan]])
    ens = np.zeros((3, 2, 2), int)
    got = S.per_class_estimate(agree, ens, ens.copy(), labeled=[], trained=[])
    np.testing.assert_allclose(got, [0.3, 0.8, 1.0])


def test_score_state_reports_each_variant(tmp_path):
    ref = np.zeros((4, 4, 4), np.uint8)
    ref[:, 1:3, 1:3] = 1
    ens = ref.copy()
    ens[2] = 0  # the ensemble misses slice 2: true Dice 0 there, 1 elsewhere
    path = tmp_path / "CT-loop-s1.npz"
    np.savez_compressed(
        path, agreement=np.array([[1.0], [1.0], [0.5], [1.0]]), ensemble=ens, fm=ens, unet=ens,
        labels=np.where(np.arange(4)[:, None, None] == 0, ref, 0), labeled=np.array([0]),
        trained=np.array([0]), covered=np.array([0, 1, 2, 3]),
    )  # fmt: skip
    row = S.score_state(path, ref)
    assert row["n_unlabelled"] == 3 and abs(row["true_mean"] - 2 / 3) < 1e-3
    # uncalibrated in effect (one trained point, weight 0.25 against 4 prior points) the dock
    # predicts about 1, 0.5, 1 on slices 1..3: error about (0 + 0.5 + 0) / 3
    assert abs(row["mae"]["dock"] - 0.5 / 3) < 0.02
    assert set(row["mae"]) == {"dock", "zmedian", "per_class", "zmedian+per_class", "prior2",
                               "prior8", "ens_present", "ens_present+per_class",
                               "ens_present+continuity"}  # fmt: skip
    assert "| CT-loop-s1.npz | 3 |" in S.markdown([row], "cmd")
