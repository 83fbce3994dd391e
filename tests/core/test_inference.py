"""The one prediction path: both resize policies on the tiny model, with and without caches."""

from __future__ import annotations

import numpy as np
import torch

from napari_synfoc.config import make_config
from napari_synfoc.core.embeddings import EmbeddingBank, EmbeddingDiskCache, frozen_encoder_id
from napari_synfoc.core.foundation import build_foundation
from napari_synfoc.core.inference import (
    OVERLAY_RESIZE,
    PROTOCOL_RESIZE,
    predict_labels,
    predict_probabilities,
)
from napari_synfoc.core.unet import build_unet


def _models(**kw):
    cfg = make_config("tiny", num_classes=3, in_channels=3, seed=5, **kw)
    torch.manual_seed(0)
    return cfg, build_unet(cfg).eval(), build_foundation(cfg).eval()


def test_overlay_policy_gives_probabilities_at_the_image_size():
    cfg, unet, fm = _models()
    imgs = [np.random.default_rng(i).random((3, 50, 50), dtype=np.float32) for i in range(3)]
    fm_p, un_p = predict_probabilities(unet, fm, imgs, cfg.unet_size, "cpu", "fp32", batch=2)
    assert fm_p.shape == un_p.shape == (3, 3, 50, 50)
    np.testing.assert_allclose(fm_p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(un_p.sum(1), 1.0, atol=1e-5)
    assert OVERLAY_RESIZE.fm_input == "bilinear" and PROTOCOL_RESIZE.fm_input == "nearest"


def test_bank_and_disk_cache_give_the_same_predictions(tmp_path):
    cfg, unet, fm = _models(freeze_encoder=True, cache_embeddings=True, lora_targets="none")
    imgs = [np.random.default_rng(i).random((3, 64, 64), dtype=np.float32) for i in range(2)]
    plain = predict_probabilities(unet, fm, imgs, cfg.unet_size, "cpu", "fp32")
    bank = EmbeddingBank(fm, torch.device("cpu"), "fp32")
    banked = predict_probabilities(
        unet, fm, imgs, cfg.unet_size, "cpu", "fp32", bank=bank, bank_keys=["a", "b"]
    )
    assert set(bank.store) == {("a", False), ("b", False)}
    np.testing.assert_allclose(banked[0], plain[0], atol=2e-3)  # fp16-stored embeddings
    x = torch.from_numpy(np.stack(imgs))
    q_plain = predict_labels(unet, fm, x, cfg, "cpu", "fp32")
    cache = EmbeddingDiskCache(tmp_path, frozen_encoder_id(fm, cfg))
    q_cached = predict_labels(unet, fm, x, cfg, "cpu", "fp32", cache=cache, raw=imgs)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    assert q_plain[0].shape == (2, cfg.unet_size, cfg.unet_size)
    np.testing.assert_array_equal(q_cached[0], q_plain[0])
    assert (q_cached[1] == q_plain[1]).mean() > 0.99
    again = predict_labels(unet, fm, x, cfg, "cpu", "fp32", cache=cache, raw=imgs)
    np.testing.assert_array_equal(again[1], q_cached[1])


def test_disk_cache_writers_of_one_slice_never_collide(tmp_path):
    """Many threads storing the same slice at once: each writes its own temp file, the last
    rename wins, and no temp file is left behind."""
    import threading

    from napari_synfoc.core.embeddings import EmbeddingDiskCache

    cache = EmbeddingDiskCache(tmp_path, "model")
    image = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    emb = np.full((2, 2), 0.5, np.float32)
    errors: list[BaseException] = []

    def write():
        try:
            for _ in range(20):
                cache.put(image, emb)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npy"]
    np.testing.assert_array_equal(cache.get(image), emb.astype(np.float16))
