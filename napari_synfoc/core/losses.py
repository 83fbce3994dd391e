"""SynFoC losses (spec §2): CE + V-Net Dice, masked unsupervised loss, and CDCR (L_c, L_d).

All probabilities are softmax over the K channels (background included).  Losses are computed in
float32 even under autocast, as upstream's softmax/CE are autocast to float32 anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_synfoc.config import choices

_CE_NORMS = choices("ce_norm")
_CLAMP_EPS = 1e-10  # clamp floor for the CDCR entropy (train.py:587)


def _check_maps(name: str, probs: Tensor, target: Tensor, mask: Tensor | None) -> None:
    if probs.ndim != 4:
        raise ValueError(f"{name}: expected B×K×H×W scores, got shape {tuple(probs.shape)}")
    b, _, h, w = probs.shape
    if tuple(target.shape) != (b, h, w):
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match scores "
            f"{tuple(probs.shape)} (expected {(b, h, w)})"
        )
    if mask is not None and tuple(mask.shape) != (b, h, w):
        raise ValueError(f"{name}: mask shape {tuple(mask.shape)} does not match {(b, h, w)}")


def dice_loss(
    probs: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    bg_masked: bool = False,
    eps: float = 1e-10,
) -> Tensor:
    """Batch-level soft Dice loss averaged over all K classes (spec §2.2/§2.3).

    Per class c: ``1 − (2Σ p g m + ε) / (Σ p² m + Σ g² m + ε)``, sums over batch and pixels.
    With ``mask``, foreground classes are masked; the background class uses every pixel unless
    ``bg_masked`` (upstream quirk: its background mask is all ones).
    """
    _check_maps("dice_loss", probs, target, mask)
    k = probs.shape[1]
    probs = probs.float()
    onehot = F.one_hot(target.long(), k).permute(0, 3, 1, 2).to(probs.dtype)
    if mask is None:
        m = torch.ones_like(probs)
    else:
        m = mask.to(probs.dtype).unsqueeze(1).expand_as(probs).clone()
        if not bg_masked:
            m[:, 0] = 1.0
    dims = (0, 2, 3)
    inter = (probs * onehot * m).sum(dims)
    p_sq = (probs * probs * m).sum(dims)
    g_sq = (onehot * onehot * m).sum(dims)
    per_class = 1.0 - (2.0 * inter + eps) / (p_sq + g_sq + eps)
    return per_class.mean()


def ce_loss(
    logits: Tensor, target: Tensor, mask: Tensor | None = None, norm: str = "all"
) -> Tensor:
    """Per-pixel cross-entropy × mask.

    ``norm="all"``: mean over all B·H·W pixels (upstream); ``"confident"``: sum / max(Σmask, 1).
    """
    if norm not in _CE_NORMS:
        raise ValueError(f"ce_loss: norm must be one of {_CE_NORMS}, not {norm!r}")
    _check_maps("ce_loss", logits, target, mask)
    per_pixel = F.cross_entropy(logits.float(), target.long(), reduction="none")
    if mask is not None:
        per_pixel = per_pixel * mask.to(per_pixel.dtype)
    if norm == "all" or mask is None:
        return per_pixel.mean()
    return per_pixel.sum() / mask.to(per_pixel.dtype).sum().clamp_min(1.0)


def supervised_loss(logits: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """CE + Dice on labelled data; returns (loss, {"ce", "dice"} detached parts)."""
    ce = ce_loss(logits, target)
    dice = dice_loss(torch.softmax(logits.float(), dim=1), target)
    return ce + dice, {"ce": ce.detach(), "dice": dice.detach()}


def unsupervised_loss(
    logits: Tensor,
    pseudo: Tensor,
    weight: Tensor,
    bg_masked: bool = False,
    ce_norm: str = "all",
) -> Tensor:
    """Masked CE + masked Dice against the mixed pseudo-labels (spec §2.3)."""
    ce = ce_loss(logits, pseudo, weight, norm=ce_norm)
    dice = dice_loss(torch.softmax(logits.float(), dim=1), pseudo, weight, bg_masked=bg_masked)
    return ce + dice


def cdcr_losses(p_fm: Tensor, p_unet: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Consensus entropy L_c and divergence MSE L_d between the two students (spec §2.4/§2.5).

    ``p_fm``: foundation softmax B×K×R×R; ``p_unet``: U-Net softmax B×K×P×P (any R, P).
    Returns ``(l_c, l_d, m_c)`` with the consensus mask ``m_c`` as float B×P×P.  No detach: each
    student receives the gradient of both terms, as upstream.
    """
    if p_fm.ndim != 4 or p_unet.ndim != 4:
        raise ValueError(
            "cdcr_losses: expected B×K×H×W inputs, got "
            f"{tuple(p_fm.shape)} and {tuple(p_unet.shape)}"
        )
    if p_fm.shape[:2] != p_unet.shape[:2]:
        raise ValueError(
            f"cdcr_losses: batch/class dims differ: {tuple(p_fm.shape)} vs {tuple(p_unet.shape)}"
        )
    p_fm = p_fm.float()
    p_unet = p_unet.float()
    size_p = tuple(p_unet.shape[-2:])
    size_r = tuple(p_fm.shape[-2:])
    p_fm_up = p_fm if size_r == size_p else F.interpolate(p_fm, size=size_p, mode="nearest")
    with torch.no_grad():
        m_c = (p_fm_up.max(dim=1).indices == p_unet.max(dim=1).indices).float()
        m_c_down = (
            m_c
            if size_r == size_p
            else F.interpolate(m_c[:, None], size=size_r, mode="nearest")[:, 0]
        )
    ps = p_fm.clamp(_CLAMP_EPS, 1.0)
    pu = p_unet.clamp(_CLAMP_EPS, 1.0)
    ent_fm = (-(ps * torch.log(ps)) * m_c_down[:, None]).mean()
    ent_unet = (-(pu * torch.log(pu)) * m_c[:, None]).mean()
    l_c = 0.5 * (ent_fm + ent_unet)
    l_d = ((p_fm_up - p_unet) ** 2 * (1.0 - m_c)[:, None]).mean()
    return l_c, l_d, m_c
