"""SAM ViT-B (MedSAM / SAM checkpoints) at any input size, and the tiny random SAM for tests."""

from __future__ import annotations

import types
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .base import FoundationSegmenter, adapted_segmenter
from .lora import sam_vit_qkv_roles
from .weights import load_sam_checkpoint

PATCH = 16
VITB = dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11), window=14)
TINY = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(0, 1), window=0)


class _Parts(nn.Module):
    """Holder with SAM's state-dict prefixes: image_encoder. / prompt_encoder. / mask_decoder."""

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
    ):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder


def _check_size(name: str, size: int) -> None:
    if size < PATCH or size % PATCH:
        raise ValueError(f"{name}: fm_size must be a positive multiple of {PATCH}, got {size}")


def build_sam_parts(
    img_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    global_attn_indexes: tuple[int, ...],
    window: int,
    prompt_dim: int = 256,
    decoder_depth: int = 2,
    decoder_mlp: int = 2048,
    decoder_heads: int = 8,
    iou_hidden: int = 256,
) -> _Parts:
    """SAM's image encoder, prompt encoder and (4-token) mask decoder built for ``img_size``."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        TwoWayTransformer,
    )

    grid = img_size // PATCH
    encoder = ImageEncoderViT(
        img_size=img_size,
        patch_size=PATCH,
        in_chans=3,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        out_chans=prompt_dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=window,
        global_attn_indexes=tuple(global_attn_indexes),
    )
    prompt = PromptEncoder(
        embed_dim=prompt_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=decoder_depth,
            embedding_dim=prompt_dim,
            mlp_dim=decoder_mlp,
            num_heads=decoder_heads,
        ),
        transformer_dim=prompt_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_hidden,
    )
    return _Parts(encoder, prompt, decoder)


def build_sam_vitb(cfg) -> FoundationSegmenter:
    """MedSAM / SAM ViT-B at ``cfg.fm_size`` with weights from ``cfg.checkpoint`` (required)."""
    name = cfg.foundation
    _check_size(name, cfg.fm_size)
    if not cfg.checkpoint:
        raise ValueError(
            f"{name} needs a checkpoint file (e.g. medsam_vit_b.pth); it cannot be downloaded here"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        parts = build_sam_parts(cfg.fm_size, **VITB)
        base = load_sam_checkpoint(parts, cfg.checkpoint)
        base["name"] = f"{name}:{base['name']}"
        return adapted_segmenter(name, parts, cfg, cfg.fm_size, base, sam_vit_qkv_roles)


def build_tiny(cfg) -> FoundationSegmenter:
    """A real SAM-shaped model with seeded random weights (embed 32, depth 2), for tests.

    With ``cfg.checkpoint`` set, a tiny SAM state dict is loaded (resized) like a ViT-B one.
    """
    _check_size("tiny", cfg.fm_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        parts = build_tiny_parts(cfg.fm_size)
        if cfg.checkpoint:
            base = load_sam_checkpoint(parts, cfg.checkpoint)
        else:
            base = {"name": f"tiny-random(seed={cfg.seed})", "path": None, "sha256": None}
        return adapted_segmenter("tiny", parts, cfg, cfg.fm_size, base, sam_vit_qkv_roles)


def build_tiny_parts(img_size: int) -> _Parts:
    """The tiny SAM: ViT embed 32 / depth 2 / 2 heads (global attention), decoder width 32."""
    return build_sam_parts(
        img_size,
        **TINY,
        prompt_dim=32,
        decoder_depth=1,
        decoder_mlp=64,
        decoder_heads=2,
        iou_hidden=32,
    )


def _fused_attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    """SAM ``Attention.forward`` through ``scaled_dot_product_attention`` (same maths)."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    b, h, w, _ = x.shape
    n = h * w
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # B × heads × N × hd
    bias = None
    if self.use_rel_pos:
        # SAM's decomposed relative position terms (add_decomposed_rel_pos without the zero
        # attention map it adds them to): bias[q, k] = rel_h[q, k_h] + rel_w[q, k_w]
        r_q = q.reshape(b * self.num_heads, h, w, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(w, w, self.rel_pos_w))
        bias = (
            (rel_h[..., :, None] + rel_w[..., None, :])
            .reshape(b, self.num_heads, n, n)
            .to(q.dtype)
        )
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return self.proj(out)


def enable_fused_attention(encoder: nn.Module) -> int:
    """Route every SAM ViT attention of ``encoder`` through fused SDPA; returns the count."""
    from segment_anything.modeling.image_encoder import Attention

    count = 0
    for module in encoder.modules():
        if isinstance(module, Attention):
            module.forward = types.MethodType(_fused_attention_forward, module)
            count += 1
    return count
