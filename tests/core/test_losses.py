"""Losses against hand-computed values (spec §2)."""

from __future__ import annotations

import math

import pytest
import torch

from napari_synfoc.core.losses import (
    cdcr_losses,
    ce_loss,
    dice_loss,
    supervised_loss,
    unsupervised_loss,
)


def H(p: float) -> float:
    """Binary entropy term −p ln p − (1−p) ln(1−p): the K=2 per-pixel sum of −p log p."""
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


def _two_class(fg) -> torch.Tensor:
    """B×2×H×W probabilities from a B×H×W (or H×W) foreground map."""
    fg = torch.tensor(fg, dtype=torch.float32)
    if fg.ndim == 2:
        fg = fg[None]
    return torch.stack([1 - fg, fg], dim=1)


# 1×2×2×2 case: p_fg = [[.8,.4],[.1,.6]], target = [[1,1],[0,0]], mask = [[1,0],[1,1]]
PROBS = _two_class([[0.8, 0.4], [0.1, 0.6]])
TARGET = torch.tensor([[[1, 1], [0, 0]]])
MASK = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
# unmasked: fg inter .8+.4, Σp² .64+.16+.01+.36, Σg² 2; bg inter .9+.4, Σp² .04+.36+.81+.16, Σg² 2
LOSS_FG = 1 - 2 * 1.2 / (1.17 + 2)
LOSS_BG = 1 - 2 * 1.3 / (1.37 + 2)
# masked (pixel (0,1) dropped): fg inter .8, Σp² .64+.01+.36, Σg² 1;
# bg inter .9+.4, Σp² .04+.81+.16, Σg² 2
LOSS_FG_M = 1 - 2 * 0.8 / (1.01 + 1)
LOSS_BG_M = 1 - 2 * 1.3 / (1.01 + 2)


def test_dice_unmasked():
    assert dice_loss(PROBS, TARGET).item() == pytest.approx((LOSS_FG + LOSS_BG) / 2, abs=1e-6)
    assert dice_loss(PROBS, TARGET).item() == pytest.approx(0.2356944, abs=1e-6)


def test_dice_masked_background_quirk():
    # faithful: background term uses every pixel
    got = dice_loss(PROBS, TARGET, MASK).item()
    assert got == pytest.approx((LOSS_FG_M + LOSS_BG) / 2, abs=1e-6)
    # fixed: background masked as well
    got_fixed = dice_loss(PROBS, TARGET, MASK, bg_masked=True).item()
    assert got_fixed == pytest.approx((LOSS_FG_M + LOSS_BG_M) / 2, abs=1e-6)
    assert got != pytest.approx(got_fixed, abs=1e-3)
    # a mask of ones equals no mask
    assert dice_loss(PROBS, TARGET, torch.ones(1, 2, 2), bg_masked=True).item() == pytest.approx(
        dice_loss(PROBS, TARGET).item(), abs=1e-7
    )


def test_dice_batch_level_sums():
    # batch-level: one Dice per class over both images, not a mean of per-image Dices
    probs = torch.cat([_two_class([[1.0, 0.0]]), _two_class([[0.0, 0.0]])])
    target = torch.tensor([[[1, 0]], [[1, 0]]])
    # fg: inter 1, Σp² 1, Σg² 2 → 1 − 2/3 ; bg: inter 2 (pixels 2,4), Σp² 3, Σg² 2 → 1 − 4/5
    expected = ((1 - 2 / 3) + (1 - 4 / 5)) / 2
    assert dice_loss(probs, target).item() == pytest.approx(expected, abs=1e-6)


def test_ce_normalisation():
    # pixel a: logits (0,0), target 1 → ln 2; pixel b: logits (0, ln 3), target 1 → ln(4/3)
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])
    target = torch.tensor([[[1, 1]]])
    mask = torch.tensor([[[1.0, 0.0]]])
    assert ce_loss(logits, target).item() == pytest.approx(
        (math.log(2) + math.log(4 / 3)) / 2, abs=1e-6
    )
    assert ce_loss(logits, target, mask, norm="all").item() == pytest.approx(
        math.log(2) / 2, abs=1e-6
    )
    assert ce_loss(logits, target, mask, norm="confident").item() == pytest.approx(
        math.log(2), abs=1e-6
    )
    assert ce_loss(logits, target, torch.zeros(1, 1, 2), norm="confident").item() == 0.0
    with pytest.raises(ValueError, match="norm"):
        ce_loss(logits, target, mask, norm="mean")
    with pytest.raises(ValueError, match="target shape"):
        ce_loss(logits, torch.zeros(1, 2, 2, dtype=torch.long))


def test_supervised_and_unsupervised_compose():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    w = (torch.rand(2, 4, 4) > 0.5).float()
    loss, parts = supervised_loss(logits, target)
    probs = torch.softmax(logits, 1)
    assert parts["ce"].item() == pytest.approx(ce_loss(logits, target).item(), abs=1e-6)
    assert parts["dice"].item() == pytest.approx(dice_loss(probs, target).item(), abs=1e-6)
    assert loss.item() == pytest.approx((parts["ce"] + parts["dice"]).item(), abs=1e-6)
    un = unsupervised_loss(logits, target, w, bg_masked=True, ce_norm="confident")
    exp = ce_loss(logits, target, w, "confident") + dice_loss(probs, target, w, bg_masked=True)
    assert un.item() == pytest.approx(exp.item(), abs=1e-6)


def test_cdcr_equal_sizes():
    p_fm = _two_class([[0.9, 0.2], [0.6, 0.3]])  # argmax [[1,0],[1,0]]
    p_u = _two_class([[0.8, 0.7], [0.4, 0.1]])  # argmax [[1,1],[0,0]]
    l_c, l_d, m_c = cdcr_losses(p_fm, p_u)
    assert torch.equal(m_c, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    # means divide by the full B·K·H·W = 8
    exp_c = 0.5 * ((H(0.9) + H(0.3)) / 8 + (H(0.8) + H(0.1)) / 8)
    exp_d = (2 * 0.5**2 + 2 * 0.2**2) / 8  # = 0.0725
    assert l_c.item() == pytest.approx(exp_c, abs=1e-6)
    assert l_d.item() == pytest.approx(exp_d, abs=1e-6)
    assert exp_d == pytest.approx(0.0725)


def test_cdcr_fm_smaller():
    # R = 1 < P = 2: p_fm fg 0.7 everywhere after nearest upsampling
    p_fm = _two_class([[0.7]]).requires_grad_(True)
    p_u = _two_class([[0.8, 0.4], [0.6, 0.1]]).requires_grad_(True)  # argmax [[1,0],[1,0]]
    l_c, l_d, m_c = cdcr_losses(p_fm, p_u)
    assert torch.equal(m_c, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))
    exp_c = 0.5 * (H(0.7) / 2 + (H(0.8) + H(0.6)) / 8)  # M_c↓ picks pixel (0,0) = 1
    exp_d = (2 * 0.3**2 + 2 * 0.6**2) / 8  # = 0.1125
    assert l_c.item() == pytest.approx(exp_c, abs=1e-6)
    assert l_d.item() == pytest.approx(exp_d, abs=1e-6)
    # no detach: both students receive gradient from L_d
    l_d.backward()
    assert p_fm.grad.abs().sum() > 0 and p_u.grad.abs().sum() > 0


def test_cdcr_fm_larger():
    # R = 2 > P = 1: the U-Net pixel compares with fm pixel (0,0)
    p_fm = _two_class([[0.9, 0.2], [0.6, 0.3]])
    l_c, l_d, m_c = cdcr_losses(p_fm, _two_class([[0.8]]))
    assert m_c.tolist() == [[[1.0]]]
    assert l_c.item() == pytest.approx(
        0.5 * ((H(0.9) + H(0.2) + H(0.6) + H(0.3)) / 8 + H(0.8) / 2), abs=1e-6
    )
    assert l_d.item() == pytest.approx(0.0, abs=1e-9)
    l_c, l_d, m_c = cdcr_losses(p_fm, _two_class([[0.3]]))
    assert m_c.tolist() == [[[0.0]]]
    assert l_c.item() == pytest.approx(0.0, abs=1e-9)
    assert l_d.item() == pytest.approx(2 * 0.6**2 / 2, abs=1e-6)


def test_cdcr_clamps_zero_probabilities():
    p = torch.tensor([[[[1.0]], [[0.0]]]])
    l_c, l_d, _ = cdcr_losses(p, p)
    assert torch.isfinite(l_c) and l_c.item() == pytest.approx(0.0, abs=1e-8)
    assert l_d.item() == 0.0
