"""Every strategy end to end on the tiny model through core.interactive.train_on_stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_synfoc.config import make_config
from napari_synfoc.core.events import Cancelled, Done, Failed, Predictions, Started, Step
from napari_synfoc.core.interactive import StackTask, train_on_stack
from napari_synfoc.core.strategies import STRATEGIES, make_strategy

PROMPTED = ("semisam+", "ifl", "uncol")


def _stack(z=6, size=64, classes=2, seed=0):
    """Noisy discs (and, for 3 classes, a smaller inner disc of class 2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, labs = [], []
    for _ in range(z):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = int(rng.integers(size // 6, size // 4))
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        lab = (d2 < r * r).astype(np.uint8)
        if classes == 3:
            lab[d2 < (r // 2) ** 2] = 2
        img = 0.2 + 0.3 * lab + 0.05 * rng.standard_normal((size, size))
        imgs.append(img.astype(np.float32))
        labs.append(lab)
    return np.stack(imgs), np.stack(labs)


def _cfg(strategy, **kw):
    over = dict(freeze_encoder=True, cache_embeddings=True, lora_targets="none", device="cpu")
    over.update(kw)
    return make_config("tiny", strategy=strategy, **over)


def _task(classes=2):
    img, lab = _stack(classes=classes)
    labels = np.zeros_like(lab)
    labels[[0, 2]] = lab[[0, 2]]
    return StackTask(img, labels, [0, 2])


def test_the_config_table_lists_the_strategies():
    assert STRATEGIES == ("synfoc", "semisam+", "ifl", "uncol")
    assert make_config("tiny").strategy == "synfoc"
    synfoc = make_strategy("synfoc")  # the same step hook as the others, training both models
    assert synfoc.trains_foundation and synfoc.supervised_warm_up and synfoc.uses_ema
    assert not any(make_strategy(s).trains_foundation for s in PROMPTED)
    assert all(make_strategy(s).uses_prompted_foundation for s in PROMPTED)
    with pytest.raises(ValueError, match="strategy"):
        make_config("tiny", strategy="fixmatch")


@pytest.mark.parametrize("strategy", PROMPTED)
def test_each_strategy_trains_and_predicts_two_models(tmp_path, strategy):
    ev = list(train_on_stack(_task(), _cfg(strategy, iterations=6), out_dir=tmp_path,
                             predict_every=3))  # fmt: skip
    assert isinstance(ev[0], Started) and ev[0].config["strategy"] == strategy
    assert isinstance(ev[-1], Done), getattr(ev[-1], "message", ev[-1])
    assert Path(ev[-1].checkpoint).is_file()
    steps = [e for e in ev if isinstance(e, Step)]
    assert [s.iteration for s in steps] == list(range(6))
    for s in steps:
        assert np.isfinite(s.losses["loss"]) and np.isfinite(s.losses["sup_unet"])
        assert "sup_fm" not in s.losses  # the foundation is not trained
    if strategy == "ifl":  # rounds start at 0, 2, 4: pseudo-labels from iteration 2 on
        assert "unsup_unet" not in steps[1].losses and "unsup_unet" in steps[2].losses
        assert np.isnan(steps[2].losses["label_change"])
        assert 0.0 <= steps[4].losses["label_change"] <= 1.0
    else:
        assert all(np.isfinite(s.losses["unsup_unet"]) for s in steps)
        assert all(0.0 <= s.confident_fraction <= 1.0 for s in steps)
    preds = [e for e in ev if isinstance(e, Predictions)]
    assert preds and preds[-1].iteration == 6
    for p in preds:
        assert p.fm_prob.shape == p.unet_prob.shape == (6, 2, 64, 64)
        np.testing.assert_allclose(p.fm_prob.sum(1), 1.0, atol=1e-4)
    # the foundation side is the frozen model prompted by the U-Net: no U-Net foreground on a
    # slice means no prompt, hence no foundation foreground there
    last = preds[-1]
    empty = (last.unet_prob.argmax(1) == 0).all(axis=(1, 2))
    assert (last.fm_prob[empty, 1:] == 0).all()


@pytest.mark.parametrize("strategy", PROMPTED)
def test_each_strategy_supports_three_classes(tmp_path, strategy):
    ev = list(train_on_stack(_task(classes=3), _cfg(strategy, iterations=4), out_dir=tmp_path))
    assert isinstance(ev[-1], Done), getattr(ev[-1], "message", ev[-1])
    p = [e for e in ev if isinstance(e, Predictions)][-1]
    assert p.fm_prob.shape == (6, 3, 64, 64)
    np.testing.assert_allclose(p.fm_prob.sum(1), 1.0, atol=1e-4)


def test_prompted_strategy_with_an_unpromptable_foundation_fails_clearly(tmp_path):
    cfg = make_config("tiny").replace(
        foundation="medsam-vitb", checkpoint=str(tmp_path / "medsam_vit_b.pth"), fm_size=64,
        freeze_encoder=True, cache_embeddings=True, lora_targets="none", strategy="uncol",
    )  # fmt: skip
    ev = list(train_on_stack(_task(), cfg, out_dir=tmp_path))
    assert isinstance(ev[-1], Failed)
    assert "cannot be prompted" in ev[-1].message and "litemedsam" in ev[-1].message


def test_prompted_strategy_needs_the_frozen_cached_encoder(tmp_path):
    ev = list(train_on_stack(_task(), make_config("tiny", strategy="semisam+"), out_dir=tmp_path))
    assert isinstance(ev[-1], Failed)
    assert "freeze_encoder=True" in ev[-1].message and "semisam+" in ev[-1].message


def test_strategy_warm_starts_from_a_synfoc_checkpoint_and_cancels(tmp_path):
    first = list(train_on_stack(_task(), _cfg("synfoc", iterations=2), out_dir=tmp_path / "a"))
    assert isinstance(first[-1], Done)
    n = {"steps": 0}

    def stop():
        return n["steps"] >= 2

    ev = []
    for e in train_on_stack(
        _task(), _cfg("uncol", iterations=50), out_dir=tmp_path / "b",
        init_checkpoint=first[-1].checkpoint, should_stop=stop,
    ):  # fmt: skip
        ev.append(e)
        n["steps"] += isinstance(e, Step)
    assert isinstance(ev[-1], Cancelled) and ev[-1].iteration == 2
    assert Path(ev[-1].checkpoint).is_file()


@pytest.mark.parametrize("strategy", ["uncol", "synfoc"])
def test_a_saved_run_predicts_the_foundation_side_its_run_showed(tmp_path, strategy):
    """predict_stack on a saved run gives the same two predictions as the run's last refresh:
    for a prompted strategy, the frozen model prompted by the U-Net, not the untrained student."""
    from napari_synfoc.core.interactive import predict_stack

    task = _task()
    cfg = _cfg(strategy, iterations=4)
    ev = list(train_on_stack(task, cfg, out_dir=tmp_path, embed_cache_dir=tmp_path / "emb"))
    assert isinstance(ev[-1], Done), getattr(ev[-1], "message", ev[-1])
    last = [e for e in ev if isinstance(e, Predictions)][-1]
    pred = predict_stack(ev[-1].checkpoint, task.image, embed_cache_dir=tmp_path / "emb")
    np.testing.assert_allclose(pred.unet_prob, last.unet_prob, atol=1e-4)
    np.testing.assert_allclose(pred.fm_prob, last.fm_prob, atol=1e-4)


def test_the_trainer_offers_every_attribute_of_the_strategies_view(tmp_path):
    """Strategies see the trainer through TrainerView: the trainer holds each of its fields."""
    from napari_synfoc.core.data import samples_from_stack
    from napari_synfoc.core.strategies.base import PredictView, TrainerView
    from napari_synfoc.core.trainer import SynFoCTrainer

    img, lab = _stack()
    lab_s, unl_s, _ = samples_from_stack(img, lab, [0, 2])
    tr = SynFoCTrainer(_cfg("synfoc", iterations=2), lab_s, unl_s, out_dir=tmp_path)
    names = set(TrainerView.__annotations__) | set(PredictView.__annotations__)
    assert {"cfg", "bank", "unet_pair", "lab_keys", "rng"} <= names
    assert [n for n in sorted(names) if not hasattr(tr, n)] == []
