"""One plot and table of the interactive benchmark's S40 curves, one line per strategy.

``python -m benchmarks.strategy_curves --out DIR name=interactive.json ...`` reads the
``interactive.json`` of runs made with
``python -m benchmarks.time_to_useful --quick --strategy NAME`` and writes
``strategy_curves.png`` and ``strategy_curves.md`` (ensemble, foundation and U-Net Dice on the
unlabelled slices at 60/120/180 s, the best value and when it came).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import write_report
from .time_to_useful import value_at

CHECKPOINTS_S = (60.0, 120.0, 180.0)


def load_runs(specs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``name=path`` pairs -> the S40 refresh records of each run (scored ones only)."""
    runs = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"expected name=path/to/interactive.json, got {spec!r}")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        recs = [r for r in data["stacks"]["S40"]["refreshes"] if "dice_ensemble" in r]
        runs[name] = recs
    return runs


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: per strategy, ensemble Dice at the checkpoints and the best of the run."""
    head = "| strategy | " + " | ".join(f"ens. Dice @{t:g} s" for t in CHECKPOINTS_S)
    lines = [head + " | best ens. Dice (s) | foundation / U-Net @180 s |"]
    lines.append("|---" * (len(CHECKPOINTS_S) + 3) + "|")
    for name, recs in runs.items():
        vals = [value_at(recs, "dice_ensemble", t) for t in CHECKPOINTS_S]
        best = max(recs, key=lambda r: r["dice_ensemble"]) if recs else None
        fm, un = value_at(recs, "dice_fm", 180.0), value_at(recs, "dice_unet", 180.0)
        cells = ["–" if v is None else f"{v:.3f}" for v in vals]
        best_s = "–" if best is None else f"{best['dice_ensemble']:.3f} ({best['seconds']:.0f})"
        fu = "–" if fm is None or un is None else f"{fm:.3f} / {un:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {best_s} | {fu} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Ensemble Dice against seconds, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, recs in runs.items():
        ax.plot([r["seconds"] for r in recs], [r["dice_ensemble"] for r in recs], "-o", ms=3,
                label=name)  # fmt: skip
    ax.set(xlabel="seconds since Train", ylabel="ensemble Dice, unlabelled S40 slices")
    ax.set_ylim(0, 1)
    ax.axhline(0.80, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("runs", nargs="+", help="name=path/to/interactive.json")
    args = p.parse_args(argv)
    runs = load_runs(args.runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, "strategy_curves", table(runs), lambda path: plot(runs, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
