"""Issue 22 (scale): a stack's samples map each slice when it is read (``NormalisedSlice``),
exactly as the whole-volume mapping did, with no float32 copy of the volume."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from napari_synfoc.core.data import NormalisedSlice, load_sample_arrays, samples_from_stack
from napari_synfoc.core.intensity import normalise_volume


def _volume(kind: str) -> tuple[np.ndarray, tuple[float, float] | None]:
    rng = np.random.default_rng(2)
    if kind == "uint8":
        return rng.integers(0, 256, (5, 12, 10)).astype(np.uint8), None
    if kind == "window":
        return rng.integers(-1000, 2000, (5, 12, 10)).astype(np.int16), (-160.0, 240.0)
    if kind == "constant":
        return np.full((5, 12, 10), 7.0, np.float32), None
    img = rng.normal(0, 1, (5, 12, 10)).astype(np.float32)
    if kind == "nan":
        img[2, 3, 4] = np.nan
    return img, None


@pytest.mark.parametrize("kind", ["uint8", "window", "float percentile", "constant", "nan"])
def test_each_sample_maps_its_slice_as_the_whole_volume_mapping_does(kind):
    img, window = _volume(kind)
    lab = np.zeros(img.shape, np.uint8)
    labeled, unlabeled, info = samples_from_stack(img, lab, [1], window=window)
    want = normalise_volume(img, False, window)
    by_slice = {int(s.name.split("_")[1]): s for s in labeled + unlabeled}
    for z, s in by_slice.items():
        assert isinstance(s.image, NormalisedSlice) and s.image.shape == (1, 12, 10)
        got = np.asarray(s.image)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got[0], want[z])  # bitwise: the same formula per slice
        im, _ = load_sample_arrays(s, {"in_channels": 1})
        np.testing.assert_array_equal(im[0], want[z])
    assert info["method"] == {
        "uint8": "uint8/255", "window": "window", "constant": "percentile 0.5-99.5",
    }.get(kind, "percentile 0.5-99.5")  # fmt: skip


def test_samples_hold_views_of_the_raw_volume_not_a_float_copy():
    img = np.zeros((4, 64, 64), np.int16)
    img[:, 10:20, 10:20] = 500
    lab = np.zeros(img.shape, np.uint8)
    labeled, unlabeled, _ = samples_from_stack(img, lab, [0], window=(0.0, 1000.0))
    for s in labeled + unlabeled:
        assert np.shares_memory(s.image._src, img)  # noqa: SLF001 - the view it maps from


def test_a_normalised_slice_indexes_and_pickles_as_its_array():
    src = np.arange(24, dtype=np.float32).reshape(4, 6, 1)
    ns = NormalisedSlice(src, (0.0, 23.0))
    arr = np.asarray(ns)
    assert arr.shape == ns.shape == (1, 4, 6) and len(ns) == 1
    np.testing.assert_array_equal(ns[0], arr[0])
    back = pickle.loads(pickle.dumps(ns))
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, arr)
    assert np.asarray(ns, dtype=np.float64).dtype == np.float64


def test_rgb_and_extra_images_map_lazily_too():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    extra = rng.normal(5, 2, (2, 8, 8, 3)).astype(np.float32)
    lab = np.zeros((3, 8, 8), np.uint8)
    labeled, unlabeled, _ = samples_from_stack(img, lab, [0], extra_unlabeled=[extra], rgb=True)
    s0 = labeled[0]
    np.testing.assert_array_equal(
        np.asarray(s0.image), np.moveaxis(img[0] / np.float32(255), -1, 0)
    )
    extras = [s for s in unlabeled if s.domain == "extra1"]
    want = normalise_volume(extra, True)
    assert len(extras) == 2
    for i, s in enumerate(extras):
        np.testing.assert_array_equal(np.asarray(s.image), np.moveaxis(want[i], -1, 0))
