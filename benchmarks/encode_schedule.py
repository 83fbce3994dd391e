"""Encode first, or interleave encoding with training? (issue 22, scheduling)

``python -m benchmarks.encode_schedule --out DIR [--stack S200] [--cpu-seconds 200]
[--modes interleave,encode_first] [--data DIR]``

Runs the dock's CPU defaults (``resolve_config("auto", "cpu")``, the slice in view = the middle
one, ``unet_first`` on) through :func:`~napari_synfoc.core.interactive.train_on_stack` once per
``encode_schedule`` value, embeddings in memory only (no run reuses another's), each until
every slice holds both predictions or the process has used ``--cpu-seconds`` of CPU time.

Times are this process's CPU time (all its threads), so that a machine shared with other work
still compares the two schedules fairly, and are also given in r: the CPU time of one torch fp32
LiteMedSAM encoder forward (batch 1, 256²), measured in the same process before and after.
Recorded per mode: when every slice first holds the U-Net's prediction, when every slice holds
both (or, when the run stopped before, an estimate: the encoder queue's rate over the run's last
half, extrapolated to the whole queue, marked ``*_estimate``), and the encoder's progress.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from .time_to_useful import build_stack, dock_config

MODES = ("interleave", "encode_first")


def reference_cpu_seconds(repeats: int = 3) -> float:
    """CPU time of one torch fp32 LiteMedSAM encoder forward (batch 1, 256², the median)."""
    import torch

    from napari_synfoc.config import make_config
    from napari_synfoc.core.foundation import build_foundation

    fm = build_foundation(make_config(foundation="litemedsam", encoder_runtime="torch")).eval()
    x = fm.normalize(torch.rand(1, 1, 256, 256))
    times = []
    with torch.no_grad():
        fm.image_encoder(x)
        for _ in range(repeats):
            t = time.process_time()
            fm.image_encoder(x)
            times.append(time.process_time() - t)
    return statistics.median(times)


def warm_encoder_runtime(cfg) -> str:
    """Build the dock's foundation once and encode one slice, so a runtime probe or export
    (``encoder_runtime="auto"``, cached per machine) is not billed to the first mode."""
    import torch

    from napari_synfoc.core.foundation import build_foundation

    fm = build_foundation(cfg).eval()
    fm.encode(fm.normalize(torch.rand(1, 1, fm.input_size, fm.input_size)))
    status = getattr(getattr(fm, "frozen_encoder", None), "status", None)
    return str(status) if status is not None else "torch"


def run_mode(mode: str, image, labels, labeled, cpu_limit: float) -> dict[str, Any]:
    """One run of ``mode``: CPU and wall seconds since Train of its milestones."""
    from napari_synfoc.core.events import Encoding, Predictions, Step
    from napari_synfoc.core.interactive import StackTask, train_on_stack

    z = image.shape[0]
    cfg = dock_config("cpu").replace(unet_first=True, encode_schedule=mode)
    task = StackTask(image=image, labels=labels, labeled_slices=list(labeled))
    unet, both = np.zeros(z, bool), np.zeros(z, bool)
    c0, w0 = time.process_time(), time.perf_counter()
    out: dict[str, Any] = {"mode": mode, "cpu_unet_all": None, "cpu_both_all": None}
    enc: list[tuple[float, int, int]] = []

    def stop() -> bool:
        return time.process_time() - c0 > cpu_limit or bool(both.all())

    events = train_on_stack(task, cfg, should_stop=stop, view_slice=z // 2, embed_cache_dir=None)
    for ev in events:
        c = time.process_time() - c0
        if isinstance(ev, Encoding):
            enc.append((c, ev.done, ev.total))
        elif isinstance(ev, Step):
            out.setdefault("cpu_first_step", round(c, 1))
            out["last_iteration"] = ev.iteration + 1
        elif isinstance(ev, Predictions):
            unet[ev.covered()] = True
            both[ev.foundation_slices()] = True
            if out["cpu_unet_all"] is None and unet.all():
                out["cpu_unet_all"] = round(c, 1)
            if out["cpu_both_all"] is None and both.all():
                out["cpu_both_all"] = round(c, 1)
    out.update(
        cpu_s=round(time.process_time() - c0, 1), wall_s=round(time.perf_counter() - w0, 1),
        slices=z, slices_with_both=int(both.sum()), encoded=list(enc[-1][1:]) if enc else None,
    )  # fmt: skip
    later = [e for e in enc if e[0] >= enc[-1][0] / 2]  # the run's last half
    if out["cpu_both_all"] is None and len(later) > 1 and later[-1][1] - later[0][1] >= 8:
        (ca, da, _), (cb, db, total) = later[0], later[-1]
        rate = (db - da) / max(cb - ca, 1e-9)  # queue items per CPU second
        out["encode_items_per_cpu_s"] = round(rate, 4)
        out["cpu_both_all_estimate"] = round(cb + (total - db) / rate, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.encode_schedule", description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--stack", default="S200")
    p.add_argument("--cpu-seconds", type=float, default=200.0)
    p.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    p.add_argument("--data", default=None, help="data folder (default ../shared/data)")
    a = p.parse_args(argv)
    import torch

    image, labels, labeled = build_stack(a.stack, a.data)
    load0 = list(os.getloadavg())
    runtime = warm_encoder_runtime(dock_config("cpu"))
    r0 = reference_cpu_seconds()
    modes = [m for m in a.modes.split(",") if m]
    runs = [run_mode(m, image, labels, labeled, a.cpu_seconds) for m in modes]
    r1 = reference_cpu_seconds()
    r = (r0 + r1) / 2
    keys = ("cpu_unet_all", "cpu_both_all", "cpu_both_all_estimate", "cpu_first_step")
    for run in runs:  # the same CPU times in r
        run["in_r"] = {k: round(run[k] / r, 1) for k in keys if run.get(k) is not None}
    result = {
        "stack": a.stack, "shape": list(image.shape), "cpu_seconds_limit": a.cpu_seconds,
        "encoder_runtime": runtime, "r_cpu_start_s": round(r0, 3), "r_cpu_end_s": round(r1, 3),
        "torch_threads": torch.get_num_threads(), "load_average_start": load0,
        "load_average_end": list(os.getloadavg()), "runs": runs,
    }  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"encode_schedule_{'_'.join(modes)}.json").write_text(
        json.dumps(result, indent=2), encoding="utf-8"
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
