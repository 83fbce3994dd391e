"""Measure how box propagation's cost grows with the number of slices (Qt-free).

Boxes on the first, middle and last slice are propagated over every slice between them, for
several stack sizes, by

- ``core.prompting.propagate_boxes`` (the scripts' / CLI's path), and
- the dock's path without Qt: :class:`~napari_synfoc.app.prompts.PromptController`
  ``propagation.start`` on a synchronous job runner, then ``propagation.accept`` (accept all, the
  one undo step's edit).

Models: the tiny random prompt model on a synthetic (Z, 64, 64) disc stack, and the real
LiteMedSAM (bf16/fp32 "auto" precision, memory cache only, so every slice is encoded) on FAZ
train images (``benchmarks.time_to_useful.faz_stack``; its boxes come from the ground truth of
the keyed slices; 20 and 50 slices by default: 200 would encode 200 slices per path, ≥ 4 min of the
2-core CPU).  Each size gets a fresh segmenter, so no embedding is reused across sizes.

Run niced on a shared machine (timings are noisy; the JSON records the load average)::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python -m benchmarks.measure_prompt_scale

Writes docs/results/prompts_cpu/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def disc_stack(z: int, size: int = 64) -> np.ndarray:
    """Float32 noise with a bright disc whose centre and radius vary with the slice."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.2, 0.05, (z, size, size)).astype(np.float32)
    for i in range(z):
        cx, r = size * 0.44 + 6 * np.sin(i / 15), 9 + (i % 7)
        img[i][(yy - size / 2) ** 2 + (xx - cx) ** 2 < r * r] += 0.6
    return img


def _rect(z: int, box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float)


def measure(make_seg, volume: np.ndarray, boxes: dict[int, tuple], dock_path=True) -> dict:
    """Time one propagation by each path (the controller's only with ``dock_path``) on a fresh
    segmenter per path."""
    from napari_synfoc.app.jobs import JobRunner
    from napari_synfoc.app.prompts import PromptController
    from napari_synfoc.core.prompting import propagate_boxes

    n = len(volume)
    seg = make_seg()
    t0 = time.perf_counter()
    res = propagate_boxes(volume, boxes, segmenter=seg)
    core_s = time.perf_counter() - t0
    assert len(res.masks) == n and not res.cancelled
    row = {
        "slices": n,
        "core_propagate_s": round(core_s, 3),
        "core_per_slice_s": round(core_s / n, 4),
        "encoder_calls": int(seg.encoder_calls),
        "precision": seg.precision,
        "nonempty_proposals": int(sum(bool(m.any()) for m in res.masks.values())),
    }
    if not dock_path:
        return row

    seg = make_seg()
    c = PromptController(None, lambda: seg, JobRunner("sync"))
    labels = np.zeros(volume.shape[:3], np.int32)
    shapes = [_rect(z, b) for z, b in boxes.items()]
    t0 = time.perf_counter()
    ok = c.propagation.start(volume, labels.shape, shapes)
    ctl_s = time.perf_counter() - t0
    if not ok or c.propagation.outcome != "done" or len(c.propagation.proposals) != n:
        raise RuntimeError(f"controller propagation failed on {n} slices: {c.last_message}")
    t0 = time.perf_counter()
    pe = c.propagation.accept(labels)
    accept_s = time.perf_counter() - t0
    row.update(
        controller_propagate_s=round(ctl_s, 3),
        controller_per_slice_s=round(ctl_s / n, 4),
        accept_all_s=round(accept_s, 4),
        accept_all_px=int(pe.edit.size),
    )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny-sizes", default="20,100,200", help="slice counts, tiny model")
    ap.add_argument("--repeats", type=int, default=3, help="tiny runs per size (median kept)")
    ap.add_argument("--real-sizes", default="20,50", help="slice counts, LiteMedSAM ('' = skip)")
    ap.add_argument(
        "--real-dock-path",
        action="store_true",
        help="also time the controller path on LiteMedSAM (encodes every slice twice)",
    )
    ap.add_argument("--out", default=str(ROOT / "docs/results/prompts_cpu/scale.json"))
    ap.add_argument("--data", default=None, help="the shared data folder (../shared/data)")
    args = ap.parse_args(argv)

    import torch

    from napari_synfoc.core.prompting import PromptSegmenter, mask_to_box

    load0 = os.getloadavg()
    t_all = time.perf_counter()
    out: dict = {
        "what": "box propagation cost vs number of slices (boxes on first, middle, last slice)",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "nice": os.nice(0),
            "note": "shared CPU (other jobs running): timings are noisy",
        },
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "tiny": [],
        "litemedsam": [],
    }

    def tiny():
        return PromptSegmenter("tiny", size=64, seed=0, precision="fp32")

    measure(tiny, disc_stack(3), {0: (12.0, 15.0, 44.0, 48.0), 2: (14.0, 18.0, 46.0, 46.0)})
    for n in [int(s) for s in args.tiny_sizes.split(",") if s]:  # (after one warm-up above)
        vol = disc_stack(n)
        boxes = {0: (12.0, 15.0, 44.0, 48.0), n // 2: (14.0, 18.0, 46.0, 46.0)}
        boxes[n - 1] = (16.0, 20.0, 48.0, 50.0)
        runs = [measure(tiny, vol, boxes) for _ in range(args.repeats)]
        row = {k: v for k, v in runs[0].items() if not k.endswith("_s")}
        for k in runs[0]:
            if k.endswith("_s"):
                row[k] = float(np.median([r[k] for r in runs]))
        row["repeats"] = len(runs)
        out["tiny"].append(row)
        print("tiny", row, flush=True)

    real = [int(s) for s in args.real_sizes.split(",") if s]
    if real:
        from benchmarks.common import faz_root
        from benchmarks.time_to_useful import faz_stack

        per_site = (max(real) + 4) // 5
        img, gt = faz_stack(per_site, faz_root(args.data))
        for n in real:
            vol, lab = img[:n], gt[:n]
            keys = sorted({0, n // 2, n - 1})
            boxes = {z: mask_to_box(lab[z]) for z in keys}
            t0 = time.perf_counter()
            row = measure(lambda: PromptSegmenter("litemedsam"), vol, boxes, args.real_dock_path)
            row["wall_with_model_loads_s"] = round(time.perf_counter() - t0, 1)
            row["image"] = (
                f"FAZ train {vol.shape[1]}x{vol.shape[2]}: the first {n} of "
                f"faz_stack(per_site={per_site})"
            )
            out["litemedsam"].append(row)
            print("litemedsam", row, flush=True)

    out["load_average_before_after"] = [list(load0), list(os.getloadavg())]
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
