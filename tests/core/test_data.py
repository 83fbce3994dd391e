"""In-memory stacks, normalisation, datasets, the infinite loader and the test-set loader."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_synfoc.config import make_config
from napari_synfoc.core.augment import strong_augment, weak_augment
from napari_synfoc.core.data import (
    DataError,
    LabeledDataset,
    Sample,
    UnlabeledDataset,
    infinite_loader,
    load_sample_arrays,
    load_test_set,
    samples_from_stack,
    stack_slices_for_prediction,
)
from napari_synfoc.core.intensity import normalise_volume

CFG = make_config("tiny")


def stack(z=5, y=24, x=20, rgb=False, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    shape = (z, y, x, 3) if rgb else (z, y, x)
    img = rng.integers(0, 255, shape).astype(dtype)
    lab = np.zeros((z, y, x), np.int32)
    lab[:, 5:15, 4:12] = 1
    return img, lab


# ------------------------------------------------------------------------- normalisation


def test_normalise_volume_hand_computed():
    a = np.array([0, 51, 255], np.uint8)
    np.testing.assert_allclose(normalise_volume(a), [0.0, 0.2, 1.0], atol=1e-7)
    # 0..1000: the 0.5 / 99.5 percentiles are exactly 5 and 995
    v = np.arange(1001, dtype=np.uint16)
    out = normalise_volume(v)
    assert out.dtype == np.float32
    assert out[5] == 0.0 and out[0] == 0.0 and out[995] == 1.0 and out[1000] == 1.0
    assert out[500] == pytest.approx((500 - 5) / 990)
    assert np.all(normalise_volume(np.full((3, 3), 7.5)) == 0.0)
    f = np.array([np.nan, 0.0, 1.0, 2.0] * 50, np.float32)
    assert np.isfinite(normalise_volume(f)).all()


# ------------------------------------------------------------------------- stacks


def test_samples_from_zyx_stack():
    img, lab = stack()
    extra = np.random.default_rng(1).integers(0, 255, (3, 24, 20)).astype(np.uint8)
    labeled, unlabeled, info = samples_from_stack(
        img, lab, [3, 1], extra_unlabeled=[extra], num_classes=2
    )
    assert [s.name for s in labeled] == ["slice_0001", "slice_0003"]
    assert {s.domain for s in labeled} == {"stack"}
    assert [(s.domain, s.name) for s in unlabeled] == (
        [("stack", f"slice_{i:04d}") for i in (0, 2, 4)]
        + [("extra1", f"slice_{i:04d}") for i in range(3)]
    )
    assert all(s.label is None for s in unlabeled)
    im, lb = load_sample_arrays(labeled[1], CFG)
    assert im.shape == (1, 24, 20) and im.dtype == np.float32 and lb.dtype == np.int64
    np.testing.assert_array_equal(im[0], img[3] / np.float32(255))
    np.testing.assert_array_equal(lb, lab[3])
    np.testing.assert_array_equal(unlabeled[3].image[0], extra[0] / np.float32(255))
    assert info["method"] == "uint8/255" and (info["lo"], info["hi"]) == (0.0, 255.0)
    preds = stack_slices_for_prediction(img, norm_info=info)
    assert len(preds) == 5 and preds[3].shape == (1, 24, 20)
    np.testing.assert_array_equal(preds[3], labeled[1].image)


def test_samples_from_float_stack_use_one_volume_stretch():
    img, lab = stack(dtype=np.float64)
    img = img * 3.0 + 1000.0
    labeled, unlabeled, info = samples_from_stack(img, lab, [0])
    lo, hi = np.percentile(img, [0.5, 99.5])
    assert info["lo"] == pytest.approx(lo) and info["hi"] == pytest.approx(hi)
    np.testing.assert_allclose(
        unlabeled[1].image[0], np.clip((img[2] - lo) / (hi - lo), 0, 1), atol=1e-5
    )
    preds = stack_slices_for_prediction(img, norm_info=info)
    np.testing.assert_array_equal(preds[2], unlabeled[1].image)


def test_samples_from_rgb_and_2d():
    img, lab = stack(rgb=True)
    labeled, unlabeled, _ = samples_from_stack(img, lab, [2], rgb=True)
    assert labeled[0].image.shape == (3, 24, 20) and len(unlabeled) == 4
    np.testing.assert_array_equal(labeled[0].image[1], img[2, ..., 1] / np.float32(255))
    labeled, unlabeled, _ = samples_from_stack(img[0], lab[0], [0], rgb=True)
    assert len(labeled) == 1 and unlabeled == [] and labeled[0].image.shape == (3, 24, 20)
    g, gl = stack()
    labeled, unlabeled, _ = samples_from_stack(g[0], gl[0], [0])
    assert labeled[0].image.shape == (1, 24, 20) and labeled[0].name == "slice_0000"
    assert stack_slices_for_prediction(img, rgb=True)[0].shape == (3, 24, 20)


def test_stack_errors():
    img, lab = stack()
    with pytest.raises(DataError, match=r"labels shape \(5, 24, 19\).*image shape \(5, 24, 20\)"):
        samples_from_stack(img, lab[..., :19], [0])
    with pytest.raises(DataError, match=r"outside 0\.\.1"):
        samples_from_stack(img, lab * 2, [1], num_classes=2)
    with pytest.raises(DataError, match="outside"):
        samples_from_stack(img, lab - 1, [1])
    with pytest.raises(DataError, match="integer"):
        samples_from_stack(img, lab.astype(np.float32), [1])
    with pytest.raises(DataError, match=r"slice\(s\) \[7\]"):
        samples_from_stack(img, lab, [7])
    with pytest.raises(DataError, match="no labelled slices"):
        samples_from_stack(img, lab, [])
    with pytest.raises(DataError, match="rgb=True"):
        samples_from_stack(np.zeros((4, 5, 6, 3), np.uint8), None, [0])


# ------------------------------------------------------------------------- datasets


def make_sets(n_lab=3, n_unl=5, size=32):
    img, lab = stack(z=n_lab + n_unl, y=40, x=36)
    labeled, unlabeled, _ = samples_from_stack(img, lab, list(range(n_lab)), num_classes=2)
    return (LabeledDataset(labeled, CFG, size), UnlabeledDataset(unlabeled, CFG, size))


def test_dataset_items_shapes_and_exact_recipe():
    lds, uds = make_sets()
    assert len(lds) == 3 and len(uds) == 5
    item = lds[(2, 11)]
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    assert item["label"].shape == (32, 32) and item["label"].dtype == torch.int64
    assert item["index"] == 2 and isinstance(item["flip"], bool)
    # the item is weak_augment of the cached resized image with rng (seed, draw, index)
    rng = np.random.default_rng((CFG.seed, 11, 2))
    w, wl, p = weak_augment(lds.images[2], lds.labels[2].astype(np.int64), CFG, rng)
    np.testing.assert_array_equal(item["image"].numpy(), w)
    np.testing.assert_array_equal(item["label"].numpy(), wl)
    u = uds[(4, 3)]
    assert u["strong"].shape == u["image"].shape == (1, 32, 32)
    assert (u["label"] == -1).all()  # unknown labels
    rng = np.random.default_rng((CFG.seed, 3, 4))
    w, _, p = weak_augment(uds.images[4], uds.labels[4].astype(np.int64), CFG, rng)
    np.testing.assert_array_equal(u["image"].numpy(), w)
    # the strong view is a photometric change of this very weak view (pixel-aligned)
    np.testing.assert_array_equal(u["strong"].numpy(), strong_augment(w, CFG, rng))
    assert u["flip"] == p["flip"]
    # plain integer keys use the dataset's epoch
    a, b = lds[1], lds[1]
    np.testing.assert_array_equal(a["image"], b["image"])


def test_flip_only_datasets_and_label_errors():
    img, lab = stack(z=2, y=32, x=32)
    labeled, _, _ = samples_from_stack(img, lab, [0, 1])
    ds = LabeledDataset(labeled, CFG, 32, geometric="flip")
    flips = 0
    for d in range(8):
        it = ds[(0, d)]
        base = ds.images[0]
        exp = base[:, :, ::-1] if it["flip"] else base
        np.testing.assert_array_equal(it["image"].numpy(), exp)
        flips += it["flip"]
    assert 0 < flips < 8
    bad, _, _ = samples_from_stack(img, lab * 3, [0])
    with pytest.raises(DataError, match=r"outside 0\.\.1"):
        LabeledDataset(bad, CFG, 16)
    with pytest.raises(DataError, match="no labelled images"):
        LabeledDataset([], CFG, 16)
    with pytest.raises(DataError, match="has no label"):
        LabeledDataset([Sample("x", "d", image=np.zeros((1, 4, 4), np.float32))], CFG, 8)


def batches(ds, n, **kw):
    return list(itertools.islice(infinite_loader(ds, **kw), n))


def test_infinite_loader_shapes_passes_and_determinism():
    lds, uds = make_sets(n_lab=4, n_unl=6)
    b = batches(uds, 1, batch_size=2, seed=5)[0]
    assert b["image"].shape == (2, 1, 32, 32) and b["strong"].shape == (2, 1, 32, 32)
    assert b["label"].shape == (2, 32, 32) and b["index"].shape == (2,)
    assert b["flip"].dtype == torch.bool
    first = batches(lds, 6, batch_size=2, seed=5)
    again = batches(lds, 6, batch_size=2, seed=5)
    for x, y in zip(first, again):
        for k in x:
            assert torch.equal(x[k], y[k])
    # each pass (2 batches of 2) covers all 4 items once, and passes are reshuffled
    passes = [
        sorted(torch.cat([first[2 * p]["index"], first[2 * p + 1]["index"]]).tolist())
        for p in range(3)
    ]
    assert passes == [[0, 1, 2, 3]] * 3
    orders = [
        torch.cat([first[2 * p]["index"], first[2 * p + 1]["index"]]).tolist() for p in range(3)
    ]
    assert orders == [np.random.default_rng((5, p)).permutation(4).tolist() for p in range(3)]
    assert len({tuple(o) for o in orders}) == 3  # reshuffled every pass
    other = batches(lds, 6, batch_size=2, seed=6)
    assert any(not torch.equal(x["image"], y["image"]) for x, y in zip(first, other))


def test_infinite_loader_small_sets_and_drop_last():
    img, lab = stack(z=3, y=16, x=16)
    one, unl, _ = samples_from_stack(img, lab, [1])
    ds = LabeledDataset(one, CFG, 16)
    bs = batches(ds, 3, batch_size=2, seed=0)
    assert all(b["index"].tolist() == [0, 0] for b in bs)
    uds = UnlabeledDataset(unl, CFG, 16)  # 2 items, batch 3: with replacement
    got = batches(uds, 4, batch_size=3, seed=0)
    counts = np.bincount(torch.cat([g["index"] for g in got]).numpy(), minlength=2)
    assert counts.tolist() == [6, 6]
    lds, _ = make_sets(n_lab=5, n_unl=1)
    keep = batches(lds, 4, batch_size=2, seed=1, drop_last=False)
    assert [len(b["index"]) for b in keep[:3]] == [2, 2, 1]


def test_infinite_loader_workers_match_single_process():
    lds, _ = make_sets(n_lab=4, n_unl=1, size=16)
    a = batches(lds, 3, batch_size=2, seed=9, num_workers=0)
    b = batches(lds, 3, batch_size=2, seed=9, num_workers=2)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])


def test_load_test_set_resizes_label_nearest():
    img, lab = stack(z=2, y=40, x=30)
    labeled, _, _ = samples_from_stack(img, lab, [0, 1])
    out = load_test_set(labeled, 20)
    assert [n for n, _, _ in out] == ["slice_0000", "slice_0001"]
    name, im, lb = out[0]
    assert im.shape == (1, 20, 20) and lb.shape == (20, 20) and lb.dtype == np.int64
    assert set(np.unique(lb)) == {0, 1}
    # nearest, PIL's centre rule: row i <- floor((i + .5) * 2), col j <- floor((j + .5) * 1.5)
    rows = ((np.arange(20) + 0.5) * 2).astype(int)
    cols = ((np.arange(20) + 0.5) * 1.5).astype(int)
    np.testing.assert_array_equal(lb, lab[0][np.ix_(rows, cols)])
