"""The strategies' formulas against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from napari_synfoc.core.strategies.ifl import (
    key_slice_scores,
    label_change,
    round_starts,
    select_key_slices,
)
from napari_synfoc.core.strategies.prompted import (
    boxes_from_labels,
    class_probs_from_foreground,
    normalised_entropy,
    scale_boxes,
)
from napari_synfoc.core.strategies.semisam_plus import (
    repeated_output_variance,
    sam_consistency,
    scale_box_about_centre,
    semisam_weights,
)
from napari_synfoc.core.strategies.uncol import bcp_mix, fuse_two_teachers


def _p(fg: float) -> torch.Tensor:
    """A 1×2×1×1 two-class probability map with foreground ``fg``."""
    return torch.tensor([1 - fg, fg]).reshape(1, 2, 1, 1)


# ----------------------------------------------------------------------------- prompts
def test_boxes_from_labels_per_class_and_absent():
    lab = torch.zeros(2, 6, 8, dtype=torch.long)
    lab[0, 1:3, 2:5] = 1  # rows 1-2, cols 2-4
    lab[0, 4, 7] = 2
    boxes, present = boxes_from_labels(lab, 3)
    assert present.tolist() == [[True, True], [False, False]]
    assert boxes[0, 0].tolist() == [2, 1, 5, 3]  # x0, y0, x1 (exclusive), y1
    assert boxes[0, 1].tolist() == [7, 4, 8, 5]
    assert boxes[1].abs().sum() == 0
    assert scale_boxes(boxes, 8, 256)[0, 0].tolist() == [64, 32, 160, 96]


def test_class_probs_from_foreground_two_and_three_classes():
    fg = torch.tensor([0.8]).reshape(1, 1, 1, 1)
    assert torch.allclose(class_probs_from_foreground(fg).flatten(), torch.tensor([0.2, 0.8]))
    # K = 3: bg = 0.5·0.5 = 0.25, sum = 1.25 -> [0.2, 0.4, 0.4]
    fg = torch.tensor([0.5, 0.5]).reshape(1, 2, 1, 1)
    out = class_probs_from_foreground(fg).flatten()
    assert torch.allclose(out, torch.tensor([0.2, 0.4, 0.4]))


def test_normalised_entropy_hand_values():
    assert normalised_entropy(_p(0.5)).item() == pytest.approx(1.0)
    assert normalised_entropy(_p(1.0)).item() == pytest.approx(0.0, abs=1e-6)
    # -(0.9 ln 0.9 + 0.1 ln 0.1) / ln 2 = 0.468996
    assert normalised_entropy(_p(0.9)).item() == pytest.approx(0.468996, abs=1e-5)
    p3 = torch.full((1, 3, 1, 1), 1 / 3)
    assert normalised_entropy(p3).item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- SemiSAM+
def test_semisam_weights_ramp_up_and_decay():
    # T = 200 with 200 steps: s = t.  lambda(s) = exp(-5 (1 - s/200)^2)
    w_c, w_sam = semisam_weights(0, 200, 200)
    assert w_c == pytest.approx(0.1 * math.exp(-5))
    assert w_sam == pytest.approx(0.01)  # 0.1 * 0.1 * lambda(200) = 0.01
    w_c, w_sam = semisam_weights(100, 200, 200)
    assert w_c == pytest.approx(0.1 * math.exp(-1.25))
    assert w_sam == pytest.approx(0.01 * math.exp(-1.25))
    w_c, w_sam = semisam_weights(150, 200, 200)
    assert w_c == pytest.approx(0.1 * math.exp(-5 * 0.25**2))
    assert w_sam == pytest.approx(0.01 * math.exp(-5 * 0.75**2))  # decays


def test_sam_consistency_plain_and_unc():
    ps = torch.tensor([0.8, 0.4, 0.2, 0.6]).reshape(1, 2, 1, 2)  # fg = [0.2, 0.6]
    pg = torch.tensor([1.0, 0.0, 0.0, 1.0]).reshape(1, 2, 1, 2)  # fg = [0, 1]
    # d: bg [0.04, 0.16], fg [0.04, 0.16] -> mean 0.1
    assert sam_consistency(ps, pg).item() == pytest.approx(0.1)
    u = torch.tensor([0.0, 0.5]).reshape(1, 1, 1, 2)
    # mean(d·u) = (0 + 0.08 + 0 + 0.08)/4 = 0.04; mean(u) = 0.25 -> 0.04/0.25 + 0.25 = 0.41
    assert sam_consistency(ps, pg, u).item() == pytest.approx(0.41, abs=1e-6)


def test_repeated_output_variance_and_box_scaling():
    outs = [torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0])]
    # mean 2/3, unbiased var = (4/9 + 1/9 + 1/9)/2 = 1/3
    assert repeated_output_variance(outs).item() == pytest.approx(1 / 3)
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert scale_box_about_centre(box, 1.1, 256)[0].tolist() == pytest.approx(
        [9.0, 18.0, 31.0, 62.0]
    )
    assert scale_box_about_centre(torch.tensor([[0.0, 0, 10, 10]]), 2.0, 12).tolist() == [
        [0.0, 0.0, 12.0, 12.0]
    ]


def test_semisam_gradient_flows_to_the_student_only():
    ps = torch.tensor([0.3, 0.7]).reshape(1, 2, 1, 1).requires_grad_(True)
    pg = _p(1.0)
    sam_consistency(ps, pg, torch.ones(1, 1, 1, 1)).backward()
    # d/dps of mean((ps - pg)^2)/mean(u): 2(ps - pg)/2 per channel
    assert ps.grad.flatten().tolist() == pytest.approx([0.3, -0.3])


# ----------------------------------------------------------------------------- UnCoL
def test_uncol_both_confident_weights_exp_minus_u():
    pa, pb = _p(0.1), _p(0.4)  # u_a = 0.468996, u_b = 0.970951
    fused, mask, parts = fuse_two_teachers(pa, pb, threshold=1.0)
    w_a = math.exp(-0.468996) / (math.exp(-0.468996) + math.exp(-0.970951))
    assert parts["w_a"].item() == pytest.approx(w_a, abs=1e-5)
    assert w_a == pytest.approx(0.62293, abs=1e-4)
    assert fused[0, 1].item() == pytest.approx(w_a * 0.1 + (1 - w_a) * 0.4, abs=1e-5)
    assert mask.item() == 1.0


def test_uncol_one_confident_alone_and_neither_masked():
    pa, pb = _p(0.1), _p(0.4)
    fused, mask, _ = fuse_two_teachers(pa, pb, threshold=0.5)  # only a (0.469 <= 0.5)
    assert fused[0, 1].item() == pytest.approx(0.1) and mask.item() == 1.0
    fused, mask, _ = fuse_two_teachers(pb, pa, threshold=0.5)  # only the second
    assert fused[0, 1].item() == pytest.approx(0.1) and mask.item() == 1.0
    _, mask, _ = fuse_two_teachers(_p(0.5), _p(0.4), threshold=0.5)
    assert mask.item() == 0.0


def test_bcp_mix_both_directions():
    x_l = torch.ones(1, 1, 2, 2)
    x_u = torch.zeros(1, 1, 2, 2)
    gt = torch.tensor([[[1, 1], [1, 1]]])
    pl = torch.tensor([[[0, 0], [0, 0]]])
    w = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # box = top-left pixel
    imgs, tgt, wts = bcp_mix(x_l, x_u, gt, pl, w, m)
    assert imgs[0, 0].tolist() == [[1, 0], [0, 0]]  # labelled box in the unlabelled image
    assert imgs[1, 0].tolist() == [[0, 1], [1, 1]]  # unlabelled box in the labelled image
    assert tgt[0].tolist() == [[1, 0], [0, 0]] and wts[0].tolist() == [[1, 1], [0, 1]]
    assert tgt[1].tolist() == [[0, 1], [1, 1]] and wts[1].tolist() == [[0, 1], [1, 1]]


# ----------------------------------------------------------------------------- IFL
def test_ifl_rounds_and_key_slices():
    assert round_starts(6, 3) == [0, 2, 4]
    assert round_starts(10, 3) == [0, 3, 6]
    assert round_starts(2, 3) == [0, 1]  # fewer iterations than rounds
    new = torch.zeros(3, 2, 2, dtype=torch.long)
    old = torch.zeros(3, 2, 2, dtype=torch.long)
    new[0, 0, :] = 1  # 2 px
    old[0, 0, 0] = 1  # 1 px, overlap 1 -> dice 2/3
    new[1, :, :] = 1  # vs empty -> dice 0
    ch = label_change(new, old, 2)
    assert ch.tolist() == pytest.approx([1 / 3, 1.0, 0.0])  # slice 2: both empty, unchanged
    scores = key_slice_scores(torch.tensor([0.1, 0.1, 0.5]), ch)
    assert scores.tolist() == pytest.approx([0.4333333, 1.1, 0.5])
    assert select_key_slices(scores, 0.5).tolist() == [True, False, True]  # ceil(1.5) = 2
    assert select_key_slices(torch.tensor([0.2, 0.2, 0.2]), 0.1).tolist() == [True, False, False]
    assert key_slice_scores(torch.tensor([0.3]), None).tolist() == pytest.approx([0.3])
