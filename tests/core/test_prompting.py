"""Prompted segmentation on the tiny random model: masks, embedding reuse, bad prompts, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.common import FAZ_ROOT as FAZ
from napari_synfoc.core import prompting as P


@pytest.fixture(scope="module")
def seg():
    return P.PromptSegmenter("tiny", size=64, seed=0, precision="fp32")


def _slice(seed=0, shape=(40, 50)):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_frozen_and_eval(seg):
    assert not any(p.requires_grad for p in seg.net.parameters())
    assert not seg.net.training and not seg.net.image_encoder.training


def test_box_prompt_mask_shape_dtype(seg):
    img = _slice()
    m = seg.segment_with_box(img, (5, 6, 30, 25))
    assert m.shape == (40, 50) and m.dtype == bool
    # RGB (C, H, W) and napari (H, W, 3) forms of the same slice give the same mask
    rgb = np.repeat(img[None], 3, 0)
    a = seg.segment_with_box(rgb, (5, 6, 30, 25))
    b = seg.segment_with_box(np.moveaxis(rgb, 0, -1), (5, 6, 30, 25), rgb=True)
    assert a.shape == (40, 50)
    np.testing.assert_array_equal(a, b)


def test_points_and_mask_refinement_shapes(seg):
    img = _slice(1)
    m0 = seg.segment_with_box(img, (5, 6, 30, 25))
    m1 = seg.segment_with_points(img, [[10, 12]], [1])
    m2 = seg.segment_with_points(img, [[10, 12], [20, 20]], [1, 0], mask=m0)
    m3 = P.seed_from_ensemble(img, m0, (10, 12), positive=False, segmenter=seg)
    for m in (m1, m2, m3):
        assert m.shape == (40, 50) and m.dtype == bool


def test_embedding_reused_in_memory_and_on_disk(tmp_path):
    seg = P.PromptSegmenter("tiny", size=64, seed=0, precision="fp32", cache_dir=tmp_path)
    img = _slice(2)
    assert not seg.is_embedded(img)
    a = seg.segment_with_box(img, (5, 6, 30, 25))
    assert seg.encoder_calls == 1 and seg.is_embedded(img)
    b = seg.segment_with_box(img, (1, 1, 20, 20))
    c = seg.segment_with_points(img, [[3, 4]], [1], mask=a)
    assert seg.encoder_calls == 1  # same slice: no second encoder pass
    assert b.shape == c.shape == a.shape
    seg.segment_with_box(_slice(3), (5, 6, 30, 25))
    assert seg.encoder_calls == 2  # another slice is encoded
    assert len(list(tmp_path.glob("*.npy"))) == 2
    # a fresh segmenter over the same folder reads the disk cache and gives the same mask
    seg2 = P.PromptSegmenter("tiny", size=64, seed=0, precision="fp32", cache_dir=tmp_path)
    np.testing.assert_array_equal(seg2.segment_with_box(img, (5, 6, 30, 25)), a)
    assert seg2.encoder_calls == 0


def test_lru_evicts(tmp_path):
    seg = P.PromptSegmenter("tiny", size=64, seed=0, precision="fp32", lru_size=1)
    a, b = _slice(4), _slice(5)
    seg.embedding(a)
    seg.embedding(b)
    seg.embedding(a)
    assert seg.encoder_calls == 3


def test_same_cache_key_and_embedding_as_the_trainer(tmp_path):
    """The trainer's frozen tiny encoder (same seed) stores the same key and embedding."""
    import torch

    from napari_synfoc.config import SynFoCConfig
    from napari_synfoc.core.embeddings import EmbeddingDiskCache, frozen_encoder_id
    from napari_synfoc.core.foundation import build_foundation

    cfg = SynFoCConfig(foundation="tiny", fm_size=64, num_classes=2, freeze_encoder=True)
    fm = build_foundation(cfg)
    seg = P.PromptSegmenter("tiny", size=64, seed=cfg.seed, precision="fp32")
    assert seg.model_id == frozen_encoder_id(fm, cfg)
    img = _slice(6, (1, 90, 70))
    x = seg.resized(img)
    disk = EmbeddingDiskCache(tmp_path, frozen_encoder_id(fm, cfg))
    assert disk.key(x[0].numpy()) == seg.key(x)
    with torch.no_grad():
        ref = fm.encode(fm.normalize(x))
    np.testing.assert_allclose(seg.embedding(img).numpy(), ref.numpy(), atol=2e-3)


def _bad(seg, fn):
    calls = seg.encoder_calls
    lru = list(seg._lru)
    with pytest.raises(ValueError) as info:
        fn()
    assert seg.encoder_calls == calls and list(seg._lru) == lru  # nothing changed
    return str(info.value)


def test_bad_prompts_clear_errors_change_nothing(seg):
    img = _slice(7)
    assert "outside" in _bad(seg, lambda: seg.segment_with_box(img, (60, 50, 90, 80)))
    assert "outside" in _bad(seg, lambda: seg.segment_with_box(img, (-30, -30, -5, -5)))
    assert "zero-area" in _bad(seg, lambda: seg.segment_with_box(img, (10, 10, 10, 20)))
    assert "zero-area" in _bad(seg, lambda: seg.segment_with_box(img, (10, 20, 30, 20)))
    assert "no image" in _bad(seg, lambda: seg.segment_with_box(None, (1, 1, 5, 5)))
    assert "no image" in _bad(seg, lambda: seg.segment_with_points(None, [[1, 1]], [1]))
    assert "outside" in _bad(seg, lambda: seg.segment_with_points(img, [[55, 3]], [1]))
    assert "1 (positive) or 0" in _bad(seg, lambda: seg.segment_with_points(img, [[5, 3]], [2]))
    assert "[0, 1]" in _bad(seg, lambda: seg.segment_with_box(img * 100, (1, 1, 5, 5)))
    msg = _bad(seg, lambda: P.points_from_napari([[3, 10, 12], [4, 11, 12]], z=3))
    assert "another slice" in msg and "[4]" in msg
    assert "another slice" in _bad(seg, lambda: P.box_from_napari(np.full((4, 3), 2.0), z=5))


def test_napari_conversions():
    np.testing.assert_array_equal(P.points_from_napari([[2, 10, 12]], z=2), [[12, 10]])
    corners = [[1, 5, 6], [1, 5, 20], [1, 30, 20], [1, 30, 6]]  # (z, row, col)
    assert P.box_from_napari(corners, z=1) == (6.0, 5.0, 20.0, 30.0)


def test_mask_to_box():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert P.mask_to_box(m) == (3.0, 2.0, 8.0, 4.0)
    one = np.zeros((4, 4), bool)
    one[1, 2] = True
    assert P.mask_to_box(one) == (2.0, 1.0, 3.0, 2.0)  # widened to an area
    with pytest.raises(ValueError, match="empty"):
        P.mask_to_box(np.zeros((4, 4), bool))


def test_interpolate_boxes_linear():
    plan = P.interpolate_boxes({2: (0, 0, 10, 10), 6: (4, 8, 14, 30)})
    assert sorted(plan) == [2, 3, 4, 5, 6]
    assert plan[4] == (2.0, 4.0, 12.0, 20.0)
    assert plan[3] == (1.0, 2.0, 11.0, 15.0)


def test_propagation_segments_between_keyed_slices(seg):
    vol = (np.random.default_rng(8).random((8, 40, 50)) * 255).astype(np.uint8)
    seen = []
    out = P.propagate_boxes(
        vol,
        {1: (5, 5, 30, 30), 4: (10, 10, 40, 35)},
        segmenter=seg,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert sorted(out.masks) == [1, 2, 3, 4] and not out.cancelled
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(m.shape == (40, 50) and m.dtype == bool for m in out.masks.values())
    # the trainer's per-volume normalisation: uint8/255, identical to the prepared slices
    prepared = P.prepare_volume(vol)
    np.testing.assert_array_equal(out.masks[2], seg.segment_with_box(prepared[2], out.boxes[2]))


def test_cancelled_propagation_returns_whole_slices_only(seg):
    vol = np.random.default_rng(9).random((10, 40, 50)).astype(np.float32)
    done = []

    def stop():
        return len(done) >= 3

    out = P.propagate_boxes(
        vol,
        {0: (5, 5, 30, 30), 9: (5, 5, 30, 30)},
        segmenter=seg,
        should_stop=stop,
        progress=lambda d, t: done.append(d),
    )
    assert out.cancelled and sorted(out.masks) == [0, 1, 2]
    assert out.planned == list(range(10))
    assert all(m.shape == (40, 50) for m in out.masks.values())


def test_propagation_bad_boxes(seg):
    vol = np.zeros((5, 20, 20), np.uint8)
    with pytest.raises(ValueError, match="slice 2"):
        P.propagate_boxes(vol, {2: (3, 3, 3, 9)}, segmenter=seg)
    with pytest.raises(ValueError, match="outside the volume"):
        P.propagate_boxes(vol, {7: (3, 3, 9, 9)}, segmenter=seg)
    with pytest.raises(ValueError, match="at least one box"):
        P.propagate_boxes(vol, {}, segmenter=seg)
    with pytest.raises(ValueError, match="no image"):
        P.propagate_boxes(None, {0: (3, 3, 9, 9)}, segmenter=seg)


@pytest.mark.slow
@pytest.mark.skipif(not FAZ.is_dir(), reason="FAZ data not available")
def test_real_litemedsam_box_dice_faz_domain1():
    from PIL import Image

    seg = P.PromptSegmenter("litemedsam")
    names = sorted((FAZ / "Domain1" / "test" / "imgs").glob("*.png"))[:6]
    dices = []
    for path in names:
        img = np.array(Image.open(path))[..., 0]
        gt = np.array(Image.open(FAZ / "Domain1" / "test" / "mask" / path.name))[..., 0] > 0
        pred = seg.segment_with_box(img, P.mask_to_box(gt))
        dices.append(2 * (pred & gt).sum() / (pred.sum() + gt.sum()))
    assert np.mean(dices) >= 0.8, dices


def test_module_segment_with_box_reuses_the_embedding_of_an_rgb_slice(monkeypatch):
    seg = P.PromptSegmenter("tiny", size=64, seed=0, precision="fp32")
    monkeypatch.setattr(P, "default_segmenter", lambda foundation="litemedsam": seg)
    img = (np.random.default_rng(10).random((40, 50, 3)) * 255).astype(np.uint8)  # H×W×3
    a = P.segment_with_box(img, (5, 6, 30, 25), rgb=True)
    b = P.segment_with_box(img, (5, 6, 30, 25), rgb=True)
    assert a.shape == (40, 50) and a.dtype == bool
    np.testing.assert_array_equal(a, b)
    assert seg.encoder_calls == 1


def test_click_local_merge_changes_only_the_clicked_region():
    prev = np.zeros((30, 30), bool)
    prev[10:20, 10:20] = True  # area 100: equivalent radius 5.6 px, disc radius 3.4 px at 0.6
    prop = prev.copy()
    prop[10:20, 20:23] = True  # grown on the right, next to a positive click
    prop[0:3, 0:3] = True  # drift far from the click: ignored
    prop[10:12, 10:20] = False  # shrunk at the top, no negative click there: ignored
    out = P.click_local_merge(prev, prop, [[21, 15]], [1])
    expect = prev.copy()
    expect[12:19, 20:23] = (
        np.add.outer((np.arange(12, 19) - 15) ** 2, np.zeros(3)) + (np.arange(20, 23) - 21) ** 2
    ) <= 0.6**2 * 100 / np.pi
    np.testing.assert_array_equal(out, expect)
    # a negative click inside the mask removes the proposal's hole under it, near the click
    prop2 = prev.copy()
    prop2[14:16, 14:16] = False
    out2 = P.click_local_merge(prev, prop2, [[14, 14]], [0])
    assert not out2[14:16, 14:16].any() and out2.sum() == prev.sum() - 4
