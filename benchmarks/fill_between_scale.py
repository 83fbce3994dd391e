"""How "fill between labelled slices" (issue 21) grows with the volume (Qt-free).

A tube whose radius changes along z is labelled on every ``k``-th slice of a synthetic
(Z, 512, 512) volume; "Propose from the models" with fill between then fills every slice between.
Measured for several Z:

- ``ui_ms``: what runs in the dock's GUI thread when the button is pressed (the labelled
  slices' class masks snapshot, the labelled extent, the plan), i.e. ``start_from_models`` on a
  job runner that only queues the work;
- ``worker_ms``: the worker's part, the interpolation of every slice between (signed distances
  of the labelled slices, blends), run to the end on a synchronous job runner, minus ``ui_ms``;
- ``per_filled_slice_ms``;
- each also in r, one torch fp32 LiteMedSAM encoder forward measured in the same run
  (``--no-reference`` leaves r out).

``python -m benchmarks.fill_between_scale --out docs/results/prompts_cpu/fill_between``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.common import reference_r


def tube(z: int, size: int = 512, every: int = 5) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """An image, labels holding a tube (class 1) on every ``every``-th slice, those slices."""
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((z, size, size), np.float32)
    labels = np.zeros((z, size, size), np.uint8)
    labeled = list(range(0, z, every))
    for i in range(z):
        r = size * (0.08 + 0.04 * np.sin(i / 20.0))
        disc = (yy - size / 2) ** 2 + (xx - size / 2 - 20 * np.cos(i / 30.0)) ** 2 < r * r
        img[i][disc] = 1.0
        if i in labeled:
            labels[i][disc] = 1
    return img, labels, labeled


class _Queued:
    """A job runner that keeps the job instead of running it (the GUI thread's share)."""

    busy = False

    def start_events(self, events, got, failed, finished):
        self.job = (events, got, failed, finished)


def measure(z: int, every: int = 5, size: int = 512) -> dict:
    from napari_synfoc.app.jobs import JobRunner
    from napari_synfoc.app.propagation import BoxPropagation

    img, labels, labeled = tube(z, size, every)
    todo = [s for s in range(labeled[-1]) if s not in set(labeled)]  # all between
    ens = labels.copy()

    def make(jobs):
        p = BoxPropagation(
            lambda *a, **k: None, jobs, lambda: None, lambda im, rgb: im, lambda: "replace"
        )
        p.min_part_fraction = 0.0  # the fill alone
        return p

    queued = make(_Queued())
    t = time.perf_counter()
    queued.start_from_models(img, labels.shape, ens, todo, cls=1, labels=labels, labeled=labeled)
    ui = time.perf_counter() - t
    sync = make(JobRunner("sync"))
    t = time.perf_counter()
    assert sync.start_from_models(
        img, labels.shape, ens, todo, cls=1, labels=labels, labeled=labeled
    )
    total = time.perf_counter() - t
    n = len(sync.interpolated)
    if n != len(todo):
        raise RuntimeError(f"{n} slices filled, expected every slice between labelled ones")
    return {
        "slices": z, "size": size, "labelled_every": every, "labelled": len(labeled),
        "filled": n, "ui_ms": round(1e3 * ui, 1), "worker_ms": round(1e3 * (total - ui), 1),
        "per_filled_slice_ms": round(1e3 * (total - ui) / max(n, 1), 2),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/results/prompts_cpu/fill_between")
    ap.add_argument("--slices", default="50,200,300")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-reference", action="store_true", help="do not measure r")
    args = ap.parse_args(argv)
    r = reference_r(args.no_reference)
    rows = [measure(int(z), size=args.size) for z in args.slices.split(",")]
    for row in rows:
        if r:
            row["ui_r"] = round(row["ui_ms"] / 1e3 / r, 4)
            row["worker_r"] = round(row["worker_ms"] / 1e3 / r, 3)
    data = {
        "command": "python -m benchmarks.fill_between_scale " + " ".join(argv or []),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg": [round(x, 2) for x in os.getloadavg()], "reference_encoder_s": r,
        "rows": rows,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fill_between_scale.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
