"""The models as prompters (issue 21): how many slices reach the target from the trained models'
own masks, and from LiteMedSAM boxed by them.

``python -m benchmarks.model_prompts --out DIR [--iterations 150] [--labelled 5] [--margins 2]``

1. Train cpu-interactive on the shared CT (``train_on_stack``, in this process) with the
   reference labels on ``--labelled`` evenly spaced slices (the effort robot's first slices).
2. From the final predictions, per source, the labelled slices keep their labels and every
   other slice takes the source's mask:
   - ``ensemble``, ``foundation``, ``unet``: the models' argmax;
   - ``sam (margin m)``: every part of the ensemble's class mask replaced by LiteMedSAM's mask for
     its box (extent + m px), whatever it draws (IoU threshold 0);
   - ``models + sam (IoU >= t)``: :func:`~napari_synfoc.core.model_prompts.model_prompted_mask`,
     the product's rule (the part stays where LiteMedSAM disagrees);
   - ``sam from the reference boxes``: LiteMedSAM with a box per reference part on every slice
     (what the best possible prompter would give; no model involved).
3. Per source: slices failing the effort stop rule (every class >= 0.90 Dice, no stray class),
   the brush regions the robot would paint to fix them (benchmarks.effort_rules), and per class
   the mean Dice and the slices reaching 0.90 (unlabelled slices only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import effort as E
from . import effort_rules as R
from .common import markdown_table


def train_predictions(vol: E.Volume, labelled: list[int], iterations: int):
    """Both models' (Z, K, Y, X) probabilities after ``iterations`` on ``labelled``."""
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Failed, Predictions
    from napari_synfoc.core.interactive import train_on_stack
    from napari_synfoc.core.task import StackTask

    labels = np.zeros_like(vol.ref)
    labels[labelled] = vol.ref[labelled]
    task = StackTask(vol.image, labels, labelled, intensity_window=vol.window)
    cfg = make_config("cpu-interactive", device="cpu", iterations=iterations)
    fm = un = None
    for ev in train_on_stack(task, cfg, embed_cache_dir=True):
        if isinstance(ev, Predictions) and ev.slices is None:
            fm, un = np.asarray(ev.fm_prob), np.asarray(ev.unet_prob)
        if isinstance(ev, Failed):
            raise RuntimeError(ev.message)
    return fm, un


def score(vol: E.Volume, pred: np.ndarray, labelled: list[int]) -> dict:
    """Stop-rule failures, brush regions to fix them, and per-class Dice on unlabelled slices."""
    out = np.array(pred, dtype=np.uint8)
    out[labelled] = vol.ref[labelled]
    classes = list(range(1, vol.num_classes))
    fail = R.failing_slices(out, vol.ref, vol.num_classes)
    brush = sum(len(R.correction_plan(out[z], vol.ref[z], classes)[1]) for z in fail)
    res = {"failing": len(fail), "brush_regions": brush, "classes": {}}
    for c in classes:
        zs = [z for z in range(len(out)) if (vol.ref[z] == c).any() and z not in labelled]
        d = np.array([R.class_dice(out[z], vol.ref[z], c) for z in zs])
        res["classes"][str(c)] = {
            "slices": len(zs), "mean_dice": round(float(d.mean()), 4) if zs else None,
            "at_target": int((d >= R.TARGET_DICE).sum()),
        }  # fmt: skip
    return res


def sam_sources(vol, ens, margins, ious, seg, prepared) -> dict[str, np.ndarray]:
    """LiteMedSAM boxed by the ensemble (every margin; IoU thresholds of the product's rule)."""
    from napari_synfoc.core.model_prompts import model_prompted_mask

    out = {}
    classes = range(1, vol.num_classes)
    for m in margins:
        for t in [0.0, *ious]:
            name = f"sam (margin {m:g})" if t == 0 else f"models + sam (margin {m:g}, IoU >= {t})"
            pred = np.zeros_like(ens)
            for z in range(len(ens)):
                for c in classes:
                    mask, _ = model_prompted_mask(
                        lambda b, z=z: seg.segment_with_box(prepared[z], b), ens[z] == c,
                        margin=m, iou_min=t,
                    )  # fmt: skip
                    pred[z][mask] = c
            out[name] = pred
    return out


def reference_boxes(vol, seg, prepared) -> np.ndarray:
    """LiteMedSAM with one box per reference part on every slice (the ideal prompter)."""
    pred = np.zeros_like(vol.ref)
    for z in range(len(vol.ref)):
        for c, box in R.boxes_for_slice(vol.ref[z], range(1, vol.num_classes)):
            pred[z][np.asarray(seg.segment_with_box(prepared[z], box), bool)] = c
    return pred


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_prompts", description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--labelled", type=int, default=5)
    p.add_argument("--margins", default="2", help="comma list of box margins in pixels")
    p.add_argument("--ious", default="0.5", help="comma list of IoU thresholds (product rule)")
    args = p.parse_args(argv)
    from napari_synfoc.core.intensity import CT_WINDOWS, suggested_window
    from napari_synfoc.core.prompting import PromptSegmenter, prepare_volume

    vol = E.named_volume("CT")
    vol.window = CT_WINDOWS[suggested_window(vol.image)]
    labelled = E.init_slices(len(vol.ref), args.labelled)
    t0 = time.perf_counter()
    fm, un = train_predictions(vol, labelled, args.iterations)
    train_s = time.perf_counter() - t0
    ens = (fm + un).argmax(1).astype(np.uint8)
    seg = PromptSegmenter("litemedsam", encoder_runtime="auto")
    prepared = prepare_volume(np.asarray(vol.image), False, vol.window)
    margins = [float(v) for v in args.margins.split(",")]
    ious = [float(v) for v in args.ious.split(",")]
    sources = {"ensemble": ens, "foundation": fm.argmax(1), "unet": un.argmax(1)}
    sources.update(sam_sources(vol, ens, margins, ious, seg, prepared))
    sources["sam from the reference boxes"] = reference_boxes(vol, seg, prepared)
    results = {name: score(vol, pred, labelled) for name, pred in sources.items()}
    data = {
        "command": "python -m benchmarks.model_prompts " + " ".join(argv or sys.argv[1:]),
        "labelled": labelled, "iterations": args.iterations, "train_seconds": round(train_s, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()], "results": results,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_prompts.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    rows = []
    for name, r in results.items():
        cls = r["classes"]
        rows.append([name, r["failing"], r["brush_regions"], *[
            f"{cls[k]['mean_dice']} ({cls[k]['at_target']} of {cls[k]['slices']})"
            for k in sorted(cls)
        ]])  # fmt: skip
    head = ["source", "slices failing", "brush regions to fix", "aorta Dice (≥ 0.90)", "T12"]
    md = [
        "# The models as prompters on the shared CT (issue 21)",
        "",
        f"Command: `{data['command']}`; {args.iterations} iterations of cpu-interactive on "
        f"slices {labelled} (reference labels), {train_s:.0f} s; load {data['loadavg']}.",
        "",
        markdown_table(head, rows),
        "",
        "Failing slices and brush regions: the effort stop rule and correction plan over all "
        "164 slices (labelled slices keep their labels); Dice over the unlabelled slices.",
    ]
    (out / "model_prompts.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
