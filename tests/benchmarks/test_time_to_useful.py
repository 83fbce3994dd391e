"""The interactive benchmark: metric functions (hand-computed), the CT stack, and a smoke run of
the progressive (view-first) path on the tiny model, plus the embedding reuse across runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import time_to_useful as bi
from benchmarks.common import FAZ_ROOT


def test_slice_dice_by_hand():
    pred = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]], bool)
    gt = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]], bool)
    # slice 0: 2*1/(2+1); slice 1: both empty -> 1; slice 2: missed everything -> 0
    np.testing.assert_allclose(bi.slice_dice(pred, gt), [2 / 3, 1.0, 0.0])


def test_foreground_is_background_probability_below_half():
    prob = np.zeros((1, 2, 1, 3), np.float32)
    prob[0, 0, 0] = [0.6, 0.4, 0.5]
    prob[0, 1, 0] = [0.4, 0.6, 0.5]
    assert bi.foreground(prob).tolist() == [[[False, True, False]]]


def test_error_detection_by_hand():
    ens_fg = np.array([1, 0, 0, 0, 1, 0], bool)
    gt = np.array([0, 0, 1, 0, 1, 0], bool)  # errors at pixels 0 and 2
    flagged = np.array([1, 1, 0, 0, 0, 0], bool)  # one of two flagged is an error
    score = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.0])
    r = bi.error_detection(flagged, score, ens_fg, gt)
    assert r["md_precision"] == pytest.approx(0.5)
    assert r["md_recall"] == pytest.approx(0.5)
    # positives 0.9 and 0.1 against negatives 0.8, 0.2, 0.3, 0.0: (4 + 1) / 8
    assert r["auroc"] == pytest.approx(5 / 8)
    none = bi.error_detection(np.zeros(6, bool), score, gt, gt)
    assert none["md_precision"] is None and none["md_recall"] is None and none["auroc"] is None


def test_evaluate_perfect_models():
    gt = np.zeros((2, 4, 4), np.uint8)
    gt[:, 1:3, 1:3] = 1
    p = np.stack([1.0 - gt, gt.astype(np.float32)], axis=1).astype(np.float32)
    r = bi.evaluate(p, p, gt)
    assert r["dice_fm"] == r["dice_unet"] == r["dice_ensemble"] == 1.0
    assert r["md_precision"] is None  # nothing flagged
    assert r["fm_empty_slices"] == 0


def test_ct_stack_is_plausible_ct():
    img, lab = bi.ct_stack(z=12, size=64)
    assert img.dtype == np.int16 and img.shape == (12, 64, 64) and lab.shape == img.shape
    assert img.min() >= -1024 and img.max() <= 1500 and img.min() < -900 and img.max() > 1000
    organ = lab.reshape(12, -1).any(1)
    assert not organ[0] and not organ[-1] and organ[6]
    assert abs(float(img[6][lab[6] > 0].mean()) - 200.0) < 10.0


def test_judge_and_value_at():
    recs = [{"seconds": 50.0, "dice_ensemble": 0.5}, {"seconds": 110.0, "dice_ensemble": 0.82}]
    res = {
        "S40": {
            "first_overlay_s": 12.0,
            "all_covered_s": 30.0,
            "max_rss_mb_sampled": 900.0,
            "wall_s": 130.0,
            "refreshes": recs,
        }
    }
    assert bi.value_at(recs, "dice_ensemble", 100.0) == 0.5
    goals = {(g["goal"], g["stack"]): g["met"] for g in bi.judge(res)}
    assert goals[("first_overlay_s", "S40")] is False
    assert goals[("ensemble_dice_120s", "S40")] is True
    assert goals[("ensemble_dice_600s", "S40")] is None  # the run stopped before 600 s


def _tiny_stack(z=10, size=32):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    img = rng.normal(0.2, 0.05, (z, size, size)).astype(np.float32)
    lab = np.zeros((z, size, size), np.uint8)
    for k in range(z):
        disk = (yy - size / 2) ** 2 + (xx - size / 2 - k % 3) ** 2 < (size / 5) ** 2
        img[k][disk] += 0.6
        lab[k][disk] = 1
    return img, lab


def _tiny_cfg(**kw):
    from napari_synfoc.config import make_config

    base = dict(
        iterations=12, freeze_encoder=True, cache_embeddings=True, lora_targets="none", seed=3
    )
    base.update(kw)
    return make_config("tiny", **base)


@pytest.fixture
def count_encodes(monkeypatch):
    from napari_synfoc.core.foundation.base import FoundationSegmenter

    calls = {"images": 0}
    real = FoundationSegmenter.encode

    def counting(self, x):
        calls["images"] += int(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(FoundationSegmenter, "encode", counting)
    return calls


@pytest.mark.slow  # trains through train_on_stack (end to end); CI runs it
def test_smoke_progressive_run_and_reports(tmp_path, count_encodes):
    img, lab = _tiny_stack()
    cfg = _tiny_cfg().replace(predict_every=6)
    r = bi.run_stack(
        "tiny", img, lab, [0, 5], cfg, seconds=300, view_slice=8,
        embed_cache_dir=tmp_path / "emb", log=lambda *_: None,
    )  # fmt: skip
    assert r["outcome"] == "done", r
    recs = r["refreshes"]
    assert recs, "no prediction refresh was recorded"
    # the first refresh covers the view slice but not yet the whole stack (view first)
    assert r["first_overlay_s"] == recs[0]["seconds"]
    assert recs[0]["slices_with_both"] < 10
    assert r["all_covered_s"] is not None and recs[-1]["slices_with_both"] == 10
    counts = [x["slices_with_both"] for x in recs]
    assert counts == sorted(counts)
    assert all(0.0 <= x["dice_ensemble"] <= 1.0 for x in recs)
    assert recs[-1]["encoded"] == [12, 12]  # 10 slices + 2 mirrored labelled views
    assert recs[-1]["scored_slices"] == 8
    data = {
        "command": "x",
        "machine": "m",
        "loadavg_start": [0, 0, 0],
        "loadavg_end": [0, 0, 0],
        "stacks": {"S40": r},
        "goals": bi.judge({"S40": r}),
    }
    bi.write_json_atomic(tmp_path / "out" / "i.json", data)
    assert json.loads((tmp_path / "out" / "i.json").read_text(encoding="utf-8"))["stacks"]["S40"][
        "refreshes"
    ]
    md = bi.markdown(data)
    assert "| S40 | 10 |" in md and "## S40: every refresh" in md
    bi.plot(data, tmp_path / "out" / "i.png")
    assert (tmp_path / "out" / "i.png").stat().st_size > 1000


@pytest.mark.slow  # trains through train_on_stack (end to end); CI runs it
def test_second_run_retrain_and_predict_encode_nothing(tmp_path, count_encodes):
    from napari_synfoc.core.events import Done, Encoding
    from napari_synfoc.core.interactive import StackTask, predict_stack, train_on_stack

    img, lab = _tiny_stack()
    task = StackTask(image=img, labels=lab, labeled_slices=[0, 5])
    cfg = _tiny_cfg(iterations=6).replace(predict_every=3)
    cache = tmp_path / "emb"
    ev1 = list(train_on_stack(task, cfg, view_slice=4, embed_cache_dir=cache))
    assert isinstance(ev1[-1], Done)
    first = count_encodes["images"]
    # each slice once, plus flipped views of the slices drawn with a flip
    assert 10 <= first <= 20
    enc = [e for e in ev1 if isinstance(e, Encoding)]
    assert enc[0].done == 0 and enc[-1].done == enc[-1].total == 12
    ev2 = list(
        train_on_stack(
            task, cfg, view_slice=4, embed_cache_dir=cache, init_checkpoint=ev1[-1].checkpoint
        )
    )
    assert isinstance(ev2[-1], Done)
    assert count_encodes["images"] == first, "the warm-start run encoded slices again"
    pred = predict_stack(ev2[-1].checkpoint, img, embed_cache_dir=cache)
    assert pred.fm_prob.shape[0] == 10
    assert count_encodes["images"] == first, "predict encoded slices again"
    predict_stack(ev2[-1].checkpoint, img, embed_cache_dir=None)
    assert count_encodes["images"] == first + 10  # without the cache it must encode


@pytest.mark.slow  # trains through train_on_stack (end to end); CI runs it
def test_without_disk_cache_a_second_run_encodes_again(count_encodes):
    from napari_synfoc.core.interactive import StackTask, train_on_stack

    img, lab = _tiny_stack(z=6)
    task = StackTask(image=img, labels=lab, labeled_slices=[0])
    cfg = _tiny_cfg(iterations=3)
    list(train_on_stack(task, cfg, view_slice=2, embed_cache_dir=None))
    first = count_encodes["images"]
    list(train_on_stack(task, cfg, view_slice=2, embed_cache_dir=None))
    assert count_encodes["images"] >= 2 * 6 and count_encodes["images"] > first


@pytest.mark.skipif(not FAZ_ROOT.is_dir(), reason="needs the shared FAZ data")
def test_faz_stacks_keep_their_size_when_a_site_is_short():
    # Domain5 holds 30 train images: S200 takes the shortfall from the largest site (Domain4)
    assert bi.faz_composition(8) == [8, 8, 8, 8, 8]
    assert bi.faz_composition(40) == [40, 40, 40, 50, 30]
    img, lab = bi.faz_stack(8)
    assert img.shape == lab.shape == (40, 256, 256) and img.dtype == np.uint8
    assert lab[[0, 8, 16]].reshape(3, -1).any(1).all()


@pytest.mark.slow  # trains through train_on_stack (end to end); CI runs it
def test_partial_refreshes_also_repredict_the_stalest_slices(monkeypatch):
    """Between full refreshes, slices shown early (when both models were still empty) are
    predicted again with the newly encoded ones, not left stale until the next full refresh."""
    from napari_synfoc.core.events import Predictions
    from napari_synfoc.core.interactive import StackTask, train_on_stack
    from napari_synfoc.core.trainer import SynFoCTrainer

    monkeypatch.setattr(SynFoCTrainer, "REFRESH_STALE", 3)
    img, lab = _tiny_stack(z=24)
    task = StackTask(image=img, labels=lab, labeled_slices=[0, 12])
    # no full refresh before the end: only the first overlay and the partial refreshes
    cfg = _tiny_cfg(iterations=40, first_predict_at=2)
    events = list(
        train_on_stack(task, cfg, view_slice=6, embed_cache_dir=None, predict_every=1000)
    )
    last: dict[int, int] = {}
    partial = [e for e in events if isinstance(e, Predictions) and e.iteration < 40]
    assert len(partial) >= 5
    for ev in partial:
        for z in ev.covered():
            last[int(z)] = ev.iteration
    first_shown = set(partial[0].covered())
    assert first_shown and partial[0].iteration == 2
    # every slice of the first overlay was predicted again later, before the run's end
    assert all(last[z] > 2 for z in first_shown), (first_shown, last)


def test_dock_config_takes_the_dock_strategy_choice():
    cfg = bi.dock_config("cpu", 40, "auto", "uncol")
    assert cfg.strategy == "uncol" and cfg.iterations == 40
    # a prompted strategy gets the frozen, cached encoder it needs (resolve_config's rule)
    assert cfg.freeze_encoder and cfg.cache_embeddings and cfg.lora_targets == "none"
    assert bi.dock_config("cpu", 40).strategy == "synfoc"
    # no iterations: the dock's spin-box default for the device's profile
    assert bi.dock_config("cpu").iterations == 300
    assert bi.dock_config("cpu", profile="tiny").iterations == 20
    assert bi.parser().parse_args(["--out", "x", "--strategy", "ifl"]).strategy == "ifl"
