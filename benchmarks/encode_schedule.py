"""Encode first, or interleave encoding with training? (issue 22, scheduling)

``python -m benchmarks.encode_schedule --out DIR [--stack S200] [--seconds 100] [--data DIR]``

Runs the dock's CPU defaults (``resolve_config("auto", "cpu")``, the slice in view = the middle
one, ``unet_first`` on) through :func:`~napari_synfoc.core.interactive.train_on_stack` once per
``encode_schedule`` value, each for at most ``--seconds`` (or until every slice holds both
predictions), embeddings in memory only (no run reuses another's).  Records when every slice
first holds the U-Net's prediction, when every slice holds both, and the encoder's progress.
When a run stops before the volume is covered, the time to cover it is extrapolated from the
encoder's rate over the run's last half (marked as an estimate).  r: one torch fp32 LiteMedSAM
encoder forward (batch 1, 256²) measured in the same process before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .time_to_useful import build_stack, dock_config

MODES = ("interleave", "encode_first")


def run_mode(mode: str, image, labels, labeled, seconds: float) -> dict[str, Any]:
    """One run of ``mode``: event times since Train."""
    from napari_synfoc.core.events import Encoding, Predictions, Step
    from napari_synfoc.core.interactive import StackTask, train_on_stack

    z = image.shape[0]
    cfg = dock_config("cpu").replace(unet_first=True, encode_schedule=mode)
    task = StackTask(image=image, labels=labels, labeled_slices=list(labeled))
    unet, both = np.zeros(z, bool), np.zeros(z, bool)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"mode": mode, "t_unet_all": None, "t_both_all": None}
    enc: list[tuple[float, int, int]] = []
    first_step = None

    def stop() -> bool:
        return time.perf_counter() - t0 > seconds or bool(both.all())

    events = train_on_stack(task, cfg, should_stop=stop, view_slice=z // 2, embed_cache_dir=None)
    for ev in events:
        t = time.perf_counter() - t0
        if isinstance(ev, Encoding):
            enc.append((t, ev.done, ev.total))
        elif isinstance(ev, Step) and first_step is None:
            first_step = t
        elif isinstance(ev, Predictions):
            unet[ev.covered()] = True
            both[ev.foundation_slices()] = True
            if out["t_unet_all"] is None and unet.all():
                out["t_unet_all"] = round(t, 1)
            if out["t_both_all"] is None and both.all():
                out["t_both_all"] = round(t, 1)
    out.update(
        wall_s=round(time.perf_counter() - t0, 1), first_step_s=first_step,
        slices_with_both=int(both.sum()), slices=z, encoded=enc[-1][1:] if enc else None,
    )  # fmt: skip
    if out["t_both_all"] is None and len(enc) > 2:
        half = [e for e in enc if e[0] >= enc[-1][0] / 2] or enc
        (ta, da, _), (tb, db, total) = half[0], enc[-1]
        rate = (db - da) / max(tb - ta, 1e-9)  # queue items per second
        out["encode_rate_items_s"] = round(rate, 3)
        out["t_both_all_estimate"] = round(tb + (total - db) / rate, 1) if rate > 0 else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.encode_schedule", description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--stack", default="S200")
    p.add_argument("--seconds", type=float, default=100.0)
    p.add_argument("--data", default=None, help="data folder (default ../shared/data)")
    a = p.parse_args(argv)
    import torch

    from napari_synfoc.machine_check import reference_encoder_seconds

    image, labels, labeled = build_stack(a.stack, a.data)
    r0 = reference_encoder_seconds("cpu")
    runs = [run_mode(m, image, labels, labeled, a.seconds) for m in MODES]
    r1 = reference_encoder_seconds("cpu")
    r = (r0 + r1) / 2
    for run in runs:  # the same times in r
        keys = ("t_unet_all", "t_both_all", "t_both_all_estimate", "first_step_s")
        run["in_r"] = {k: round(run[k] / r, 1) for k in keys if run.get(k) is not None}
    result = {
        "stack": a.stack, "shape": list(image.shape), "seconds_limit": a.seconds,
        "r_start_s": round(r0, 3), "r_end_s": round(r1, 3),
        "torch_threads": torch.get_num_threads(), "load_average": list(os.getloadavg()),
        "runs": runs,
    }  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encode_schedule.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
