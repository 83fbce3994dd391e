"""LoRA on the fused qkv linears of a ViT encoder, through ``peft`` (spec §5).

The paper (SAMed's ``sam_lora_image_encoder.py``) adapts **q and v only**, each with its own rank-r
pair: ``ΔW_q = B_q A_q`` and ``ΔW_v = B_v A_v``, k untouched, scale 1.  On one fused ``qkv`` layer
this is a single peft LoRA of rank ``2r`` whose ``A = [A_q; A_v]`` (2r × in) and whose ``B``
(out × 2r) is block-structured: q rows use columns ``0..r-1``, v rows ``r..2r-1``, k rows nothing.
The structure is enforced by a fixed 0/1 mask multiplied into ``B`` in the forward pass (the masked
entries are initialised to zero, get zero gradient, and weight decay keeps them at zero), so the
k rows of ``ΔW = B A`` are exactly zero and the effective parameter count is the paper's:
``2r·in + r·(rows_q + rows_v)`` per layer, i.e. 12 × 4·4·768 = 147,456 for SAM ViT-B, r = 4.

``targets="qkv"`` is plain peft LoRA of rank r on the whole fused layer (no mask).
Init (peft default): A Kaiming-uniform (a = √5), B zero, so the adapted model starts equal to the
base model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LORA_TARGETS = ("qv", "qkv", "none")

# A row-layout function: (qkv linear, its attention module) -> LongTensor of roles per output row,
# 0 = q, 1 = k, 2 = v.
RowRoles = Callable[[nn.Linear, nn.Module], torch.Tensor]


def sam_vit_qkv_roles(qkv: nn.Linear, attn: nn.Module) -> torch.Tensor:
    """SAM ViT: ``qkv`` rows are three contiguous blocks ``[q; k; v]`` of ``dim`` rows each."""
    dim = qkv.out_features // 3
    return torch.arange(3, device="cpu").repeat_interleave(dim)


def tinyvit_qkv_roles(qkv: nn.Linear, attn: nn.Module) -> torch.Tensor:
    """TinyViT (LiteMedSAM): rows are laid out per head as ``(key_dim | key_dim | d)``."""
    kd, d, heads = int(attn.key_dim), int(attn.d), int(attn.num_heads)
    per_head = torch.tensor([0] * kd + [1] * kd + [2] * d, dtype=torch.long, device="cpu")
    roles = per_head.repeat(heads)
    if roles.numel() != qkv.out_features:
        raise ValueError(
            f"TinyViT qkv layout mismatch: {heads} heads × (2·{kd}+{d}) != {qkv.out_features} rows"
        )
    return roles


class MaskedLoraB(nn.Linear):
    """peft's ``lora_B`` linear with a fixed 0/1 mask multiplied into its weight."""

    lora_mask: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.lora_mask.to(self.weight.dtype), self.bias)


def qv_mask(roles: torch.Tensor, rank: int) -> torch.Tensor:
    """The ``out × 2r`` mask of B for q/v-only LoRA given the per-row roles (0 q, 1 k, 2 v)."""
    roles = roles.cpu()
    mask = torch.zeros(roles.numel(), 2 * rank, device="cpu")
    mask[roles == 0, :rank] = 1.0
    mask[roles == 2, rank:] = 1.0
    return mask


def qkv_modules(encoder: nn.Module) -> list[tuple[str, nn.Linear, nn.Module]]:
    """``(name, linear, attention module)`` of every fused ``attn.qkv`` linear of ``encoder``."""
    found = []
    for name, module in encoder.named_modules():
        qkv = getattr(module, "qkv", None)
        if isinstance(qkv, nn.Linear) and not hasattr(qkv, "base_layer"):
            found.append((f"{name}.qkv" if name else "qkv", qkv, module))
    return found


def inject_lora(encoder: nn.Module, rank: int, targets: str, roles_fn: RowRoles) -> int:
    """Inject LoRA into every fused qkv linear of ``encoder`` in place.

    Freezes every other encoder weight.  Returns the number of adapted layers.
    """
    if targets not in LORA_TARGETS:
        raise ValueError(f"lora_targets must be one of {LORA_TARGETS}, not {targets!r}")
    for p in encoder.parameters():
        p.requires_grad_(False)
    if targets == "none":
        return 0
    if rank < 1:
        raise ValueError(f"lora_rank must be at least 1, got {rank}")
    layers = qkv_modules(encoder)
    if not layers:
        raise ValueError("no fused 'qkv' linear layers found in the image encoder")
    roles = {name: roles_fn(lin, attn) for name, lin, attn in layers}

    from peft import LoraConfig, inject_adapter_in_model

    peft_rank = 2 * rank if targets == "qv" else rank
    config = LoraConfig(
        r=peft_rank,
        lora_alpha=peft_rank,  # scaling alpha / r = 1, as upstream
        lora_dropout=0.0,
        bias="none",
        target_modules=[name for name, _, _ in layers],
        init_lora_weights=True,  # A: kaiming_uniform(a=√5), B: 0
    )
    inject_adapter_in_model(config, encoder)
    for p in encoder.parameters():
        p.requires_grad_(False)
    modules = dict(encoder.named_modules())
    for name, _, _ in layers:
        wrapped = modules[name]
        for key in ("lora_A", "lora_B"):
            for p in getattr(wrapped, key).parameters():
                p.requires_grad_(True)
        if targets == "qv":
            lin_b = wrapped.lora_B["default"]
            lin_b.__class__ = MaskedLoraB
            mask = qv_mask(roles[name], rank)  # CPU; follows the module on .to(device)
            if not lin_b.weight.is_meta:
                mask = mask.to(lin_b.weight.device)
            lin_b.register_buffer("lora_mask", mask, persistent=False)
            if not lin_b.weight.is_meta:
                with torch.no_grad():
                    lin_b.weight.mul_(mask)
    return len(layers)


def lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, peft LoRA layer)`` for every adapted layer of ``model``."""
    return [
        (n, m) for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A
    ]


def lora_delta(layer: nn.Module) -> torch.Tensor:
    """The weight update ``ΔW = scaling · B A`` of one peft LoRA layer (mask applied)."""
    a = layer.lora_A["default"].weight
    lin_b = layer.lora_B["default"]
    b = lin_b.weight * getattr(lin_b, "lora_mask", torch.ones_like(lin_b.weight))
    return layer.scaling["default"] * (b @ a)


def lora_effective_parameters(model: nn.Module) -> int:
    """Free LoRA parameters of ``model``: all of A plus the unmasked entries of B."""
    total = 0
    for _, layer in lora_layers(model):
        total += layer.lora_A["default"].weight.numel()
        lin_b = layer.lora_B["default"]
        mask = getattr(lin_b, "lora_mask", None)
        total += lin_b.weight.numel() if mask is None else int(mask.sum().item())
    return total


def check_masked_zero(model: nn.Module) -> None:
    """Raise if a masked (structurally zero) entry of a q/v LoRA B matrix is not zero."""
    for name, layer in lora_layers(model):
        lin_b = layer.lora_B["default"]
        mask = getattr(lin_b, "lora_mask", None)
        if mask is not None and bool((lin_b.weight.detach() * (1 - mask)).abs().max() > 0):
            raise ValueError(
                f"LoRA B of {name} has non-zero entries outside the q/v blocks: the state was not "
                "trained with lora_targets='qv'"
            )
