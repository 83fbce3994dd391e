"""Copy-paste box sampler and mixing (spec §4.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_synfoc.config import SynFoCConfig
from napari_synfoc.core.mixing import box_masks, copy_paste, mix_targets, resize_mask, sample_box

CFG = SynFoCConfig()


def test_sample_box_ranges_and_statistics():
    size = 1000  # large, so the floors barely perturb area and aspect
    rng = np.random.default_rng(0)
    lo, hi = CFG.box_area
    r = CFG.box_ratio
    boxes = np.array([sample_box(size, rng, CFG.box_area, r) for _ in range(3000)])
    x, y, w, h = boxes.T
    assert (x >= 0).all() and (y >= 0).all()
    assert (x + w <= size).all() and (y + h <= size).all()
    frac = w * h / size**2
    assert frac.max() <= hi
    assert frac.min() >= lo * 0.97
    aspect = h / w
    assert aspect.min() >= r * 0.97 and aspect.max() <= (1 / r) * 1.03
    # the area fraction is drawn once (only r is redrawn), so it stays ~U(lo, hi)
    assert frac.mean() == pytest.approx((lo + hi) / 2, abs=0.01)
    assert frac.std() == pytest.approx((hi - lo) / np.sqrt(12), abs=0.01)
    # the corner reaches the image origin and big boxes are not rejected for good
    assert x.min() == 0 and y.min() == 0
    assert frac.max() > 0.39


def test_sample_box_deterministic_and_validation():
    a = [sample_box(64, np.random.default_rng(5)) for _ in range(3)]
    b = [sample_box(64, np.random.default_rng(5)) for _ in range(3)]
    assert a == b
    with pytest.raises(ValueError, match="area"):
        sample_box(64, np.random.default_rng(0), area=(0.5, 0.2))
    with pytest.raises(ValueError, match="size"):
        sample_box(0, np.random.default_rng(0))


def test_box_masks_match_boxes():
    m = box_masks(3, 32, np.random.default_rng(1))
    assert m.shape == (3, 32, 32) and m.dtype == torch.float32
    rng = np.random.default_rng(1)
    for i in range(3):
        x, y, w, h = sample_box(32, rng)
        assert m[i].sum().item() == w * h
        assert m[i, y : y + h, x : x + w].min().item() == 1.0


def test_resize_mask_nearest():
    m = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    up = resize_mask(m, 4)
    assert torch.equal(up[0], torch.from_numpy(np.kron(m[0].numpy(), np.ones((2, 2), np.float32))))
    assert torch.equal(resize_mask(up, 2), m)
    assert resize_mask(m.bool(), 4).dtype == torch.bool


def test_copy_paste_exact():
    torch.manual_seed(0)
    u = torch.rand(2, 3, 8, 8)
    lab = torch.rand(2, 3, 8, 8)
    m = box_masks(2, 8, np.random.default_rng(3))
    mixed = copy_paste(u, lab, m)
    inside = m.bool()[:, None].expand_as(u)
    assert torch.equal(mixed[inside], lab[inside])
    assert torch.equal(mixed[~inside], u[~inside])
    assert torch.equal(copy_paste(torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8), m)[:, 0], m)
    with pytest.raises(ValueError, match="mask shape"):
        copy_paste(u, lab, m[:, :4])


def test_mix_targets():
    pl = torch.tensor([[[0, 1], [1, 0]]])
    w = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    gt = torch.tensor([[[2, 2], [2, 2]]])
    m = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    pl_mix, w_mix = mix_targets(pl, w, gt, m)
    assert pl_mix.tolist() == [[[0, 1], [2, 2]]]
    assert w_mix.tolist() == [[[0.0, 1.0], [1.0, 1.0]]]
    assert pl_mix.dtype == torch.long
