"""Training strategies: SynFoC (default) and the other foundation-plus-U-Net methods.

``cfg.strategy`` picks one: ``synfoc`` (:mod:`.synfoc`), ``semisam+`` (:mod:`.semisam_plus`),
``ifl`` (:mod:`.ifl`), ``uncol`` (:mod:`.uncol`).  Each is a small :class:`~.base.Strategy` with
the same step hook; the trainer keeps the loop, events, cancel flag, checkpoints, warm start,
backward pass, optimiser steps, EMA and DDP.  Every strategy yields two predictions: the
foundation model's (trained, or frozen and prompted with the U-Net's boxes) and the U-Net's, so
consensus/divergence and the ranking keep their meaning.
"""

from __future__ import annotations

from ...config import choices
from .base import Strategy, TrainerView

STRATEGIES = choices("strategy")  # the config table is the one list

# one line per strategy for users (dock tooltip, README table)
DESCRIPTIONS = {
    "synfoc": "SynFoC (CVPR 2025): U-Net and foundation model train each other (SMC + CDCR)",
    "semisam+": "SemiSAM+ (MedIA 2025): U-Net + frozen generalist prompted by the U-Net (MSE)",
    "ifl": "IFL (MICCAI 2025): U-Net rounds on pseudo-labels of the prompted frozen foundation",
    "uncol": "UnCoL (TMI 2026): U-Net taught by a prompted frozen foundation and its EMA teacher",
}


def make_strategy(name: str) -> Strategy:
    """The strategy called ``name`` (one of :data:`STRATEGIES`)."""
    if name == "synfoc":
        from .synfoc import SynFoCStrategy

        return SynFoCStrategy()
    if name == "semisam+":
        from .semisam_plus import SemiSAMPlus

        return SemiSAMPlus()
    if name == "ifl":
        from .ifl import IFL

        return IFL()
    if name == "uncol":
        from .uncol import UnCoL

        return UnCoL()
    raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def strategy_for(cfg) -> Strategy:
    """The checked strategy of a config (``ValueError`` with a readable message if it cannot
    run with these settings)."""
    strategy = make_strategy(getattr(cfg, "strategy", "synfoc"))
    strategy.check(cfg)
    return strategy


__all__ = [
    "DESCRIPTIONS", "STRATEGIES", "Strategy", "TrainerView", "make_strategy", "strategy_for",
]  # fmt: skip
