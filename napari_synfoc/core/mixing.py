"""Copy-paste box M and the mixed image/targets (spec §4.1)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from napari_synfoc.config import SynFoCConfig

_DEFAULTS = SynFoCConfig()


def sample_box(
    size: int,
    rng: np.random.Generator,
    area: tuple[float, float] = _DEFAULTS.box_area,
    ratio: float = _DEFAULTS.box_ratio,
) -> tuple[int, int, int, int]:
    """One random box ``(x, y, w, h)`` inside a ``size``×``size`` image.

    Area fraction a ~ U(area) (drawn once), aspect r ~ U(ratio, 1/ratio), ``w = ⌊√(a·P²/r)⌋``,
    ``h = ⌊√(a·P²·r)⌋``, corner uniform on [0, P); r and the corner are redrawn until the box fits.
    """
    if size < 1:
        raise ValueError(f"sample_box: size must be positive, got {size}")
    lo, hi = area
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"sample_box: area range must satisfy 0 < lo <= hi <= 1, got {area}")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"sample_box: ratio must be in (0, 1], got {ratio}")
    box_area = rng.uniform(lo, hi) * size * size
    while True:
        r = rng.uniform(ratio, 1.0 / ratio)
        w = int(math.sqrt(box_area / r))
        h = int(math.sqrt(box_area * r))
        x = int(rng.integers(0, size))
        y = int(rng.integers(0, size))
        if x + w <= size and y + h <= size:
            return x, y, w, h


def box_masks(
    batch: int,
    size: int,
    rng: np.random.Generator,
    area: tuple[float, float] = _DEFAULTS.box_area,
    ratio: float = _DEFAULTS.box_ratio,
) -> Tensor:
    """B×size×size float masks, 1 inside one random box per image (CPU tensor)."""
    masks = torch.zeros(batch, size, size)
    for i in range(batch):
        x, y, w, h = sample_box(size, rng, area, ratio)
        masks[i, y : y + h, x : x + w] = 1.0
    return masks


def resize_mask(m: Tensor, size: int) -> Tensor:
    """Nearest resize of B×H×W masks to size×size, keeping the dtype."""
    if m.ndim != 3:
        raise ValueError(f"resize_mask: expected B×H×W, got {tuple(m.shape)}")
    if tuple(m.shape[-2:]) == (size, size):
        return m
    out = F.interpolate(m[:, None].float(), size=(size, size), mode="nearest")[:, 0]
    return out.to(m.dtype)


def copy_paste(unlabeled: Tensor, labeled: Tensor, m: Tensor) -> Tensor:
    """Mixed image ``u·(1−M) + l·M`` for B×C×H×W images and a B×H×W box mask."""
    if unlabeled.shape != labeled.shape or unlabeled.ndim != 4:
        raise ValueError(
            "copy_paste: images must both be B×C×H×W of equal shape, got "
            f"{tuple(unlabeled.shape)} "
            f"and {tuple(labeled.shape)}"
        )
    b, _, h, w = unlabeled.shape
    if tuple(m.shape) != (b, h, w):
        raise ValueError(
            f"copy_paste: mask shape {tuple(m.shape)} does not match images ({b}, {h}, {w})"
        )
    mm = m[:, None].to(unlabeled.dtype)
    return unlabeled * (1 - mm) + labeled * mm


def mix_targets(pl: Tensor, w: Tensor, gt: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """Mixed targets: pseudo-label outside the box, GT inside; confidence 1 in the box."""
    if not (pl.shape == w.shape == gt.shape == m.shape):
        raise ValueError(
            "mix_targets: pl, w, gt and m must share one B×H×W shape, got "
            f"{tuple(pl.shape)}, {tuple(w.shape)}, {tuple(gt.shape)}, {tuple(m.shape)}"
        )
    inside = m > 0.5
    pl_mix = torch.where(inside, gt.to(pl.device).long(), pl.long())
    w_mix = torch.where(inside, torch.ones_like(w), w)
    return pl_mix, w_mix
