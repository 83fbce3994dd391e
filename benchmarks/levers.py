"""Quality levers of the interactive profile, measured on S40 by iteration (issue 12, item 3).

``python -m benchmarks.levers --out DIR [--levers a,b] [--stop 40]`` trains the S40
stack (the first 8 train images of each FAZ site, in site order; slices 0, 8, 16 labelled)
through :func:`napari_synfoc.core.interactive.train_on_stack` with the dock's profile, once per
lever (a named set of config overrides), and records at every prediction refresh: iteration,
seconds since Train, Dice on the UNLABELLED slices (foundation, U-Net, ensemble = mean
probability > 0.5), the divergence map M_d's precision/recall for the ensemble's error pixels
(for each rule of :data:`napari_synfoc.core.review.DIVERGENCE_RULES`) and the AUROC of the
continuous disagreement map for those errors.  Iteration-based numbers are the comparison (wall
times are noisy on a shared CPU; both are written).  Writes ``levers.json`` and ``levers.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_synfoc.core.metrics import dice

from .common import add_data_arg, faz_root

S40_LABELED = (0, 8, 16)
DOCK_PROFILE = "cpu-interactive"
DOCK_ITERATIONS = 300  # the dock's default run length (the schedule's ramps depend on it)

# name -> config overrides on top of the dock's profile
LEVERS: dict[str, dict[str, Any]] = {
    # the paper's heads: what the profile did before this lever (issue 12's table)
    "paper_heads": {"fm_head_init": "random", "fm_lr": 1.2e-4},
    "pretrained_heads": {"fm_head_init": "pretrained", "fm_lr": 1.2e-4},
    "fm_lr_1e-3": {"fm_head_init": "random", "fm_lr": 1e-3},
    "pretrained+lr": {"fm_head_init": "pretrained", "fm_lr": 1e-3},
    "pretrained+ramp100": {"fm_head_init": "pretrained", "ramp_length": 100},
    "pretrained+headlr1e-3": {"fm_head_init": "pretrained", "fm_head_lr": 1e-3},
    # supervised steps on the labelled slices before iteration 0 (teachers copied after)
    "warmup10": {"warmup_steps": 10},
    "warmup20": {"warmup_steps": 20},
    "warmup40": {"warmup_steps": 40},
    "warmup20+unet40": {"warmup_steps": 20, "warmup_unet_steps": 40},
    "teachers": {"display_teachers": True},  # overlays from the EMA teachers
    "profile": {},  # the interactive profile as committed
}


def s40_stack(data: Path | None = None, per_domain: int = 8):
    """(image (Z, Y, X) float32, ground truth (Z, Y, X) uint8, names) of S40."""
    from .accuracy import hitl_stack

    img, gt, names, _ = hitl_stack(faz_root(data), per_domain)
    return img, (gt > 0).astype(np.uint8), names


def refresh_metrics(
    fm_fg: np.ndarray, un_fg: np.ndarray, gt: np.ndarray, unlabeled: list[int]
) -> dict[str, Any]:
    """The §5 metrics of one refresh from the foreground probabilities (Z, Y, X) of both models."""
    from napari_synfoc.core.review import DIVERGENCE_RULES, auroc, divergence_map, review_maps

    f, u, g = fm_fg[unlabeled], un_fg[unlabeled], gt[unlabeled].astype(bool)
    ens = (f + u) / 2 > 0.5
    out: dict[str, Any] = {
        "dice_fm": float(np.mean([dice(a > 0.5, b) for a, b in zip(f, g, strict=True)])),
        "dice_unet": float(np.mean([dice(a > 0.5, b) for a, b in zip(u, g, strict=True)])),
        "dice_ensemble": float(np.mean([dice(a, b) for a, b in zip(ens, g, strict=True)])),
        "fm_empty_slices": int(sum(not (a > 0.5).any() for a in fm_fg)),
    }
    err = ens != g
    fm2 = np.stack([1 - f, f], 1)
    un2 = np.stack([1 - u, u], 1)
    maps = review_maps(fm2, un2)
    out["auroc_heat"] = auroc(maps.heat, err)
    out["error_fraction"] = float(err.mean())
    for rule in DIVERGENCE_RULES:
        md = divergence_map(fm2, un2, rule).astype(bool)
        tp = int((md & err).sum())
        out[f"md_{rule}_precision"] = tp / int(md.sum()) if md.any() else None
        out[f"md_{rule}_recall"] = tp / int(err.sum()) if err.any() else None
        out[f"md_{rule}_flagged"] = float(md.mean())
    return out


def run_lever(
    name: str,
    overrides: dict[str, Any],
    img: np.ndarray,
    gt: np.ndarray,
    *,
    stop: int,
    predict_every: int,
    device: str,
    save_probs: Path | None = None,
    log=print,
) -> dict[str, Any]:
    """Train S40 with ``overrides`` on the dock's profile until iteration ``stop``."""
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Done, Failed, Predictions, Step
    from napari_synfoc.core.interactive import StackTask, train_on_stack
    from napari_synfoc.io.results import default_cache_dir

    labels = np.zeros_like(gt)
    labels[list(S40_LABELED)] = gt[list(S40_LABELED)]
    unlabeled = [z for z in range(len(img)) if z not in S40_LABELED]
    cfg = make_config(
        DOCK_PROFILE, iterations=DOCK_ITERATIONS, device=device, first_predict_at=5, **overrides
    )
    task = StackTask(img, labels, list(S40_LABELED))
    done = {"it": 0}
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for ev in train_on_stack(
        task,
        cfg,
        should_stop=lambda: done["it"] >= stop,
        predict_every=predict_every,
        embed_cache_dir=default_cache_dir() / "embeddings",
    ):
        if isinstance(ev, Step):
            done["it"] = ev.iteration + 1
        elif isinstance(ev, Predictions):
            fm_fg, un_fg = ev.fm_prob[:, 1], ev.unet_prob[:, 1]
            row = {"iteration": ev.iteration, "seconds": time.perf_counter() - t0}
            row.update(refresh_metrics(fm_fg, un_fg, gt, unlabeled))
            rows.append(row)
            log(
                f"[levers] {name} it {ev.iteration} ({row['seconds']:.0f} s): Dice fm "
                f"{row['dice_fm']:.3f} unet {row['dice_unet']:.3f} ens {row['dice_ensemble']:.3f}"
                f" AUROC {row['auroc_heat']:.3f}"
            )
            if save_probs is not None:
                save_probs.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    save_probs / f"{name}_it{ev.iteration:04d}.npz",
                    fm=fm_fg.astype(np.float16),
                    unet=un_fg.astype(np.float16),
                )
        elif isinstance(ev, Failed):
            raise RuntimeError(f"lever {name}: {ev.message}")
        elif isinstance(ev, Done):
            break
    return {"name": name, "overrides": overrides, "config": cfg.to_dict(), "refreshes": rows}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def make_table(results: list[dict[str, Any]], at=(5, 10, 20, 40), rule: str = "") -> str:
    """Markdown: lever -> ensemble/fm/unet Dice at the given iterations, M_d and AUROC at the
    last one."""
    from napari_synfoc.core.review import DEFAULT_DIVERGENCE_RULE

    rule = rule or DEFAULT_DIVERGENCE_RULE
    head = " | ".join(f"it {i}: fm / U-Net / ens" for i in at)
    md = [
        f"| lever | {head} | M_d precision (argmax / {rule}) | AUROC | s at last |",
        "|---" * (len(at) + 4) + "|",
    ]
    for r in results:
        by_it = {row["iteration"]: row for row in r["refreshes"]}
        cells = []
        for i in at:
            row = by_it.get(i)
            cells.append(
                "–"
                if row is None
                else f"{row['dice_fm']:.2f} / {row['dice_unet']:.2f} / {row['dice_ensemble']:.2f}"
            )
        last = r["refreshes"][-1] if r["refreshes"] else {}
        md.append(
            f"| {r['name']} | "
            + " | ".join(cells)
            + f" | {_fmt(last.get('md_argmax_precision'))}"
            + f" / {_fmt(last.get(f'md_{rule}_precision'))}"
            + f" | {_fmt(last.get('auroc_heat'))} | {last.get('seconds', 0):.0f} |"
        )
    return "\n".join(md)


def rescore(runs: dict[str, Any], probs: Path, gt: np.ndarray) -> None:
    """Recompute every refresh's metrics from the saved probabilities (times kept)."""
    unlabeled = [z for z in range(len(gt)) if z not in S40_LABELED]
    for name, run in runs.items():
        for row in run["refreshes"]:
            path = probs / f"{name}_it{row['iteration']:04d}.npz"
            if not path.exists():
                raise FileNotFoundError(f"{path}: no saved probabilities for {name}")
            d = np.load(path)
            fm, un = d["fm"].astype(np.float32), d["unet"].astype(np.float32)
            keep = {k: row[k] for k in ("iteration", "seconds")}
            row.clear()
            row.update(keep)
            row.update(refresh_metrics(fm, un, gt, unlabeled))


def _markdown(runs: dict[str, Any]) -> str:
    from napari_synfoc.core.review import DEFAULT_DIVERGENCE_RULE, UNCERTAIN_MARGIN

    return "\n".join(
        [
            "# Interactive quality levers on S40 (Dice on the unlabelled slices)",
            "",
            f"Profile `{DOCK_PROFILE}` ({DOCK_ITERATIONS}-iteration schedule, stopped early); "
            "wall times are noisy (shared 2-core CPU, other jobs running; frozen-encoder "
            "embeddings from the disk cache after the first run). M_d rule "
            f"`{DEFAULT_DIVERGENCE_RULE}`: ensemble top-two margin < {UNCERTAIN_MARGIN}. AUROC: "
            "the continuous disagreement map |p_fm - p_unet| for the ensemble's error pixels.",
            "",
            make_table(list(runs.values())),
            "",
            "M_d at every refresh: precision / recall for the ensemble's error pixels, the "
            "paper's argmax rule against the displayed rule.",
            "",
            md_table(list(runs.values()), DEFAULT_DIVERGENCE_RULE),
            "",
        ]
    )


def md_table(results: list[dict[str, Any]], rule: str) -> str:
    """Markdown: per lever and refresh, M_d precision/recall under argmax and ``rule``."""
    from .common import markdown_table

    header = ["lever", "iteration", "error px", "argmax: P / R", f"{rule}: P / R", "AUROC"]
    rows = [
        [
            r["name"],
            row["iteration"],
            f"{100 * row['error_fraction']:.1f} %",
            f"{_fmt(row.get('md_argmax_precision'))} / {_fmt(row.get('md_argmax_recall'))}",
            f"{_fmt(row.get(f'md_{rule}_precision'))} / {_fmt(row.get(f'md_{rule}_recall'))}",
            _fmt(row.get("auroc_heat")),
        ]  # fmt: skip
        for r in results
        for row in r["refreshes"]
    ]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=__doc__)
    ap.add_argument("--out", required=True, help="folder for levers.json / levers.md")
    ap.add_argument("--levers", default=",".join(LEVERS), help="comma-separated lever names")
    ap.add_argument("--stop", type=int, default=40, help="stop after this many iterations")
    ap.add_argument("--predict-every", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    add_data_arg(ap)
    ap.add_argument("--save-probs", default=None, help="folder for per-refresh probabilities")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="recompute the metrics of levers.json from --save-probs (no training): after a "
        "change of the M_d rule",
    )
    args = ap.parse_args(argv)
    from napari_synfoc.core.device import pick_device
    from napari_synfoc.io.results import device_name, git_commit, write_json_atomic

    names = [n for n in args.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        ap.error(f"unknown lever(s) {unknown}; choose from {sorted(LEVERS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img, gt, stack_names = s40_stack(args.data)
    results_path = out / "levers.json"
    old = (
        json.loads(results_path.read_text(encoding="utf-8"))
        if results_path.exists()
        else {"runs": {}}
    )
    runs: dict[str, Any] = dict(old.get("runs", {}))
    if args.rescore:
        if not args.save_probs:
            ap.error("--rescore needs --save-probs (the folder the runs saved probabilities to)")
        rescore(runs, Path(args.save_probs), gt)
        old["runs"] = runs
        write_json_atomic(results_path, old)
        (out / "levers.md").write_text(_markdown(runs), encoding="utf-8")
        print((out / "levers.md").read_text(encoding="utf-8"))
        return 0
    for n in names:
        res = run_lever(
            n,
            LEVERS[n],
            img,
            gt,
            stop=args.stop,
            predict_every=args.predict_every,
            device=args.device,
            save_probs=Path(args.save_probs) if args.save_probs else None,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
        res["commit"] = git_commit()
        res["device"] = device_name(pick_device(args.device))
        runs[n] = res
        write_json_atomic(
            results_path,
            {
                "stack": stack_names,
                "labeled": list(S40_LABELED),
                "profile": DOCK_PROFILE,
                "dock_iterations": DOCK_ITERATIONS,
                "command": "python -m benchmarks.levers " + " ".join(argv or sys.argv[1:]),
                "runs": runs,
            },
        )
        (out / "levers.md").write_text(_markdown(runs), encoding="utf-8")
    print((out / "levers.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
