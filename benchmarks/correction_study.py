"""How a person corrects what the loop leaves (issue 21): the final sweep replayed on saved states.

``benchmarks.effort --save-state DIR`` keeps the labels as each run's final sweep finds them.
This replays that sweep on each state twice, through the same robot and controller: brush
strokes only (the effort benchmark's default), and with ``redo_boxes`` (a class whose errors need
more strokes than boxing it again is boxed first, and the box is undone where it did not help).
No training runs: the difference is the sweep's alone.  Usage::

    python -m benchmarks.correction_study --states docs/results/effort_cpu/seeds/state \\
        --out docs/results/effort_cpu/correction_study
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import effort as E
from napari_synfoc.io.results import write_json_atomic


def trim_proposals(
    labels: np.ndarray, before: list[int], classes: list[int], fraction: float
) -> np.ndarray:
    """The labels as the proposals would have left them with ``PROPOSALS_MIN_3D_PART =
    fraction``: on the slices not labelled ``before`` the proposals, each class's 3-D parts
    under ``fraction`` of the largest that hold no voxel of those labelled slices are gone
    (:func:`~napari_synfoc.core.model_prompts.drop_small_parts_3d`, the dock's code)."""
    from napari_synfoc.core.model_prompts import drop_small_parts_3d

    out = np.array(labels, copy=True)
    done = set(before)
    user = out.copy()
    user[[z for z in range(len(out)) if z not in done]] = 0
    for c in classes:
        props = {z: out[z] == c for z in range(len(out)) if z not in done}
        props = {z: m for z, m in props.items() if m.any()}
        changed, _ = drop_small_parts_3d(props, user, c, fraction)
        for z, m in changed.items():
            out[z][(out[z] == c) & ~m] = 0
    return out


def replay(
    vol: E.Volume, state: Path, redo: bool, segmenter_factory=None, min_3d_part: float = 0.0
) -> dict[str, Any]:
    """The final sweep on ``state``'s labels: its interactions by kind and what still fails
    (``min_3d_part``: the proposals first trimmed as :func:`trim_proposals` does)."""
    saved = np.load(state)
    st = E.Settings(backend="sync", redo_boxes=redo)
    robot = E.Robot(vol, st, segmenter_factory)
    try:
        labels = saved["labels"]
        if min_3d_part > 0:
            if "labeled_before_proposals" not in saved:
                raise ValueError(f"{state.name} does not say which slices the proposals filled")
            before = [int(z) for z in saved["labeled_before_proposals"]]
            labels = trim_proposals(labels, before, robot.classes, min_3d_part)
        robot.labels[...] = labels
        robot.marked = {int(z) for z in saved["marked"]}
        with robot.clock.pause():
            failing = len(robot.failing())
        E.sweep(robot, range(len(vol.ref)))
        return {
            "state": state.name, "redo_boxes": redo, "min_3d_part": min_3d_part,
            "failing_before": failing,
            "interactions": robot.ledger.total,
            "counts": {k: n for k, n in robot.ledger.counts.items() if n},
            "failing_after": len(robot.failing()),
            "brush_by_class": robot.notes.get("brush_by_class", {}),
        }  # fmt: skip
    finally:
        robot.ctl.cleanup()


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    out = [
        "# The final sweep replayed: brush only, or boxing a class again where that is cheaper",
        "",
        f"Command: `{command}`",
        "",
        "| state | failing slices | brush only | with boxes again | of which boxes | saved |",
        "|---|---|---|---|---|---|",
    ]
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(r["state"], {})[(r["redo_boxes"], r.get("min_3d_part", 0.0))] = r
    trims = []
    for name, runs in sorted(by.items()):
        a, b = runs.get((False, 0.0)), runs.get((True, 0.0))
        if a is None or b is None:
            continue
        saved = a["interactions"] - b["interactions"]
        out.append(
            f"| {name} | {a['failing_before']} | {a['interactions']} | {b['interactions']} | "
            f"{b['counts'].get('box', 0)} | {saved} ({saved / max(a['interactions'], 1):.0%}) |"
        )
        for (redo, frac), t in sorted(runs.items()):
            if frac > 0 and not redo:
                d = a["interactions"] - t["interactions"]
                trims.append(
                    f"| {name} | {frac:g} | {a['interactions']} | {t['interactions']} | "
                    f"{d} ({d / max(a['interactions'], 1):.0%}) |"
                )
    if trims:
        out += [
            "",
            "Proposals without their small 3-D parts (`PROPOSALS_MIN_3D_PART`), brush only:",
            "",
            "| state | fraction of the largest part | sweep as run | trimmed | saved |",
            "|---|---|---|---|---|",
            *trims,
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--states", type=Path, required=True, help="folder of VOLUME-POLICY-sS.npz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--volume", default="CT")
    p.add_argument(
        "--min-3d-part", type=float, nargs="*", default=[0.005],
        help="also replay with the proposals trimmed at these fractions (brush only)",
    )  # fmt: skip
    args = p.parse_args(argv)
    from napari_synfoc.core.intensity import CT_WINDOWS, suggested_window

    vol = E.named_volume(args.volume)
    ct = suggested_window(vol.image)
    vol.window = CT_WINDOWS[ct] if ct else None  # the dock's choice, as effort.main
    states = sorted(args.states.glob(f"{args.volume}-*.npz"))
    if not states:
        print(f"no {args.volume}-*.npz in {args.states}", file=sys.stderr)
        return 1
    rows = []
    for state in states:
        for redo in (False, True):
            rows.append(replay(vol, state, redo))
            print(json.dumps(rows[-1]), flush=True)
        for frac in args.min_3d_part:
            if "labeled_before_proposals" in np.load(state):
                rows.append(replay(vol, state, False, min_3d_part=frac))
                print(json.dumps(rows[-1]), flush=True)
    command = "python -m benchmarks.correction_study " + " ".join(argv or sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "correction_study.json", {"command": command, "rows": rows})
    (args.out / "correction_study.md").write_text(markdown(rows, command), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
