"""Training speed with a second CPU-bound torch process on the machine (``bench --foreign-load``).

Issue 13's goal: with another torch program busy on every core, a training iteration is at most
2x slower than on an otherwise idle machine. :func:`start_foreign_load` starts such a program (a
separate process doing float32 matmuls with torch's default thread count, as a second training
run or a benchmark would); :func:`seconds_per_iteration` times a short run in the training child
process; :func:`measure` does both and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

_LOAD_SCRIPT = """
import sys, torch
if len(sys.argv) > 1 and int(sys.argv[1]) > 0:
    torch.set_num_threads(int(sys.argv[1]))
a = torch.rand(384, 384)
print("ready", torch.get_num_threads(), flush=True)
while True:
    a = torch.tanh(a @ a) * 0.5
"""


def start_foreign_load(threads: int | None = None) -> subprocess.Popen:
    """A separate CPU-bound torch process (default: torch's own thread count, one per core).

    Returns once it computes; stop it with :func:`stop_foreign_load`.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOAD_SCRIPT, str(threads or 0)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"the foreign load process did not start (said {line!r})")
    proc.threads = int(line.split()[1])  # type: ignore[attr-defined]
    return proc


def stop_foreign_load(proc: subprocess.Popen) -> None:
    """Kill and reap the foreign load process."""
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def disc_task(slices: int = 6, size: int = 64, seed: int = 0):
    """A small StackTask of noisy discs, slices 0 and 1 labelled (timing and fault tests)."""
    from napari_synfoc.core.interactive import StackTask

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((slices, size, size), np.uint8)
    for i in range(slices):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        lab[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < (size // 5) ** 2
    img = (0.3 + 0.5 * lab + 0.05 * rng.standard_normal(lab.shape)).astype(np.float32)
    return StackTask(img, lab, [0, 1])


def seconds_per_iteration(
    profile: str = "tiny", iterations: int = 12, warmup: int = 2, size: int = 64
) -> dict[str, Any]:
    """Median seconds per iteration of a short run in the training child process, plus the
    longest gap of a 10 ms ticker thread in this (the UI's) process while it ran."""
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Done, Failed, Step
    from napari_synfoc.core.process_runner import train_in_child

    cfg = make_config(profile, device="cpu", iterations=iterations + warmup)
    gaps: list[float] = []
    running = threading.Event()
    running.set()

    def ticker() -> None:
        last = time.perf_counter()
        while running.is_set():
            time.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last - 0.01)
            last = now

    tick = threading.Thread(target=ticker, daemon=True)
    tick.start()
    steps: list[float] = []
    last = None
    try:
        for ev in train_in_child(disc_task(size=size), cfg, predict_every=0):
            if isinstance(ev, Step):
                steps.append(ev.seconds)
            last = ev
    finally:
        running.clear()
        tick.join()
    if isinstance(last, Failed) or not isinstance(last, Done):
        raise RuntimeError(f"the timed run did not finish: {last}")
    timed = steps[warmup:]
    return {
        "profile": profile,
        "iterations_timed": len(timed),
        "seconds_per_iteration": statistics.median(timed),
        "seconds_min": min(timed),
        "seconds_max": max(timed),
        "parent_max_gap_ms": 1000 * max(gaps) if gaps else None,
    }


def measure(
    profile: str = "tiny", iterations: int = 12, out: str | Path | None = None
) -> dict[str, Any]:
    """Seconds per iteration idle and under a foreign torch load; the ratio; JSON to ``out``."""
    from napari_synfoc.core.device import cpu_policy, usable_cores

    with open("/proc/loadavg") as fh:
        load_before = fh.read().split()[:3]
    idle = seconds_per_iteration(profile, iterations)
    load = start_foreign_load()
    try:
        time.sleep(1.0)
        busy = seconds_per_iteration(profile, iterations)
    finally:
        stop_foreign_load(load)
    threads, niceness = cpu_policy()
    res = {
        "cores": usable_cores(),
        "child_threads": threads,
        "child_niceness": niceness,
        "foreign_threads": load.threads,  # type: ignore[attr-defined]
        "loadavg_before": [float(x) for x in load_before],
        "idle": idle,
        "foreign_load": busy,
        "ratio": busy["seconds_per_iteration"] / idle["seconds_per_iteration"],
        "goal_ratio": 2.0,
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2), encoding="utf-8")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--out", default=None, help="JSON file to write")
    args = ap.parse_args(argv)
    res = measure(args.profile, args.iterations, args.out)
    print(json.dumps(res, indent=2))
    return 0 if res["ratio"] <= res["goal_ratio"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
