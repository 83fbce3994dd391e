"""Mean-Teacher EMA with warm start (spec §6.3): decay_t = min(1 − 1/(t+1), decay)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from napari_synfoc.config import SynFoCConfig

_DEFAULTS = SynFoCConfig()


def ema_decay(t: int, decay: float = _DEFAULTS.ema_decay) -> float:
    """Warm-start decay at 0-based iteration t: 0 at t=0, 0.5 at t=1, ``decay`` from
    t ≥ 1/(1−decay)−1."""
    return min(1.0 - 1.0 / (t + 1), decay)


@torch.no_grad()
def _update_pairs(pairs: list[tuple[Tensor, Tensor]], d: float) -> None:
    for tp, sp in pairs:
        if tp.shape != sp.shape:
            raise ValueError(
                "ema_update: teacher/student shapes differ: "
                f"{tuple(tp.shape)} vs {tuple(sp.shape)}"
            )
    if not pairs:
        return
    tps = [tp for tp, _ in pairs]
    sps = [sp.detach().to(device=tp.device, dtype=tp.dtype) for tp, sp in pairs]
    # one fused (foreach) kernel per call instead of a Python loop over parameters
    if d == 0.0:
        torch._foreach_copy_(tps, sps)
    else:
        torch._foreach_lerp_(tps, sps, 1.0 - d)  # tp + (1-d)(sp - tp) = d·tp + (1-d)·sp


def ema_update(
    teacher_params: Iterable[Tensor],
    student_params: Iterable[Tensor],
    t: int,
    decay: float = _DEFAULTS.ema_decay,
) -> None:
    """In place: teacher ← d·teacher + (1−d)·student for paired tensors (parameters only)."""
    tps, sps = list(teacher_params), list(student_params)
    if len(tps) != len(sps):
        raise ValueError(f"ema_update: {len(tps)} teacher tensors but {len(sps)} student tensors")
    _update_pairs(list(zip(tps, sps)), ema_decay(t, decay))


def param_pairs(
    teacher: nn.Module, student: nn.Module, names: Iterable[str] | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """(teacher, student) parameter lists matched by name, sorted (``names`` None: all of the
    student's), for :func:`ema_update`.  Built once: ``load_state_dict`` copies into the same
    tensors, so the lists stay valid."""
    tp, sp = dict(teacher.named_parameters()), dict(student.named_parameters())
    keys = sorted(sp if names is None else names)
    missing = [k for k in keys if k not in tp or k not in sp]
    if missing:
        raise ValueError(f"param_pairs: parameters missing in teacher or student: {missing[:5]}")
    return [tp[k] for k in keys], [sp[k] for k in keys]


def ema_update_modules(
    teacher: nn.Module,
    student: nn.Module,
    t: int,
    decay: float = _DEFAULTS.ema_decay,
    names: set[str] | None = None,
) -> None:
    """EMA over parameters matched by name (all when ``names`` is None); buffers (BN stats)
    untouched."""
    ema_update(*param_pairs(teacher, student, names), t, decay)
