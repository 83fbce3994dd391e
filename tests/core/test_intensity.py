"""core.intensity: the default percentile mapping, fixed windows, CT presets, contrast limits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.core.intensity import (
    CT_WINDOWS,
    normalise_volume,
    percentile_bounds,
    window_from_contrast_limits,
)


def test_uint8_divided_by_255():
    a = np.array([0, 51, 255], np.uint8)
    out = normalise_volume(a)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0], atol=1e-7)


def test_percentile_stretch_hand_computed():
    # 0..200 step 1 (201 values): numpy linear percentiles 0.5 -> 1.0, 99.5 -> 199.0
    v = np.arange(201, dtype=np.int16)
    assert percentile_bounds(v) == (1.0, 199.0)
    out = normalise_volume(v)
    np.testing.assert_allclose(out[[0, 1, 100, 199, 200]], [0.0, 0.0, 99 / 198, 1.0, 1.0])


def test_recorded_bounds_act_as_a_window_and_an_empty_pair_gives_zeros():
    rng = np.random.default_rng(0)
    train = rng.integers(-1000, 1500, (4, 9, 8)).astype(np.int16)
    bounds = percentile_bounds(train)
    # the volume the bounds came from maps as the default mapping did
    np.testing.assert_array_equal(normalise_volume(train, bounds=bounds), normalise_volume(train))
    # another volume: 0, 50, 100 with bounds (0, 100) -> 0, 0.5, 1 (and clipped outside)
    out = normalise_volume(np.array([-10, 0, 50, 100, 130], np.int16), bounds=(0, 100))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    # bounds of a constant volume (lo == hi): zeros, where a window that empty is an error
    assert np.all(normalise_volume(np.arange(4.0), bounds=(7.5, 7.5)) == 0.0)
    with pytest.raises(ValueError, match="empty or not finite"):
        normalise_volume(np.arange(4.0), window=(7.5, 7.5))
    with pytest.raises(ValueError, match="not both"):
        normalise_volume(np.arange(4.0), window=(0, 1), bounds=(0, 1))


def test_constant_and_nan():
    assert np.all(normalise_volume(np.full((3, 3), 7.5)) == 0.0)
    f = np.array([0.0, np.nan, 10.0, 5.0], np.float32)
    out = normalise_volume(f)
    assert np.isfinite(out).all() and out[1] == 0.0
    out = normalise_volume(f, window=(0, 10))
    np.testing.assert_allclose(out, [0.0, 0.0, 1.0, 0.5])


def test_window_clips_and_scales_hand_computed():
    hu = np.array([-1000, -160, 40, 240, 1500], np.int16)
    out = normalise_volume(hu, window=CT_WINDOWS["soft tissue"])
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    out = normalise_volume(hu, window=CT_WINDOWS["lung"])  # (-1350, 150), width 1500
    np.testing.assert_allclose(out, [350 / 1500, 1190 / 1500, 1390 / 1500, 1.0, 1.0], rtol=1e-6)
    # a window applies to uint8 too (no /255 shortcut)
    np.testing.assert_allclose(
        normalise_volume(np.array([0, 100, 200], np.uint8), window=(50, 150)), [0.0, 0.5, 1.0]
    )


def test_window_differs_from_percentile_on_ct():
    # body at 30 HU, organ at 60 HU, air -1000, bone 1500: the percentile stretch squeezes the
    # 30 HU contrast into ~1% of the range; the soft-tissue window gives it 7.5%.
    vol = np.full((4, 20, 20), -1000, np.int16)
    vol[:, 2:18, 2:18] = 30
    vol[:, 8:12, 8:12] = 60
    vol[:, 2:4, 2:4] = 1500  # 1% of voxels: the 99.5th percentile is bone
    assert percentile_bounds(vol) == (-1000.0, 1500.0)
    pct = normalise_volume(vol)
    win = normalise_volume(vol, window=CT_WINDOWS["soft tissue"])
    assert pct[0, 10, 10] - pct[0, 5, 5] == pytest.approx(30 / 2500, rel=1e-5)
    assert win[0, 10, 10] - win[0, 5, 5] == pytest.approx(30 / 400, rel=1e-5)


def test_presets():
    assert CT_WINDOWS == {
        "soft tissue": (-160, 240),
        "lung": (-1350, 150),
        "bone": (-450, 1050),
    }


def test_window_from_contrast_limits():
    assert window_from_contrast_limits([-160, 240]) == (-160.0, 240.0)
    assert window_from_contrast_limits((np.float32(0.5), np.int64(3))) == (0.5, 3.0)
    with pytest.raises(ValueError, match="contrast limits"):
        window_from_contrast_limits((5, 5))
    with pytest.raises(ValueError, match="two numbers"):
        window_from_contrast_limits((1, 2, 3))
    with pytest.raises(ValueError, match="upper bound"):
        normalise_volume(np.zeros(3), window=(1, float("nan")))
