"""Recognising a CT in Hounsfield units, and the reader opening it in the soft-tissue window."""

from __future__ import annotations

import numpy as np

from napari_synfoc.io.hounsfield import CT_WINDOWS, looks_like_ct, suggested_window


def _ct(z=4, size=64, pad=None):
    """Air around a soft-tissue disc with a bone spot; ``pad``: the value outside a circular
    field of view (as scanners write -2048 or -3024 there)."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    sl = np.full((size, size), -1000.0)
    sl[xx**2 + yy**2 < 0.12] = 40.0
    sl[(xx - 0.1) ** 2 + yy**2 < 0.002] = 900.0
    if pad is not None:
        sl[xx**2 + yy**2 > 0.25] = pad
    return np.repeat(sl[None], z, 0).astype(np.int16)


def test_a_ct_in_hounsfield_units_is_recognised_with_or_without_fov_padding():
    assert looks_like_ct(_ct())
    assert looks_like_ct(_ct(pad=-2048))  # 21 % of each slice outside the field of view
    assert looks_like_ct(_ct().astype(np.float32))
    with_nan = _ct().astype(np.float32)
    with_nan[0, :5] = np.nan
    assert looks_like_ct(with_nan)
    assert suggested_window(_ct()) == "soft tissue" and "soft tissue" in CT_WINDOWS


def test_other_images_keep_the_percentile_mapping():
    rng = np.random.default_rng(0)
    assert not looks_like_ct(rng.random((4, 32, 32)).astype(np.float32) * 1200)  # MR-like
    assert not looks_like_ct(rng.normal(0, 1, (4, 32, 32)).astype(np.float32))  # z-scored
    assert not looks_like_ct(np.zeros((4, 32, 32), np.uint8))
    assert not looks_like_ct(np.full((2, 8, 8), np.nan, np.float32))
    assert not looks_like_ct(np.full((2, 8, 8), -1000, np.int16))  # all air: no tissue
    assert suggested_window(rng.random((2, 8, 8))) is None


def test_the_reader_opens_a_ct_in_the_soft_tissue_window(tmp_path):
    import SimpleITK as sitk

    from napari_synfoc.io.readers import read_layer_data

    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_ct()), str(path))
    ((data, kwargs, kind),) = read_layer_data(path)
    assert kind == "image" and kwargs["contrast_limits"] == list(CT_WINDOWS["soft tissue"])
    mr = tmp_path / "mr.nii.gz"
    sitk.WriteImage(
        sitk.GetImageFromArray(
            (np.arange(4 * 32 * 32) % 700).reshape(4, 32, 32).astype(np.int16) + 5
        ),
        str(mr),
    )
    ((_, kwargs, kind),) = read_layer_data(mr)
    assert kind == "image" and "contrast_limits" not in kwargs
