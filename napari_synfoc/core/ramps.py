"""Consistency ramp-up λ(t) (spec §2.6) and the optional learning-rate schedule (spec §6.2, §9)."""

from __future__ import annotations

import math

from napari_synfoc.config import SynFoCConfig, choices

_DEFAULTS = SynFoCConfig()
LR_SCHEDULES = choices("lr_schedule")


def consistency_weight(
    t: int,
    max_iter: int,
    lam_max: float = _DEFAULTS.consistency,
    steps: int = _DEFAULTS.ramp_steps,
) -> float:
    """λ(t) = lam_max·exp(−5(1 − s/steps)²), s = ⌊t / (max_iter/steps)⌋ capped at ``steps``.

    The ramp spans the whole run in ``steps`` quantised steps (t is 0-based).  s is computed in
    exact integer arithmetic as ⌊t·steps/max_iter⌋, which equals upstream's float expression
    whenever max_iter/steps is exactly representable (all real run lengths) and also works for
    max_iter < steps.  ``steps == 0`` gives lam_max, as upstream's ``sigmoid_rampup``.
    """
    if max_iter < 1:
        raise ValueError(f"consistency_weight: max_iter must be at least 1, got {max_iter}")
    if steps == 0:
        return float(lam_max)
    s = min(max(int(t), 0) * steps // max_iter, steps)
    phase = 1.0 - s / steps
    return float(lam_max * math.exp(-5.0 * phase * phase))


def lr_factor(
    t: int,
    max_iter: int,
    schedule: str = _DEFAULTS.lr_schedule,
    warmup: int = _DEFAULTS.warmup_iterations,
    power: float = 0.9,
) -> float:
    """Multiplier of the base learning rate at 0-based iteration ``t``.

    ``"none"`` (upstream): 1.0 always.  ``"poly"`` (the spec's fix): linear warm-up
    ``(t+1)/warmup`` for t < warmup, then ``(1 − t/max_iter)^power`` (≥ 0).
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_factor: schedule must be one of {LR_SCHEDULES}, not {schedule!r}")
    if schedule == "none":
        return 1.0
    if max_iter < 1:
        raise ValueError(f"lr_factor: max_iter must be at least 1, got {max_iter}")
    if warmup > 0 and t < warmup:
        return (max(t, 0) + 1) / warmup
    return max(0.0, 1.0 - t / max_iter) ** power
