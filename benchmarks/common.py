"""Helpers shared by the benchmarks: the shared data paths, the CLI skeleton, one warm-started
dock training round, Markdown tables and the report files."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FAZ_ROOT = SHARED_DATA / "faz_octa_5sites" / "data" / "FAZ"
DRISHTI_ROOT = SHARED_DATA / "drishti_gs" / "Drishti-GS"


def bench_parser(prog: str, description: str, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the two flags every report benchmark has: ``--out``
    (required output folder) and ``--quick`` (described by ``quick_help``)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--out", required=True, help="output folder for JSON, markdown and plot")
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def stack_config(profile: str, iterations: int, device: str, **overrides: Any):
    """The config of a training round on a grey, binary-mask stack (the FAZ S40 stack):
    ``profile`` with ``iterations`` on ``device``, 2 classes, 1 input channel, ``overrides``."""
    from ..config import make_config

    return make_config(
        profile,
        iterations=iterations,
        device=device,
        num_classes=2,
        in_channels=1,
        **overrides,
    )


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


def write_report(out: Path, stem: str, markdown: str, plot: Callable[[Path], None]) -> None:
    """Write ``OUT/STEM.md`` with ``markdown``, draw ``OUT/STEM.png`` with ``plot(path)``, then
    print ``markdown``."""
    (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    plot(out / f"{stem}.png")
    print(markdown)
