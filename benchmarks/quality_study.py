"""Which per-slice quality estimate predicts the true Dice best (issue 21 §3), offline.

``benchmarks.effort --save-state DIR`` keeps what the dock's estimate sees at the end of each
loop's first run (``DIR/quality/*.npz``: the models' per-class agreement, label maps, the
labels and which slices were labelled and trained on).  This scores estimators on those states
against the reference: the mean absolute error over the unlabelled predicted slices (the
effort benchmark's ``mae_unlabelled``; the goal is 0.08).  Variants:

- ``dock``: :func:`napari_synfoc.core.quality.estimate_from_agreement` on the saved agreement,
  as the dock did it before this study (classes present by either model, ``"either"``);
- ``zmedian``: each class's agreement replaced by its median over the slice and its two
  neighbours (a volume's neighbouring slices are alike; one slice's agreement is noisy);
- ``per_class``: each class calibrated on its own (aorta and bone agree differently), the slice
  the lowest of its classes;
- ``zmedian+per_class``: both;
- ``prior2`` / ``prior8``: the dock's, with 2 or 8 prior pseudo-points instead of 4;
- ``ens_present``: a class counts on a slice only where the ensemble's label map holds it (a
  speck one model alone predicts there is not in what would be accepted, yet the dock's score
  takes its near-zero agreement as the slice's);
- ``ens_present+per_class``: both;
- ``ens_present+continuity``: the dock's with :data:`napari_synfoc.core.quality.CONTINUITY` on
  (a slice missing a class its labelled neighbours both hold, or holding one beyond its
  labelled extent, is predicted at 0).

Usage::

    python -m benchmarks.quality_study --states docs/results/effort_cpu/seeds/state/quality \\
        --out docs/results/effort_cpu/quality_study
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import study_states, write_study
from napari_synfoc.core import quality as Q


def zmedian(agreement: np.ndarray) -> np.ndarray:
    """Each class's agreement as the median over slices z-1, z, z+1 where it is defined; NaN
    stays NaN (the class is absent there)."""
    a = np.asarray(agreement, dtype=np.float64)
    out = a.copy()
    z = a.shape[0]
    for i in range(z):
        win = a[max(0, i - 1) : i + 2]
        for c in range(a.shape[1]):
            if np.isnan(a[i, c]):
                continue
            vals = win[:, c][~np.isnan(win[:, c])]
            out[i, c] = float(np.median(vals))
    return out


def class_dice(pred: np.ndarray, ref: np.ndarray, c: int) -> np.ndarray:
    """Per-slice Dice of class ``c`` ((Z,)); NaN where neither holds it."""
    p = (np.asarray(pred) == c).reshape(len(pred), -1)
    r = (np.asarray(ref) == c).reshape(len(ref), -1)
    n = p.sum(1) + r.sum(1)
    return np.where(n > 0, 2.0 * (p & r).sum(1) / np.maximum(n, 1), np.nan)


def per_class_estimate(agree, ens, labels, labeled, trained, prior_weight=Q.PRIOR_WEIGHT):
    """Each class calibrated on its own labelled slices; a slice: the lowest of its classes
    present in the agreement (1.0 where none is)."""
    z, k1 = agree.shape
    preds = np.full((z, k1), np.nan)
    done = {int(t) for t in trained}
    for c in range(1, k1 + 1):
        a = agree[:, c - 1]
        true = class_dice(ens, labels, c)
        pts = [i for i in labeled if not np.isnan(a[i]) and not np.isnan(true[i])]
        cal = Q.Calibration(prior_weight=prior_weight)
        if pts:
            cal = Q.fit_calibration(
                a[pts], true[pts], np.array([i in done for i in pts]), prior_weight=prior_weight
            )
        ok = ~np.isnan(a)
        preds[ok, c - 1] = cal.predict(a[ok])
    out = np.ones(z)
    some = ~np.all(np.isnan(preds), axis=1)
    out[some] = np.nanmin(preds[some], axis=1)
    return out


def estimators(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every variant's predicted Dice per slice for one saved state."""
    agree, ens, lab = s["agreement"], s["ensemble"], s["labels"]
    labeled, trained = [int(i) for i in s["labeled"]], [int(i) for i in s["trained"]]
    zm = zmedian(agree)
    ep = Q.ensemble_classes_only(agree, ens)

    def dock(a, **kw):  # the saved agreement: the first version's presence rule ("either")
        kw.setdefault("continuity", False)
        return Q.estimate_from_agreement(a, ens, lab, labeled, trained, **kw).predicted

    return {
        "dock": dock(agree),
        "zmedian": dock(zm),
        "per_class": per_class_estimate(agree, ens, lab, labeled, trained),
        "zmedian+per_class": per_class_estimate(zm, ens, lab, labeled, trained),
        "prior2": dock(agree, prior_weight=2.0),
        "prior8": dock(agree, prior_weight=8.0),
        "ens_present": dock(ep),  # PRESENT_BY = "ensemble", without the continuity rule
        "ens_present+per_class": per_class_estimate(ep, ens, lab, labeled, trained),
        "ens_present+continuity": dock(ep, continuity=True),  # the dock's now (a volume)
    }


def score_state(path: Path, ref: np.ndarray, label: str | None = None) -> dict[str, Any]:
    """MAE of each variant over the state's unlabelled predicted slices (``label``: the row's
    name, default the file's)."""
    s = dict(np.load(path))
    k = int(s["agreement"].shape[1]) + 1
    true = Q.slice_dice_true(s["ensemble"], ref, k)
    cov = [int(z) for z in s["covered"]] if s["covered"].size else list(range(len(ref)))
    done = {int(z) for z in s["labeled"]}
    unl = [z for z in cov if z not in done]
    return {
        "state": label or path.name, "n_unlabelled": len(unl),
        "true_mean": round(float(true[unl].mean()), 4),
        "mae": {name: round(float(np.abs(p[unl] - true[unl]).mean()), 4)
                for name, p in estimators(s).items()},
    }  # fmt: skip


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    names = list(rows[0]["mae"]) if rows else []
    out = [
        "# Quality estimate variants: mean absolute error against the true Dice (goal ≤ 0.08)",
        "",
        f"Command: `{command}`",
        "",
        "| state | unlabelled slices | true mean | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        vals = " | ".join(f"{r['mae'][n]:.3f}" for n in names)
        out.append(f"| {r['state']} | {r['n_unlabelled']} | {r['true_mean']:.3f} | {vals} |")
    if rows:
        means = " | ".join(f"**{np.mean([r['mae'][n] for r in rows]):.3f}**" for n in names)
        out.append(f"| mean of {len(rows)} | | | {means} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--states", type=Path, required=True, nargs="+", help="folders of VOLUME-*.npz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--volume", default="CT")
    args = p.parse_args(argv)
    from benchmarks.effort import named_volume

    ref = named_volume(args.volume).ref
    states = study_states(args.states, f"{args.volume}-*.npz")
    if not states:
        print(f"no {args.volume}-*.npz in {args.states}", file=sys.stderr)
        return 1
    # rows named by the results folder above state/quality/ (several folders hold CT-loop-s0)
    rows = [score_state(s, ref, f"{s.parents[2].name}/{s.name}") for s in states]
    command = "python -m benchmarks.quality_study " + " ".join(argv or sys.argv[1:])
    write_study(args.out, "quality_study", command, rows, markdown(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
