"""Issue 22 item 5: the worker assembles review maps slice by slice, in place, without
stack-sized float32 probabilities; the maps equal review_maps of the same probabilities."""

import numpy as np
import pytest

from napari_synfoc.app.worker import _FullPredictions
from napari_synfoc.core.events import Predictions
from napari_synfoc.core.review import blank_review_maps, review_maps, review_maps_into

Z, H, W = 7, 12, 10
LABELS = ("fm_label", "unet_label", "ensemble_label", "consensus", "divergence")
HEAT_ATOL = 2.0**-12  # float16 rounding of a value in [0, 1]: half an ulp at 0.5..1


def _probs(rng, n, k=2):
    logits = rng.normal(size=(n, k, H, W)).astype(np.float32) * 3
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _assert_slices_equal(maps, ref, rows):
    """``maps`` on ``rows`` equals ``ref`` (review_maps of the stack): labels exactly, heat to
    float16 rounding, scores and agreement to float rounding."""
    for name in LABELS:
        np.testing.assert_array_equal(getattr(maps, name)[rows], getattr(ref, name)[rows], name)
    np.testing.assert_allclose(maps.heat[rows].astype(np.float32), ref.heat[rows], atol=HEAT_ATOL)
    np.testing.assert_allclose(maps.slice_scores[rows], ref.slice_scores[rows], rtol=1e-12)
    np.testing.assert_allclose(maps.agreement[rows], ref.agreement[rows], rtol=1e-12)
    np.testing.assert_array_equal(maps.ensemble_boxes[rows], ref.ensemble_boxes[rows])


def _assert_blank(maps, rows, unet=True):
    """No prediction on ``rows`` (``unet``: nor the U-Net's)."""
    names = LABELS if unet else tuple(n for n in LABELS if n != "unet_label")
    for name in names:
        assert not getattr(maps, name)[rows].any(), name
    assert not maps.heat[rows].any() and not maps.slice_scores[rows].any()
    assert np.isnan(maps.agreement[rows]).all()
    assert not maps.ensemble_boxes[rows].any()


def test_review_maps_into_equals_review_maps_in_chunks():
    rng = np.random.default_rng(0)
    fm, un = _probs(rng, Z, k=3), _probs(rng, Z, k=3)
    fm[2] = un[2]  # a slice where the models agree exactly
    for rule in ("argmax", "uncertain", "argmax_uncertain"):
        ref = review_maps(fm, un, rule=rule)
        maps = blank_review_maps(Z, 3, (H, W))
        review_maps_into(maps, range(Z), fm, un, rule=rule, chunk=3)  # 3 + 3 + 1 slices
        _assert_slices_equal(maps, ref, list(range(Z)))
    with pytest.raises(ValueError, match="rows"):
        review_maps_into(maps, [0, 1], fm, un)


def test_partial_events_give_review_maps_of_the_slices_they_bring():
    rng = np.random.default_rng(1)
    fm, un = _probs(rng, Z), _probs(rng, Z)
    full = _FullPredictions()
    seen = []
    for rows in ((3, 4), (0, 6), (4,)):  # slice 4 twice: the later prediction wins
        if rows == (4,):
            fm[4], un[4] = _probs(rng, 1)[0], _probs(rng, 1)[0]
        ev = Predictions(len(seen), fm[list(rows)], un[list(rows)], rows, Z)
        update = full.add(ev)
        seen.append(update)
    maps, ref = update.maps, review_maps(fm, un)
    _assert_slices_equal(maps, ref, [0, 3, 4, 6])
    _assert_blank(maps, [1, 2, 5])  # not predicted: background, nothing to check
    assert update.covered == [0, 3, 4, 6] and update.unet_only == [] and update.n_slices == Z
    # each update is its own object (the GUI tells updates apart by identity)
    assert len({id(u.maps) for u in seen}) == 3


def test_unet_only_rows_then_both_models():
    rng = np.random.default_rng(2)
    fm, un = _probs(rng, Z), _probs(rng, Z)
    full = _FullPredictions()
    zeros = np.zeros_like(fm[:3])
    sent = zeros.copy()
    sent[1] = fm[2]  # rows for slices 1, 2, 5: only slice 2 holds the foundation model's
    ev = Predictions(0, sent, un[[1, 2, 5]], (1, 2, 5), Z, foundation_ready=(False, True, False))
    update = full.add(ev)
    assert update.unet_only == [1, 5] and update.covered == [2]
    ref = review_maps(fm, un)
    _assert_slices_equal(update.maps, ref, [2])
    np.testing.assert_array_equal(update.maps.unet_label[[1, 5]], ref.unet_label[[1, 5]])
    assert update.maps.unet_label[[1, 5]].any()
    _assert_blank(update.maps, [1, 5], unet=False)
    _assert_blank(update.maps, [0, 3, 4, 6])
    # the encoder reaches slice 5: both models there now
    update = full.add(Predictions(1, fm[[5]], un[[5]], (5,), Z, foundation_ready=(True,)))
    assert update.unet_only == [1] and update.covered == [2, 5]
    _assert_slices_equal(update.maps, ref, [2, 5])
    # a covered slice listed without its foundation row holds the U-Net's only from then on
    un[2] = _probs(rng, 1)[0]
    update = full.add(Predictions(2, zeros[:1], un[[2]], (2,), Z, foundation_ready=(False,)))
    assert update.unet_only == [1, 2] and update.covered == [5]
    np.testing.assert_array_equal(update.maps.unet_label[2], un[2].argmax(axis=0))
    _assert_blank(update.maps, [2], unet=False)


def test_whole_stack_event_after_partial_ones_starts_fresh_maps():
    rng = np.random.default_rng(3)
    fm, un = _probs(rng, Z), _probs(rng, Z)
    full = _FullPredictions()
    first = full.add(Predictions(0, fm[:2], un[:2], (0, 1), Z))
    kept = {name: getattr(first.maps, name).copy() for name in LABELS}
    fm2, un2 = _probs(rng, Z), _probs(rng, Z)
    update = full.add(Predictions(1, fm2, un2))
    assert update.covered is None and update.unet_only == [] and update.n_slices == Z
    _assert_slices_equal(update.maps, review_maps(fm2, un2), list(range(Z)))
    for name in LABELS:  # the maps already shown are not overwritten by a whole-stack event
        np.testing.assert_array_equal(getattr(first.maps, name), kept[name])
    # partial events after it update those maps in place
    fm2[3], un2[3] = fm[3], un[3]
    update = full.add(Predictions(2, fm[[3]], un[[3]], (3,), Z))
    assert update.covered is None
    _assert_slices_equal(update.maps, review_maps(fm2, un2), list(range(Z)))


def test_a_new_stack_shape_resets_the_maps():
    rng = np.random.default_rng(4)
    full = _FullPredictions()
    fm, un = _probs(rng, Z), _probs(rng, Z)
    full.add(Predictions(0, fm[:3], un[:3], (0, 1, 2), Z))
    fm5, un5 = _probs(rng, 2, k=3), _probs(rng, 2, k=3)  # three classes, five slices
    update = full.add(Predictions(1, fm5, un5, (3, 4), 5))
    assert update.maps.fm_label.shape == (5, H, W) and update.maps.agreement.shape == (5, 2)
    assert update.covered == [3, 4]
    ref = review_maps(np.concatenate([np.full_like(fm5[:1], 1 / 3)] * 3 + [fm5]),
                      np.concatenate([np.full_like(un5[:1], 1 / 3)] * 3 + [un5]))  # fmt: skip
    _assert_slices_equal(update.maps, ref, [3, 4])
    _assert_blank(update.maps, [0, 1, 2])


def test_no_stack_sized_float32_copy_is_kept():
    rng = np.random.default_rng(5)
    z = 40
    full = _FullPredictions()
    for s in range(0, z, 16):
        rows = tuple(range(s, min(z, s + 16)))
        update = full.add(Predictions(0, _probs(rng, len(rows)), _probs(rng, len(rows)), rows, z))
    voxels = z * H * W
    held = [v for v in vars(full).values() if isinstance(v, np.ndarray)]
    assert not held  # no probabilities kept
    maps = update.maps
    for name in LABELS:
        assert getattr(maps, name).dtype == np.uint8
    assert maps.heat.dtype == np.float16 and maps.heat.shape == (z, H, W)
    per_voxel = sum(a.nbytes for a in (*(getattr(maps, n) for n in LABELS), maps.heat)) / voxels
    assert per_voxel == 7  # five uint8 maps and a float16 heat map (before: + 2 x 8 float32)
    assert maps.slice_scores.shape == (z,) and maps.agreement.shape == (z, 1)
