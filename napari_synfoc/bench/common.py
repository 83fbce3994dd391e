"""Helpers shared by the benchmarks: one warm-started dock training round, Markdown tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def train_round(
    img, gt, labeled, cfg, ckpt, out_dir: Path, cache_dir: Path, what: str = "HITL round"
):
    """Train ``cfg.iterations`` on ``img`` with ``gt`` on the ``labeled`` slices through the
    dock's path, warm-started from ``ckpt``; returns (checkpoint, last Predictions).

    A failed run raises RuntimeError starting with ``what``.
    """
    from ..core.events import Done, Failed, Predictions
    from ..core.interactive import StackTask, train_on_stack

    labels = np.zeros_like(gt)
    labels[labeled] = gt[labeled]
    last = final = None
    for ev in train_on_stack(
        StackTask(img, labels, list(labeled)),
        cfg,
        init_checkpoint=ckpt,
        out_dir=out_dir,
        predict_every=cfg.iterations,
        embed_cache_dir=cache_dir,
    ):
        if isinstance(ev, Predictions):
            last = ev
        elif isinstance(ev, Done | Failed):
            final = ev
    if isinstance(final, Failed):
        raise RuntimeError(f"{what} failed: {final.message}")
    return final.checkpoint, last


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: the ``header`` cells, a separator, then one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
