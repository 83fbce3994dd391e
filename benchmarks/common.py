"""Helpers shared by the benchmarks: where the shared data lies (``--data``), the CLI skeleton,
one warm-started dock training round, Markdown tables and the report files.

The benchmarks are not part of the installed package: run them from the repository root,
``python -m benchmarks.<name> --help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# ``--data`` default: the shared data folder next to the repository (``../shared/data``).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FAZ_SUBDIR = Path("faz_octa_5sites") / "data" / "FAZ"
DRISHTI_SUBDIR = Path("drishti_gs") / "Drishti-GS"
FAZ_ROOT = SHARED_DATA / FAZ_SUBDIR
DRISHTI_ROOT = SHARED_DATA / DRISHTI_SUBDIR


def faz_root(data: str | Path | None = None) -> Path:
    """The FAZ data set under the data folder ``data`` (default :data:`SHARED_DATA`).

    ``data`` may also be the FAZ folder itself (the one holding ``Domain1`` ... ``Domain5``).
    """
    base = Path(data) if data is not None else SHARED_DATA
    if (base / "Domain1").is_dir():
        return base
    return base / FAZ_SUBDIR


def drishti_root(data: str | Path | None = None) -> Path:
    """The Drishti-GS folder under the data folder ``data`` (default :data:`SHARED_DATA`)."""
    base = Path(data) if data is not None else SHARED_DATA
    if (base / "split_official.tsv").is_file():
        return base
    return base / DRISHTI_SUBDIR


def add_data_arg(p: argparse.ArgumentParser) -> None:
    """``--data DIR``: the shared data folder (or a data set folder inside it)."""
    p.add_argument(
        "--data",
        default=str(SHARED_DATA),
        help="the shared data folder holding faz_octa_5sites/ and drishti_gs/, or the FAZ "
        "folder itself (default: ../shared/data next to the repository)",
    )


def bench_parser(prog: str, description: str, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the flags every report benchmark has: ``--out``
    (required output folder), ``--quick`` (described by ``quick_help``) and ``--data``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--out", required=True, help="output folder for JSON, markdown and plot")
    p.add_argument("--quick", action="store_true", help=quick_help)
    add_data_arg(p)
    return p


def stack_config(profile: str, iterations: int, device: str, **overrides: Any):
    """The config of a training round on a grey, binary-mask stack (the FAZ S40 stack):
    ``profile`` with ``iterations`` on ``device``, 2 classes, 1 input channel, ``overrides``."""
    from napari_synfoc.config import make_config

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
    from napari_synfoc.core.events import Done, Failed, Predictions
    from napari_synfoc.core.interactive import StackTask, train_on_stack

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


def reference_r(skip: bool = False) -> float | None:
    """r for a benchmark's report: one torch fp32 LiteMedSAM encoder forward on the CPU (the
    median of 3, in seconds, rounded to ms); None when ``skip`` (``--no-reference``)."""
    if skip:
        return None
    from napari_synfoc.machine_check import reference_encoder_seconds

    return round(reference_encoder_seconds("cpu", 3), 3)


def study_states(folders: Iterable[Path], pattern: str) -> list[Path]:
    """The saved states (``*.npz``) matching ``pattern`` in each folder, sorted per folder."""
    return [s for d in folders for s in sorted(Path(d).glob(pattern))]


def write_study(out: Path, stem: str, command: str, rows: list, markdown: str) -> None:
    """``OUT/STEM.json`` (the command and the rows, atomically) and ``OUT/STEM.md``; prints the
    Markdown."""
    from napari_synfoc.io.results import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{stem}.json", {"command": command, "rows": rows})
    (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    print(markdown)


def write_report(out: Path, stem: str, markdown: str, plot: Callable[[Path], None]) -> None:
    """Write ``OUT/STEM.md`` with ``markdown``, draw ``OUT/STEM.png`` with ``plot(path)``, then
    print ``markdown``."""
    (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    plot(out / f"{stem}.png")
    print(markdown)
