"""The dock's config builder (Qt-free part of the widget)."""

from __future__ import annotations

from napari_synfoc.app.task_builder import build_config


def test_gpu_profile_in_the_dock_skips_compile_unless_asked():
    cfg = build_config(profile="gpu-fast", device="cpu", iterations=10)
    assert cfg.compile is False and cfg.precision == "bf16" and cfg.fused_attention
    cfg = build_config(profile="gpu-fast", device="cpu", overrides={"compile": True})
    assert cfg.compile is True
    assert build_config(profile="cpu-interactive", device="cpu").cache_embeddings is True
