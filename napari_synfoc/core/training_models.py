"""The models one training run holds: both Mean-Teacher pairs (U-Net, foundation model), their
optimisers and grad scaler, the one-call student modules DDP wraps, and the compiled passes."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import SynFoCConfig
from .device import make_grad_scaler

HEAD_PREFIXES = ("mask_decoder.mask_tokens.", "mask_decoder.output_hypernetworks_mlps.")


class StudentPair(nn.Module):
    """Runs a student on a labelled and (optionally) a mixed batch in one module call.

    One call per iteration is what DistributedDataParallel needs; the two forward passes stay
    separate inside it (BatchNorm statistics as upstream). ``decode``: inputs are cached
    foundation embeddings, so only the mask decoder runs.  ``concat``: one batched pass (exact
    when no BatchNorm runs in train mode, as in the foundation model: SAM's decoder has
    LayerNorms, its frozen encoder's BN is in eval).
    """

    def __init__(self, net: nn.Module, decode: bool = False, concat: bool = False):
        super().__init__()
        self.net = net
        self.decode = decode
        self.concat = concat

    def _one(self, x):
        return self.net.decode(x) if self.decode else self.net(x)

    def forward(self, a, b=None):
        if b is None:
            return self._one(a), None
        if self.concat:
            out = self._one(torch.cat([a, b]))
            return out[: a.shape[0]], out[a.shape[0] :]
        return self._one(a), self._one(b)


def distributed_context() -> tuple[int, int]:
    """(rank, world size), initialising torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def fm_param_groups(fm, cfg: SynFoCConfig) -> list[dict[str, Any]]:
    """The foundation optimiser's parameter groups: one at ``fm_lr`` (the paper), or, with
    ``fm_head_lr`` > 0, the class heads (mask tokens, hypernetwork MLPs) at ``fm_head_lr`` and
    the rest at ``fm_lr``.  Each group keeps its ``base_lr`` for the schedule."""
    named = fm.trainable_named_parameters()
    if not cfg.fm_head_lr:
        return [{"params": [p for _, p in named], "base_lr": cfg.fm_lr}]
    heads = [p for n, p in named if n.startswith(HEAD_PREFIXES)]
    rest = [p for n, p in named if not n.startswith(HEAD_PREFIXES)]
    return [
        {"params": rest, "lr": cfg.fm_lr, "base_lr": cfg.fm_lr},
        {"params": heads, "lr": cfg.fm_head_lr, "base_lr": cfg.fm_head_lr},
    ]


@dataclass
class TrainingModels:
    """Both pairs, their optimisers, the student modules called once per iteration
    (``unet_pair``/``fm_pair``, DDP-wrapped when distributed), the teacher and weak-view passes
    (compiled wrappers sharing the modules' tensors), and the EMA parameter lists."""

    unet: nn.Module
    unet_teacher: nn.Module
    fm_student: Any
    fm_teacher: Any
    opt_unet: torch.optim.Optimizer
    opt_fm: torch.optim.Optimizer
    scaler: Any
    unet_pair: nn.Module
    fm_pair: nn.Module
    unet_teacher_fn: Callable[[Tensor], Tensor]
    fm_teacher_fn: Callable[[Tensor], Tensor]
    unet_weak_fn: Callable[[Tensor], Tensor]
    ema_unet: tuple[list[Tensor], list[Tensor]]
    ema_fm: tuple[list[Tensor], list[Tensor]]


def _frozen_copy(module: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _has_trained_batchnorm(module: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        and any(p.requires_grad for p in m.parameters())
        for m in module.modules()
    )


def build_training_models(
    cfg: SynFoCConfig, device: torch.device, precision: str, cached: bool, world_size: int
) -> TrainingModels:
    """Build both students and teachers (in the seeded order the checkpoints rely on), the
    optimisers (SGD for the U-Net, AdamW for the foundation's trainable parameters), the grad
    scaler, and the compiled / DDP-wrapped passes the config asks for."""
    from .ema import param_pairs
    from .foundation import build_foundation
    from .unet import UNet

    unet = UNet(cfg.in_channels, cfg.num_classes, tuple(cfg.unet_features)).to(device)
    if cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    unet_teacher = _frozen_copy(unet)
    fm = build_foundation(cfg).to(device)
    if cfg.frozen_lowp and precision == "bf16" and device.type == "cuda":
        from .foundation.base import cast_frozen_matmul_weights

        cast_frozen_matmul_weights(fm.image_encoder, torch.bfloat16)
    fm_teacher = _frozen_copy(fm)
    fm_names = {n for n, _ in fm.trainable_named_parameters()}
    opt_unet = torch.optim.SGD(
        unet.parameters(), lr=cfg.unet_lr, momentum=cfg.unet_momentum,
        weight_decay=cfg.unet_weight_decay, foreach=True,
    )  # fmt: skip
    opt_fm = torch.optim.AdamW(
        fm_param_groups(fm, cfg), lr=cfg.fm_lr, betas=tuple(cfg.fm_betas),
        weight_decay=cfg.fm_weight_decay, foreach=True,
    )  # fmt: skip
    unet_pair: nn.Module = StudentPair(unet)
    fm_pair: nn.Module = StudentPair(fm, decode=cached, concat=not _has_trained_batchnorm(fm))
    teacher_u, teacher_f, weak_u = unet_teacher, fm_teacher, unet
    if cfg.compile:  # both students' passes and the teachers' (CUDA recommended)
        mode = cfg.compile_mode
        unet_pair = torch.compile(unet_pair, mode=mode)
        fm_pair = torch.compile(fm_pair, mode=mode)
        teacher_u = torch.compile(unet_teacher, mode=mode)
        weak_u = torch.compile(unet, mode=mode)
        if not cached:
            teacher_f = torch.compile(fm_teacher, mode=mode)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        unet_pair = DDP(unet_pair, device_ids=ids)
        # the prompt encoder's point/mask embeddings and the IoU head get no gradient
        fm_pair = DDP(fm_pair, device_ids=ids, find_unused_parameters=True)
    return TrainingModels(
        unet, unet_teacher, fm, fm_teacher, opt_unet, opt_fm,
        make_grad_scaler(device, precision), unet_pair, fm_pair, teacher_u, teacher_f, weak_u,
        # EMA over all U-Net parameters (not BN buffers, as upstream) and the foundation's
        # trainable ones
        param_pairs(unet_teacher, unet), param_pairs(fm_teacher, fm, fm_names),
    )  # fmt: skip


def training_device(name: str, world_size: int) -> torch.device:
    """The run's device: ``name`` resolved, or this rank's GPU under torchrun."""
    from .device import pick_device

    device = pick_device(name)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


ARCH_KEYS = (
    "num_classes", "in_channels", "foundation", "fm_size", "unet_features", "lora_targets",
    "lora_rank",
)  # fmt: skip


def check_compatible(old: SynFoCConfig, cfg: SynFoCConfig, path) -> None:
    """``CheckpointError`` naming the first architecture setting a checkpoint's config ``old``
    does not share with this run's ``cfg``."""
    from .checkpoint import CheckpointError

    for key in ARCH_KEYS:
        if getattr(old, key) != getattr(cfg, key):
            if key == "num_classes":  # the usual case in the dock: a class painted since
                raise CheckpointError(
                    f"the model in '{path}' was trained for {old.num_classes - 1} class(es) "
                    f"(plus background), but your labels now hold {cfg.num_classes - 1}: "
                    "Train a new model (Retrain warm-starts only with the same classes)"
                )
            raise CheckpointError(
                f"checkpoint '{path}' was trained with {key}={getattr(old, key)!r}, "
                f"but this run uses {key}={getattr(cfg, key)!r}"
            )


@torch.no_grad()
def copy_buffers(teacher: nn.Module, student: nn.Module) -> None:
    """The student's buffers (BatchNorm statistics) into the teacher, where names and shapes
    match: a teacher used in eval mode right after a warm-up is then the student."""
    src = dict(student.named_buffers())
    for name, buf in teacher.named_buffers():
        if name in src and src[name].shape == buf.shape:
            buf.copy_(src[name])
