"""What every strategy's training step shares: the error that stops training, the one-transfer
log of a step's values with its NaN check, the backward pass and optimiser steps, the undoing of
the dataset's flips before the embedding bank, and the rank-0 broadcast that keeps per-rank state
equal under DDP."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, out of memory, ...); the message says what to do."""


def step_logs(
    tlogs: dict[str, Tensor | float], device: torch.device, iteration: int, strategy: str = ""
) -> dict[str, float]:
    """A step's logged values as floats, all leaving the device in ONE transfer (one sync).

    ``alpha`` and ``confident_fraction`` default to NaN; ``tlogs`` must hold ``loss``.  Raises
    :class:`TrainingError` when the loss is not finite (``strategy`` named in the message).
    """
    values = torch.stack(
        [torch.as_tensor(v, device=device).detach().float().reshape(()) for v in tlogs.values()]
    )
    logs: dict[str, float] = {"alpha": float("nan"), "confident_fraction": float("nan")}
    logs.update(zip(tlogs, values.tolist(), strict=True))
    if not math.isfinite(logs["loss"]):
        who = f" (strategy {strategy})" if strategy else ""
        raise TrainingError(
            f"the loss became {logs['loss']} at iteration {iteration}{who}; training stopped and "
            "the last good checkpoint is kept. Try fp32 precision, a lower learning rate, or "
            "check the images for NaN values"
        )
    return logs


def oom_message(where: str) -> str:
    """The one out-of-memory message (a lighter profile is the way out)."""
    return (
        f"out of memory {where}: use a lighter setting (the cpu-interactive profile, batch "
        "2+2, a smaller U-Net input size, or a narrower U-Net). Your labels are untouched."
    )


def failure_message(exc: BaseException, iteration: int, device=None) -> str:
    """What the user reads after "Training failed:" when training stops on an error: out of
    memory names the lighter settings; an error that explains itself (a file that cannot be
    written, a refused input, a NaN loss) is shown as it is; anything else with its type."""
    from .device import is_oom

    if is_oom(exc):
        where = f" on {device}" if device is not None else ""
        return oom_message(f"at iteration {iteration}{where}")
    if isinstance(exc, OSError | ValueError | TrainingError):
        text = str(exc)
        if isinstance(exc, OSError) and text.startswith("[Errno"):  # a bare OSError: in words
            from ..io.geometry import os_problem

            text = os_problem(exc) + (f" ('{exc.filename}')" if exc.filename else "")
        return f"stopped at iteration {iteration}: {text}"
    return f"stopped at iteration {iteration} by an unexpected error ({type(exc).__name__}): {exc}"


def from_rank0(x: Tensor, device: torch.device) -> Tensor:
    """``x`` as rank 0 holds it, on every rank of a torch.distributed run (sent through
    ``device``: NCCL needs CUDA tensors); ``x`` itself when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return x
    kind = x.dtype
    buf = (x.to(torch.uint8) if kind == torch.bool else x).to(device).contiguous()
    dist.broadcast(buf, src=0)
    return buf.to(x.device).to(kind)


def backward_and_step(loss: Tensor, scaler, *optimizers: torch.optim.Optimizer) -> None:
    """``loss.backward()`` and a step of each optimiser, in order, through the grad scaler
    when there is one (fp16); the caller zeroes the gradients first."""
    if scaler is not None:
        scaler.scale(loss).backward()
        for opt in optimizers:
            scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        for opt in optimizers:
            opt.step()


def unflip(x: Tensor, flips) -> Tensor:
    """A copy of the B×C×H×W batch ``x`` with the dataset's per-image horizontal flips undone,
    so the embedding bank sees the canonical image (it mirrors embeddings itself)."""
    out = x.clone()
    for i, f in enumerate(flips):
        if bool(f):
            out[i] = torch.flip(out[i], dims=[-1])
    return out
