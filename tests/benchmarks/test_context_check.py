"""benchmarks/context_check.py: the 2.5D input and the scoring, on hand-made volumes."""

from __future__ import annotations

import numpy as np

from benchmarks import context_check as cc


def test_context_input_stacks_the_neighbours_and_repeats_the_edges():
    img = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 3), np.float32)
    assert cc.context_input(img, 0, 0).shape == (1, 2, 3)
    assert cc.context_input(img, 2, 1)[:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert cc.context_input(img, 0, 1)[:, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert cc.context_input(img, 3, 1)[:, 0, 0].tolist() == [2.0, 3.0, 3.0]


def test_score_counts_dice_slices_at_target_and_strokes_on_unlabelled_slices():
    ref = np.zeros((3, 20, 20), np.uint8)
    ref[:, 5:15, 5:15] = 1  # 100 px per slice
    pred = ref.copy()
    pred[1, 5:15, 5:8] = 0  # slice 1: 30 px missed, one region -> Dice 140/170
    pred[2] = 0  # slice 2 labelled: not scored
    out = cc.score(pred, ref, labeled=[2], num_classes=2)
    assert out["n_1"] == 2 and out["ok_1"] == 1
    assert out["dice_1"] == round((1.0 + 140 / 170) / 2, 4)
    assert out["strokes"] == 1  # the one missed region on slice 1
