"""The prompt-free SAM-family semantic segmenter (SAMed style, spec §5).

One interface for every foundation model: an image encoder (frozen, optionally LoRA-adapted), the
SAM prompt encoder called with no prompts, and the SAM mask decoder with K mask tokens whose K
mask maps are used together as K-way logits (channel 0 = background).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .frozen_encoder import FrozenEncoder
from .lora import RowRoles, check_masked_zero, inject_lora, lora_effective_parameters, lora_layers
from .weights import REINIT_DECODER_KEYS

STATE_FORMAT = "napari-synfoc-foundation/1"


HEAD_INITS = ("random", "pretrained")


def reset_decoder_heads(decoder: nn.Module, num_classes: int, init: str = "random") -> None:
    """Rebuild the decoder's mask tokens, hypernetwork MLPs and IoU head for K tokens.

    ``init="random"`` (upstream, spec §5): all three are randomly initialised, even when K equals
    SAM's 4.  ``init="pretrained"``: every foreground class k >= 1 starts as the pretrained
    single-mask token 0 with its hypernetwork MLP, and the background class 0 as the same token
    with the MLP's last layer negated, so at the start the background logit is minus the
    foreground logit (two classes: p_fg = sigmoid(2·f), the pretrained mask's 0.5 boundary).
    The IoU head is random in both (its output is unused).  Uses the current torch RNG.
    """
    if init not in HEAD_INITS:
        raise ValueError(f"unknown decoder head init {init!r}; choose from {HEAD_INITS}")
    MLP = type(decoder.iou_prediction_head)  # SAM's MLP(in, hidden, out, num_layers)
    dim = decoder.transformer_dim
    old_iou = decoder.iou_prediction_head
    old_token = decoder.mask_tokens.weight.detach()[0].clone()
    old_mlp = decoder.output_hypernetworks_mlps[0]
    decoder.num_multimask_outputs = num_classes - 1
    decoder.num_mask_tokens = num_classes
    decoder.mask_tokens = nn.Embedding(num_classes, dim)
    decoder.output_hypernetworks_mlps = nn.ModuleList(
        MLP(dim, dim, dim // 8, 3) for _ in range(num_classes)
    )
    decoder.iou_prediction_head = MLP(
        dim, old_iou.layers[0].out_features, num_classes, old_iou.num_layers
    )
    if init == "pretrained":
        with torch.no_grad():
            decoder.mask_tokens.weight.copy_(old_token.expand(num_classes, -1))
            for k, mlp in enumerate(decoder.output_hypernetworks_mlps):
                mlp.load_state_dict(old_mlp.state_dict())
                if k == 0:
                    mlp.layers[-1].weight.neg_()
                    mlp.layers[-1].bias.neg_()


def _fused_layernorm2d_forward(self, x: torch.Tensor) -> torch.Tensor:
    """SAM's ``LayerNorm2d`` (normalise over channels, biased variance, eps inside the root)
    through the native fused ``layer_norm`` kernel: the same function in one op instead of
    eight elementwise ones, and a fused backward."""
    return F.layer_norm(
        x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps
    ).permute(0, 3, 1, 2)


def fuse_layernorm2d(model: nn.Module) -> int:
    """Route every SAM-style ``LayerNorm2d`` of ``model`` through :func:`F.layer_norm`; returns
    the count. (About 7 % of a LiteMedSAM decoder step on the CPU; same maths.)"""
    count = 0
    for m in model.modules():
        if (
            type(m).__name__ == "LayerNorm2d"
            and hasattr(m, "eps")
            and isinstance(getattr(m, "weight", None), torch.Tensor)
        ):
            m.forward = types.MethodType(_fused_layernorm2d_forward, m)
            count += 1
    return count


def cast_frozen_matmul_weights(module: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen Linear/Conv2d layers of ``module`` in ``dtype``; returns how many.

    Under autocast to ``dtype`` these layers' weights are cast on every call anyway; holding
    them in ``dtype`` gives the same arithmetic without the per-step copies (and half the
    memory). Trainable layers (LoRA, decoder) and norms stay float32.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            own = list(m.parameters(recurse=False))
            if own and not any(q.requires_grad for q in own):
                m.to(dtype)
                count += 1
    return count


class FoundationSegmenter(nn.Module):
    """A SAM-shaped model used prompt-free as a K-class semantic segmenter.

    Attributes: ``input_size`` (S), ``logit_size`` (R), ``num_classes`` (K), ``embed_shape``
    (C, E, E of the image embedding), ``base_weights`` ({"name", "path", "sha256"}).
    ``forward(x) = decode(encode(normalize(x)))``: ``B×C×S×S`` in [0, 1] → ``B×K×R×R`` logits.
    """

    def __init__(
        self,
        name: str,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        input_size: int,
        num_classes: int,
        base_weights: dict[str, Any],
        lora: dict[str, Any],
    ) -> None:
        super().__init__()
        self.name = name
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.base_weights = dict(base_weights)
        self.lora = dict(lora)
        # the frozen encoder's CPU runtime (set by build_foundation from encoder_runtime)
        self.frozen_encoder: FrozenEncoder | None = None
        e = tuple(int(v) for v in prompt_encoder.image_embedding_size)
        self.embed_shape = (int(prompt_encoder.embed_dim), e[0], e[1])
        self.logit_size = 4 * e[0]  # two stride-2 transposed convs in the decoder
        # SAMed's normalisation: mean 0, std 1 (the model sees [0, 1] intensities).
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.ones(1, 3, 1, 1), persistent=False)
        for p in self.prompt_encoder.parameters():
            p.requires_grad_(True)
        for p in self.mask_decoder.parameters():
            p.requires_grad_(True)
        self.train()

    # -- mode ------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> FoundationSegmenter:
        """Set the mode; the frozen image encoder always stays in eval mode.

        (Its weights never change; TinyViT's BatchNorms must keep their running statistics.
        LoRA has no dropout, so the mode does not affect it.)
        """
        super().train(mode)
        self.image_encoder.eval()
        return self

    @property
    def encoder_trainable(self) -> bool:
        """True when the image encoder has trainable (LoRA) parameters."""
        return any(p.requires_grad for p in self.image_encoder.parameters())

    # -- forward ---------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C×S×S`` in [0, 1] (C = 1 or 3) → the encoder's ``B×3×S×S`` input."""
        s = self.input_size
        if x.ndim != 4 or x.shape[1] not in (1, 3) or tuple(x.shape[-2:]) != (s, s):
            raise ValueError(
                f"{self.name} expects a B×1×{s}×{s} or B×3×{s}×{s} image tensor, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image embedding ``B×C×E×E`` of a normalised input (LoRA included).

        With a fully frozen encoder it runs without autograd (embeddings can be cached), and
        on the CPU through :attr:`frozen_encoder` (ONNX Runtime / OpenVINO) when one is set.
        """
        if self.encoder_trainable:
            return self.image_encoder(x)
        with torch.no_grad():
            if self.frozen_encoder is not None:
                return self.frozen_encoder(self.image_encoder, x)
            return self.image_encoder(x)

    def decode(self, emb: torch.Tensor) -> torch.Tensor:
        """Prompt-free decoding of ``B×C×E×E`` embeddings to ``B×K×R×R`` logits (all K tokens)."""
        if emb.ndim != 4 or tuple(emb.shape[1:]) != self.embed_shape:
            raise ValueError(
                f"{self.name} decoder expects B×{'×'.join(map(str, self.embed_shape))} "
                f"embeddings, got shape {tuple(emb.shape)}"
            )
        b = emb.shape[0]
        sparse, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
        sparse = sparse.expand(b, -1, -1)
        dense = dense.expand(b, -1, -1, -1)
        image_pe = self.prompt_encoder.get_dense_pe()
        return predict_all_masks(self.mask_decoder, emb, image_pe, sparse, dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(self.normalize(x)))

    # -- parameters and checkpoints --------------------------------------------------------
    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of everything trained: LoRA A/B, mask decoder, prompt encoder."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def lora_parameter_count(self) -> int:
        """Free LoRA parameters (A plus the unmasked part of B)."""
        return lora_effective_parameters(self.image_encoder)

    def _checkpoint_keys(self) -> list[str]:
        keys = []
        for k in self.state_dict():
            if k.startswith(("prompt_encoder.", "mask_decoder.")) or ".lora_" in k:
                keys.append(k)
        return keys

    def state_for_checkpoint(self) -> dict[str, Any]:
        """What training changes (LoRA, mask decoder, prompt encoder) plus identifying metadata."""
        sd = self.state_dict()
        return {
            "format": STATE_FORMAT,
            "foundation": self.name,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "lora": dict(self.lora),
            "base_weights": dict(self.base_weights),
            "state": {k: sd[k].detach().cpu().clone() for k in self._checkpoint_keys()},
        }

    def load_checkpoint_state(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_for_checkpoint` output; raise ``ValueError`` on any mismatch."""
        if not isinstance(d, dict) or d.get("format") != STATE_FORMAT:
            raise ValueError(f"not a foundation-model state (no '{STATE_FORMAT}' format tag)")
        for key, mine in (
            ("foundation", self.name),
            ("input_size", self.input_size),
            ("num_classes", self.num_classes),
            ("lora", self.lora),
        ):
            if d.get(key) != mine:
                raise ValueError(
                    f"foundation state was saved with {key}={d.get(key)!r}, "
                    f"this model has {mine!r}"
                )
        theirs, mine_sha = d.get("base_weights", {}).get("sha256"), self.base_weights.get("sha256")
        if theirs and mine_sha and theirs != mine_sha:
            raise ValueError(
                f"foundation state was trained on base weights {d['base_weights'].get('name')!r} "
                f"(sha256 {theirs[:12]}…), but this model uses {self.base_weights.get('name')!r} "
                f"(sha256 {mine_sha[:12]}…)"
            )
        state = d["state"]
        expected = set(self._checkpoint_keys())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"foundation state does not fit this model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        own = self.state_dict()
        for k, v in state.items():
            if v.shape != own[k].shape:
                raise ValueError(
                    f"foundation state tensor '{k}' has shape {tuple(v.shape)}, "
                    f"model expects {tuple(own[k].shape)}"
                )
        self.load_state_dict(state, strict=False)
        check_masked_zero(self.image_encoder)

    def extra_repr(self) -> str:
        return (
            f"name={self.name}, input_size={self.input_size}, logit_size={self.logit_size}, "
            f"num_classes={self.num_classes}, lora={self.lora}, "
            f"lora_layers={len(lora_layers(self.image_encoder))}"
        )


def adapted_segmenter(
    name: str,
    parts: nn.Module,
    cfg,
    input_size: int,
    base_weights: dict[str, Any],
    qkv_roles: RowRoles,
) -> FoundationSegmenter:
    """Adapt a loaded SAM-shaped model for training and wrap it as a FoundationSegmenter.

    ``parts`` has ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.  The decoder heads
    are reset for ``cfg.num_classes`` (``cfg.fm_head_init``), and LoRA (``cfg.lora_rank`` on
    ``cfg.lora_targets``, none with ``cfg.freeze_encoder``) goes into the image encoder, whose
    q/k/v rows ``qkv_roles`` names.  Uses the current torch RNG.
    """
    head_init = getattr(cfg, "fm_head_init", "random")
    reset_decoder_heads(parts.mask_decoder, cfg.num_classes, head_init)
    targets = "none" if cfg.freeze_encoder else cfg.lora_targets
    inject_lora(parts.image_encoder, cfg.lora_rank, targets, qkv_roles)
    lora = {"targets": targets, "rank": cfg.lora_rank if targets != "none" else 0}
    return FoundationSegmenter(
        name,
        parts.image_encoder,
        parts.prompt_encoder,
        parts.mask_decoder,
        input_size=input_size,
        num_classes=cfg.num_classes,
        base_weights=base_weights,
        lora=lora,
    )


def predict_all_masks(
    decoder: nn.Module,
    emb: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> torch.Tensor:
    """SAM ``MaskDecoder.predict_masks`` for a batch of images, returning every mask token's map.

    (Upstream's method repeats the embeddings once per prompt set, which is for one image with
    many prompts; here image i is decoded with prompt set i.)  The IoU head is not evaluated: its
    output is unused (upstream gives it no gradient either).
    """
    b = emb.shape[0]
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse.to(tokens.dtype)], dim=1)
    src = emb + dense
    pos_src = image_pe.expand(b, -1, -1, -1)
    _, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos_src, tokens)
    mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
    src = src.transpose(1, 2).reshape(b, c, h, w)
    upscaled = decoder.output_upscaling(src)
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
        dim=1,
    )
    _, c2, h2, w2 = upscaled.shape
    return (hyper_in @ upscaled.reshape(b, c2, h2 * w2)).reshape(b, -1, h2, w2)


__all__ = [
    "REINIT_DECODER_KEYS",
    "HEAD_INITS",
    "FoundationSegmenter",
    "predict_all_masks",
    "reset_decoder_heads",
]
