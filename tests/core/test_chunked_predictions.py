"""Issue 22 (scale): whole-volume predictions in batches of slices, never one whole-stack float
array: the training run's full refreshes and its end (view-first), and a saved model's Predict
(``iter_predict_stack``, ``predict_stack_maps``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.config import SynFoCConfig, make_config
from napari_synfoc.core import encoding_schedule
from napari_synfoc.core.data import prediction_slice_chunks, stack_slices_for_prediction
from napari_synfoc.core.events import Done, Predictions
from napari_synfoc.core.interactive import (
    StackTask,
    iter_predict_stack,
    predict_stack,
    predict_stack_maps,
    train_on_stack,
)
from napari_synfoc.core.review import review_maps

TINY = dict(
    foundation="tiny", fm_size=64, unet_size=64, unet_features=(4, 8, 16, 32, 64), device="cpu",
    precision="fp32", warmup_steps=1, warmup_unet_steps=1, first_predict_at=2,
)  # fmt: skip
if "encoder_runtime" in SynFoCConfig.__dataclass_fields__:
    TINY["encoder_runtime"] = "torch"


def _stack(z=10, size=32, seed=4):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((z, size, size), np.uint8)
    for i in range(z):
        lab[i] = (yy - 16) ** 2 + (xx - 12 - i) ** 2 < 49
    img = (300.0 * lab + rng.normal(40, 20, lab.shape)).astype(np.int16)
    return img, lab


# ----------------------------------------------------------------------------- slice mapping
@pytest.mark.parametrize(
    "kind", ["int16 percentile", "uint8", "window", "rgb", "one 2-D image", "one RGB image"]
)
def test_slice_chunks_map_each_slice_as_the_whole_stack_call_does(kind):
    rng = np.random.default_rng(0)
    img, rgb, window = _stack()[0], False, None
    if kind == "uint8":
        img = rng.integers(0, 256, (7, 16, 16)).astype(np.uint8)
    elif kind == "window":
        window = (0.0, 200.0)
    elif kind == "rgb":
        img, rgb = rng.normal(0, 1, (5, 16, 16, 3)).astype(np.float32), True
    elif kind == "one 2-D image":
        img = img[3]
    elif kind == "one RGB image":
        img, rgb = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8), True
    whole = stack_slices_for_prediction(img, rgb, window=window)
    parts = list(prediction_slice_chunks(img, rgb, window, chunk=3))
    idx = [i for p, _ in parts for i in p]
    assert idx == list(range(len(whole)))
    assert all(len(p) <= 3 and len(s) == len(p) for p, s in parts)
    for i, a in zip(idx, [a for _, s in parts for a in s], strict=True):
        assert a.dtype == np.float32 and a.shape == whole[i].shape
        np.testing.assert_allclose(a, whole[i], rtol=0, atol=1e-6)


def test_slice_chunks_refuse_a_bad_shape_and_an_empty_window():
    with pytest.raises(ValueError, match="expected a"):
        next(prediction_slice_chunks(np.zeros((2, 3, 4, 5)), False))
    with pytest.raises(ValueError, match="empty"):
        next(prediction_slice_chunks(np.zeros((2, 4, 4)), False, (5.0, 5.0)))


# ----------------------------------------------------------------------------- a saved model
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    img, lab = _stack()
    labels = np.zeros_like(lab)
    labels[[2, 7]] = lab[[2, 7]]
    cfg = make_config("cpu-interactive", iterations=2, **TINY)
    out = tmp_path_factory.mktemp("run")
    ev = list(
        train_on_stack(StackTask(img, labels, [2, 7]), cfg, out_dir=out, embed_cache_dir=None)
    )
    assert isinstance(ev[-1], Done), ev[-1]
    return ev[-1].checkpoint, img


def test_iter_predict_stack_comes_in_chunks_that_make_the_whole_prediction(saved_model):
    ckpt, img = saved_model
    parts = list(iter_predict_stack(ckpt, img, embed_cache_dir=None, chunk=4))
    assert [p.covered() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(p.n_slices == 10 and p.foundation_ready is None for p in parts)
    assert all(p.fm_prob.shape == (len(p.slices), 2, 32, 32) for p in parts)
    whole = predict_stack(ckpt, img, embed_cache_dir=None)
    assert whole.slices is None and whole.fm_prob.shape == (10, 2, 32, 32)
    np.testing.assert_allclose(
        np.concatenate([p.fm_prob for p in parts]), whole.fm_prob, rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        np.concatenate([p.unet_prob for p in parts]), whole.unet_prob, rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(whole.unet_prob.sum(1), 1.0, atol=1e-5)


def test_predict_stack_maps_equal_the_maps_of_the_whole_prediction(saved_model):
    ckpt, img = saved_model
    whole = predict_stack(ckpt, img, embed_cache_dir=None)
    want = review_maps(whole.fm_prob, whole.unet_prob)
    got = predict_stack_maps(ckpt, img, embed_cache_dir=None)
    for name in ("fm_label", "unet_label", "ensemble_label", "consensus", "divergence"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.heat.astype(np.float32), want.heat, atol=5e-4)
    np.testing.assert_allclose(got.slice_scores, want.slice_scores, atol=1e-5)


def test_predict_refuses_a_wrong_channel_count_before_predicting(saved_model):
    ckpt, img = saved_model
    rgb = np.repeat(img[..., None], 3, axis=-1)
    with pytest.raises(ValueError, match="colour"):
        next(iter_predict_stack(ckpt, rgb, rgb=True, embed_cache_dir=None))


# ----------------------------------------------------------------------------- a training run
def test_a_runs_full_refreshes_and_its_end_come_in_batches_nearest_the_view_first(monkeypatch):
    monkeypatch.setattr(encoding_schedule, "SWEEP_BATCH", 4)
    img, lab = _stack()
    labels = np.zeros_like(lab)
    labels[[2, 7]] = lab[[2, 7]]
    cfg = make_config(
        "cpu-interactive", iterations=4, unet_first=False, encode_schedule="encode_first",
        **TINY,
    )  # fmt: skip
    ev = list(
        train_on_stack(
            StackTask(img, labels, [2, 7]), cfg, view_slice=5, embed_cache_dir=None,
            predict_every=2,
        )
    )  # fmt: skip
    assert isinstance(ev[-1], Done), ev[-1]
    preds = [e for e in ev if isinstance(e, Predictions)]
    assert preds and all(e.slices is not None and len(e.slices) <= 4 for e in preds)
    assert all(len(e.fm_prob) == len(e.slices) and e.n_slices == 10 for e in preds)
    # the end (the last iteration): every slice once, nearest slice 5 first
    end = [e for e in preds if e.iteration == 4]
    # distances 0, 1, 1, 2 | 2, 3, 3, 4 | 4, 5 (ties: the lower slice first)
    assert [e.covered() for e in end] == [[3, 4, 5, 6], [1, 2, 7, 8], [0, 9]]
    # a mid-run full refresh (every encoded slice at iteration 2) is cut the same way
    mid = [z for e in preds if e.iteration == 2 for z in e.covered()]
    assert sorted(mid) == list(range(10)) and len(mid) == 10
