"""Weak / strong augmentation: alignment, exactness, ranges, determinism, hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_synfoc.config import make_config
from napari_synfoc.core.augment import (
    blur_kernel_size,
    elastic_fields,
    gaussian_blur,
    gaussian_kernel1d,
    resize_label,
    resize_pair,
    smooth_constant,
    strong_augment,
    weak_augment,
)

OFF = dict(aug_scale_p=0.0, aug_rotate_p=0.0, aug_flip_p=0.0, aug_elastic_p=0.0)


def cfg_with(**kw):
    return make_config().replace(**{**OFF, **kw})


def pattern(size=96):
    """An asymmetric label (off-centre rectangle = 1, disk = 2) and an image that encodes it."""
    lab = np.zeros((size, size), np.int64)
    lab[10:40, 15:70] = 1
    yy, xx = np.mgrid[:size, :size]
    lab[(yy - 65) ** 2 + (xx - 60) ** 2 < 15**2] = 2
    img = np.where(lab == 1, 0.6, np.where(lab == 2, 0.95, 0.1)).astype(np.float32)[None]
    return img, lab


def agreement(img, lab):
    """Fraction of pixels where the image's class (by thresholds) equals the label."""
    cls = np.where(img[0] > 0.8, 2, np.where(img[0] > 0.35, 1, 0))
    return float((cls == lab).mean())


# ------------------------------------------------------------------------- resize


def test_resize_pair_shapes_ranges_and_nearest_rule():
    rng = np.random.default_rng(0)
    img = rng.random((3, 20, 30), dtype=np.float32)
    lab = rng.integers(0, 4, (20, 30))
    out, lo = resize_pair(img, lab, 50)
    assert out.shape == (3, 50, 50) and out.dtype == np.float32
    assert lo.shape == (50, 50) and set(np.unique(lo)) <= set(np.unique(lab))
    assert out.min() >= 0.0 and out.max() <= 1.0
    # exact 2x upsampling with PIL's centre rule is pixel repetition
    small = rng.integers(0, 3, (5, 7))
    np.testing.assert_array_equal(
        resize_label(small, (10, 14)), np.repeat(np.repeat(small, 2, 0), 2, 1)
    )
    # a constant image stays constant (Lanczos weights sum to 1)
    c, _ = resize_pair(np.full((1, 13, 17), 0.4, np.float32), None, (40, 21))
    np.testing.assert_allclose(c, 0.4, atol=1e-5)
    # same size: an unchanged copy
    same, _ = resize_pair(img, None, (20, 30))
    np.testing.assert_array_equal(same, img)
    with pytest.raises(ValueError, match="label shape"):
        resize_pair(img, lab[:10], 8)


# ------------------------------------------------------------------------- weak: geometry


def test_flip_is_exact_and_recorded():
    img, lab = pattern()
    out, lo, params = weak_augment(img, lab, cfg_with(aug_flip_p=1.0), np.random.default_rng(1))
    np.testing.assert_array_equal(out, img[:, :, ::-1])
    np.testing.assert_array_equal(lo, lab[:, ::-1])
    assert params["flip"] is True and params["angle"] is None and params["scale"] is None
    out, lo, params = weak_augment(img, lab, cfg_with(), np.random.default_rng(1))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(lo, lab)
    assert params["flip"] is False


def test_geometric_flip_mode_ignores_other_ops():
    img, lab = pattern()
    all_on = cfg_with(aug_scale_p=1.0, aug_rotate_p=1.0, aug_flip_p=1.0, aug_elastic_p=1.0)
    out, lo, params = weak_augment(img, lab, all_on, np.random.default_rng(3), geometric="flip")
    np.testing.assert_array_equal(out, img[:, :, ::-1])
    np.testing.assert_array_equal(lo, lab[:, ::-1])
    assert params["flip"] and not params["elastic"] and params["angle"] is None
    out, lo, _ = weak_augment(img, lab, all_on, np.random.default_rng(3), geometric="none")
    np.testing.assert_array_equal(out, img)
    with pytest.raises(ValueError, match="geometric"):
        weak_augment(img, lab, all_on, np.random.default_rng(3), geometric="bogus")


@pytest.mark.parametrize("op", ["aug_scale_p", "aug_rotate_p", "aug_elastic_p", "all"])
def test_label_moves_with_image(op):
    img, lab = pattern()
    base = agreement(img, lab)
    assert base == 1.0
    kw = {k: 1.0 for k in OFF} if op == "all" else {op: 1.0}
    cfg = cfg_with(**kw)
    moved = 0
    for seed in range(4):
        out, lo, params = weak_augment(img, lab, cfg, np.random.default_rng(seed))
        assert out.shape == img.shape and lo.shape == lab.shape and lo.dtype == lab.dtype
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
        assert set(np.unique(lo)) <= {0, 1, 2}
        # image and label still describe the same objects (only edge pixels may disagree)
        assert agreement(out, lo) > 0.97, (op, seed, params)
        moved += int((lo != lab).mean() > 0.005)
    assert moved >= 3  # the op really changed the geometry


def test_scale_magnifies_by_drawn_factors_and_rotation_angles_are_integers():
    img, lab = pattern(128)
    cfg = cfg_with(aug_scale_p=1.0)
    for seed in range(3):
        _, lo, p = weak_augment(img, lab, cfg, np.random.default_rng(seed))
        sy, sx = p["scale"]
        assert 1.0 <= sy <= 1.5 and 1.0 <= sx <= 1.5
        top, left = p["crop"]
        assert 0 <= top <= int(128 * sy) - 128 and 0 <= left <= int(128 * sx) - 128
        if (lo == 2).sum() and top < 40 and left < 40:  # disk fully inside the crop
            ratio = (lo == 2).sum() / (lab == 2).sum()
            assert ratio == pytest.approx(sy * sx, rel=0.08)
    cfg = cfg_with(aug_rotate_p=1.0)
    angles = {weak_augment(img, lab, cfg, np.random.default_rng(s))[2]["angle"] for s in range(60)}
    assert all(isinstance(a, int) and -20 <= a <= 20 for a in angles)
    assert len(angles) > 15


def test_rotation_fills_background_and_rotates_counter_clockwise():
    img = np.zeros((1, 41, 41), np.float32)
    lab = np.zeros((41, 41), np.int64)
    img[0, 20, 30:38] = 1.0  # a bar to the right of the centre
    lab[20, 30:38] = 1
    full = np.ones((1, 41, 41), np.float32)
    cfg = cfg_with(aug_rotate_p=1.0, aug_rotate_deg=20)
    rng = np.random.default_rng(0)
    while True:  # find a draw with a clearly non-zero angle
        state = rng.bit_generator.state
        _, _, p = weak_augment(img, lab, cfg, rng)
        if abs(p["angle"]) >= 15:
            break
    rng.bit_generator.state = state
    _, lo, p = weak_augment(img, lab, cfg, rng)
    rng.bit_generator.state = state
    out_full, _, _ = weak_augment(full, None, cfg, rng)
    # corners of a rotated all-ones image are black-filled
    assert out_full[0, 0, 0] == 0.0 and out_full[0, -1, -1] == 0.0
    ys, xs = np.nonzero(lo)
    # counter-clockwise (positive angle) moves a right-hand bar up (smaller row index)
    assert np.sign(20 - ys.mean()) == np.sign(p["angle"])


def test_elastic_field_statistics_and_fft_smoothing():
    cfg = make_config()
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (2, 48, 64)).astype(np.float32)
    np.testing.assert_allclose(
        smooth_constant(noise, 3.7)[1],
        ndimage.gaussian_filter(noise[1], 3.7, mode="constant", cval=0.0),
        atol=1e-6,
    )
    # std of a Gaussian-smoothed U(-1,1) field: sqrt(1/3 / (4 pi sigma^2)); times alpha:
    # sqrt(1/(12 pi)) * 2 / 0.08 = 4.07 px, whatever the size
    expected = np.sqrt(1 / (12 * np.pi)) * cfg.aug_elastic_alpha_frac / cfg.aug_elastic_sigma_frac
    stds = []
    for _ in range(6):
        dy, dx = elastic_fields((256, 256), cfg, rng)
        stds += [dy[64:192, 64:192].std(), dx[64:192, 64:192].std()]
    assert np.mean(stds) == pytest.approx(expected, rel=0.3)
    assert expected == pytest.approx(4.07, abs=0.01)


def test_weak_augment_is_deterministic_for_a_seed():
    img, lab = pattern()
    cfg = make_config()
    a = weak_augment(img, lab, cfg, np.random.default_rng(42))
    b = weak_augment(img, lab, cfg, np.random.default_rng(42))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    outs = [weak_augment(img, lab, cfg, np.random.default_rng(s))[0] for s in range(5)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


# ------------------------------------------------------------------------- strong


def test_kernel_size_rule():
    cfg = make_config()
    assert blur_kernel_size(512, cfg) == 51  # int(51.2) = 51, odd
    assert blur_kernel_size(256, cfg) == 25  # int(25.6) = 25
    assert blur_kernel_size(64, cfg) == 7  # int(6.4) = 6 -> 7
    assert blur_kernel_size(100, cfg) == 11  # 10 -> 11
    assert blur_kernel_size(5, cfg) == 1  # int(0.5) = 0 -> at least 1
    np.testing.assert_allclose(
        gaussian_kernel1d(3, 1.0), [0.274069, 0.451863, 0.274069], atol=1e-6
    )


def test_gaussian_blur_matches_reflect_padded_convolution():
    rng = np.random.default_rng(0)
    x = rng.random((2, 9, 11)).astype(np.float32)
    k = gaussian_kernel1d(5, 1.3)
    pad = np.pad(x, ((0, 0), (2, 2), (2, 2)), mode="reflect")  # d c b | a b c d
    ref = np.zeros_like(x)
    for i in range(5):
        for j in range(5):
            ref += k[i] * k[j] * pad[:, i : i + 9, j : j + 11]
    np.testing.assert_allclose(gaussian_blur(x, 5, 1.3), ref, atol=1e-6)


def test_brightness_and_contrast_hand_computed():
    img = np.array([[[0.2, 0.4], [0.6, 0.8]]], np.float32)
    nb = dict(strong_blur_kernel_frac=0.0)  # kernel 1: no blur
    rng = np.random.default_rng(0)
    out = strong_augment(
        img, cfg_with(strong_brightness=(0.5, 0.5), strong_contrast=(1.0, 1.0), **nb), rng
    )
    np.testing.assert_allclose(out, img * 0.5, atol=1e-6)
    out = strong_augment(
        img, cfg_with(strong_brightness=(2.0, 2.0), strong_contrast=(1.0, 1.0), **nb), rng
    )
    np.testing.assert_allclose(out, [[[0.4, 0.8], [1.0, 1.0]]], atol=1e-6)
    # contrast 2 around the mean 0.5: 0.5 + 2 (x - 0.5), clipped
    out = strong_augment(
        img, cfg_with(strong_brightness=(1.0, 1.0), strong_contrast=(2.0, 2.0), **nb), rng
    )
    np.testing.assert_allclose(out, [[[0.0, 0.3], [0.7, 1.0]]], atol=1e-6)
    # RGB: the mean grey level is PIL's luma 0.299 R + 0.587 G + 0.114 B = 0.3858
    rgb = np.stack([np.full((2, 2), v, np.float32) for v in (0.2, 0.4, 0.8)])
    out = strong_augment(
        rgb, cfg_with(strong_brightness=(1.0, 1.0), strong_contrast=(2.0, 2.0), **nb), rng
    )
    np.testing.assert_allclose(out[:, 0, 0], [0.0142, 0.4142, 1.0], atol=1e-5)


def test_strong_view_keeps_geometry_range_and_is_deterministic():
    img, lab = pattern(128)
    cfg = make_config()
    rng = np.random.default_rng(0)
    weak, wl, _ = weak_augment(img, lab, cfg, rng)
    for s in range(6):
        st = strong_augment(weak, cfg, np.random.default_rng(s))
        assert st.shape == weak.shape and st.dtype == np.float32
        assert st.min() >= 0.0 and st.max() <= 1.0
        # pixel-aligned: the interiors of the weak label's regions keep their intensity order
        inner = [ndimage.binary_erosion(wl == c, iterations=8) for c in (0, 1, 2)]
        means = [st[0][m].mean() for m in inner]
        assert means[0] <= means[1] + 5e-3 and means[1] <= means[2] + 5e-3
        assert means[0] < means[2]
    a = strong_augment(weak, cfg, np.random.default_rng(7))
    b = strong_augment(weak, cfg, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, strong_augment(weak, cfg, np.random.default_rng(8)))
