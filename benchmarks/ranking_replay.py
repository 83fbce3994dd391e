"""Which slices should the loop fix first, now that proposals fill between labelled slices
(issue 21 §3), replayed offline on saved first runs.

``benchmarks.effort --save-state DIR`` keeps what the dock saw at the end of each loop's first
run (``DIR/quality/*.npz``: the models' label maps, the labels, the slices trained on).  From
the slices the first run was trained on, each rule picks ``--picks`` slices one at a time (the
labelled set grows after each pick, as in the dock), and the replay estimates what that costs a
person, with the robot's rules (``benchmarks.effort_rules``):

- a visit: accept the ensemble and brush it (1 + strokes), or brush from scratch, whichever is
  cheaper (as ``Robot.visit``);
- the rest: a fixed slice is taken to equal the reference, so every slice between two picked or
  trained slices holding a class gets the fill between them
  (:func:`napari_synfoc.core.slice_interpolation.fill_between` of the reference's masks), the
  others the ensemble's labels; the strokes to finish each slice are counted
  (``correction_plan``).

Rules: ``diverse`` (the dock's before: disagreement × appearance novelty), ``diverse+z`` (the
same × the distance in z to the nearest labelled slice, ``core.review.z_spread_weights``),
``z`` (the distance in z alone), ``random`` (mean of ``--draws`` draws).  The disagreement is the
fraction of pixels where the two models' labels differ (the states keep no heat map).  It leaves
out what happens after the first run (accept above q, the second run): it compares rules, not
absolute counts.

Usage::

    python -m benchmarks.ranking_replay \\
        --states docs/results/effort_cpu/fill_between/state/quality \\
        --out docs/results/effort_cpu/ranking_replay
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import effort_rules as R
from benchmarks.common import markdown_table, study_states, write_study
from napari_synfoc.core.review import acquisition_scores, z_spread_weights
from napari_synfoc.core.slice_interpolation import fill_between

RULES = ("diverse", "diverse+z", "z", "random")


def fill_from_reference(ref: np.ndarray, anchors: set[int], classes: list[int]) -> dict:
    """``{z: labels}`` on the slices between anchors, filled from the reference's masks."""
    n = ref.shape[0]
    todo = [z for z in range(n) if z not in anchors]
    out: dict[int, np.ndarray] = {}
    for c in classes:
        for z, m in fill_between({a: ref[a] == c for a in anchors}, todo).items():
            lab = out.setdefault(z, np.zeros(ref.shape[1:], ref.dtype))
            lab[m & (lab == 0)] = c
    return out


def visit_cost(ens: np.ndarray, ref: np.ndarray, classes: list[int]) -> int:
    """As ``Robot.visit`` on an unlabelled slice (``effort_rules.visit_action``): accept + fix,
    mark empty (1) or paint from scratch."""
    n_fix = R.strokes(ens, ref, classes)
    n_paint = R.strokes(np.zeros_like(ref), ref, classes)
    return {"accept": 1 + n_fix, "empty": 1, "paint": n_paint}[R.visit_action(n_fix, n_paint)]


def rest_cost(ens: np.ndarray, ref: np.ndarray, anchors: set[int], classes: list[int]) -> int:
    """Strokes to finish every slice that is not an anchor: the fill, else the ensemble."""
    fill = fill_from_reference(ref, anchors, classes)
    return sum(
        R.strokes(fill.get(z, ens[z]), ref[z], classes)
        for z in range(ref.shape[0])
        if z not in anchors
    )


def pick(rule: str, scores: np.ndarray, feats, labeled: set[int], rng) -> int:
    n = scores.size
    if rule == "random":
        return int(rng.choice([z for z in range(n) if z not in labeled]))
    if rule == "z":
        s = z_spread_weights(sorted(labeled), n)
    else:
        s = acquisition_scores(scores, labeled, feats, "diverse", z_spread=rule == "diverse+z")
    s = np.asarray(s, float).copy()
    s[sorted(labeled)] = -1.0
    return int(np.argmax(s))


def replay(state: dict, ref: np.ndarray, feats, rule: str, picks: int, seed: int) -> dict:
    """One rule on one state: the picks, the visits' and the rest's strokes."""
    ens = state["ensemble"]
    classes = list(range(1, int(max(ref.max(), 1)) + 1))
    n = ref.shape[0]
    scores = (state["fm"] != state["unet"]).reshape(n, -1).mean(axis=1)
    labeled = {int(z) for z in state["trained"]}
    rng = np.random.default_rng(seed)
    chosen, visits = [], 0
    for _ in range(picks):
        z = pick(rule, scores, feats, labeled, rng)
        visits += visit_cost(ens[z], ref[z], classes)
        chosen.append(z)
        labeled.add(z)
    rest = rest_cost(ens, ref, labeled, classes)
    return {"picks": sorted(chosen), "visits": visits, "rest": rest, "total": visits + rest}


def study(paths: list[Path], ref, image, picks: int, draws: int) -> list[dict[str, Any]]:
    from napari_synfoc.core.review import stack_features

    feats = stack_features(image)
    rows = []
    for path in paths:
        s = dict(np.load(path))
        row: dict[str, Any] = {"state": path.name, "trained": [int(z) for z in s["trained"]]}
        for rule in RULES:
            runs = [
                replay(s, ref, feats, rule, picks, d)
                for d in range(draws if rule == "random" else 1)
            ]
            row[rule] = {
                "visits": float(np.mean([r["visits"] for r in runs])),
                "rest": float(np.mean([r["rest"] for r in runs])),
                "total": float(np.mean([r["total"] for r in runs])),
                "picks": runs[0]["picks"],
            }
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The table: per state, each rule's total (visits + the rest); the mean of the states."""
    cells = [
        [r["state"]]
        + [f"{r[k]['total']:.1f} ({r[k]['visits']:.0f} + {r[k]['rest']:.0f})" for k in RULES]
        for r in rows
    ]
    if rows:
        cells.append(
            [f"mean of {len(rows)}"]
            + [f"**{np.mean([r[k]['total'] for r in rows]):.1f}**" for k in RULES]
        )
    title = "# Ranking rules replayed on first runs: estimated interactions (visits + the rest)"
    table = markdown_table(["state", *RULES], cells)
    return f"{title}\n\nCommand: `{command}`\n\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--states", type=Path, required=True, nargs="+", help="folders of *.npz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--volume", default="CT")
    p.add_argument("--pattern", default="{volume}-loop-s[0-9]*.npz", help="which states to replay")
    p.add_argument("--picks", type=int, default=20, help="slices each rule picks (two rounds)")
    p.add_argument("--draws", type=int, default=5, help="random draws averaged")
    args = p.parse_args(argv)
    from benchmarks.effort import named_volume

    vol = named_volume(args.volume)
    pattern = args.pattern.format(volume=args.volume)
    paths = study_states(args.states, pattern)
    if not paths:
        print(f"no {pattern} in {args.states}", file=sys.stderr)
        return 1
    rows = study(paths, vol.ref, vol.image, args.picks, args.draws)
    command = "python -m benchmarks.ranking_replay " + " ".join(argv or sys.argv[1:])
    write_study(args.out, "ranking_replay", command, rows, markdown(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
