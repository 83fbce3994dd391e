"""Scale check (issue 22 item 5): the dock on a 512×512×300 CT and on a 500-slice stack.

Opens napari (under Xvfb when there is no display), adds the volume and a Labels layer with 3
slices painted, opens the SynFoC dock and presses Train through its scripting API with the dock's
defaults, exactly the code path of a click.  For ``--seconds`` it records the longest gap of a
10 ms event-loop ticker (the UI stall), napari's RSS and the training child's RSS (sampled every
0.5 s from ``/proc``), when the first overlay appears and when every slice holds a U-Net and a
foundation-model prediction.  One torch fp32 LiteMedSAM encoder forward is timed first (r).

    xvfb-run -a .venv/bin/python -m benchmarks.scale --out docs/results/scale_cpu

Goals: napari + child RSS ≤ 4 GB each, UI stall ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

VOLUMES = ("CT300", "STACK500")
GOAL_RSS_MB = 4096.0
GOAL_STALL_MS = 100.0


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of process ``pid`` in MB (0 when it is gone)."""
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_volume(name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(image, labels with 3 slices painted, those slices) of volume ``name``."""
    if name == "CT300":
        from .time_to_useful import ct_stack

        img, gt = ct_stack(300, 512)
        labeled = [90, 150, 210]  # inside the organ (z ~ 0.2..0.8 of the volume)
    elif name == "STACK500":
        from napari_synfoc.io.sample import make_demo_stack

        img, gt, _ = make_demo_stack(500, 256)
        labeled = [100, 250, 400]
    else:
        raise ValueError(f"unknown volume {name!r}; choose from {VOLUMES}")
    labels = np.zeros_like(gt)
    labels[labeled] = gt[labeled]
    return img, labels, labeled


def measure(name: str, seconds: float, iterations: int | None = None) -> dict[str, Any]:
    """Train on volume ``name`` in the dock for ``seconds`` (or until the run ends:
    ``iterations`` sets the dock's Iterations, so the run's end and its whole-volume
    predictions fall inside the window); stalls, memory and coverage."""
    from napari_synfoc.core.process_runner import descendant_pids
    from napari_synfoc.machine_check import open_dock
    from napari_synfoc.widgets.ui_latency import EventLoopProbe

    img, labels, labeled = make_volume(name)
    viewer, il, ll, widget, app = open_dock(img, labels, "volume")
    rss0 = rss_mb()
    probe = EventLoopProbe(10, stall_ms=100).start()
    t0 = time.perf_counter()
    widget.train(image_layer=il, labels_layer=ll, iterations=iterations)
    first = None
    samples: list[dict[str, float]] = []
    next_sample = 0.0
    while time.perf_counter() - t0 < seconds and widget.is_training:
        app.processEvents()
        now = time.perf_counter() - t0
        if first is None and "U-Net prediction" in viewer.layers:
            first = now
        if now >= next_sample:
            kids = descendant_pids()
            samples.append(
                {
                    "t": round(now, 1),
                    "napari_mb": round(rss_mb(), 1),
                    "child_mb": round(max((rss_mb(p) for p in kids), default=0.0), 1),
                    "status": widget.controller.last_message[:80],
                }
            )
            next_sample = now + 0.5
        time.sleep(0.002)
    ended = not widget.is_training
    widget.stop()
    widget.wait(180)
    probe.stop()
    out = {
        "volume": name,
        "shape": list(img.shape),
        "dtype": str(img.dtype),
        "volume_mb": round(img.nbytes / 2**20, 1),
        "seconds": seconds,
        "iterations": iterations,
        "run_ended_s": round(samples[-1]["t"], 1) if ended and samples else None,
        "first_overlay_s": None if first is None else round(first, 1),
        "ui_max_gap_ms": round(max(probe.gaps_ms), 1) if probe.gaps_ms else None,
        "ui_p99_gap_ms": round(probe.percentile(99), 1) if probe.gaps_ms else None,
        # the gaps over 100 ms: when they ended, and what the GUI thread was running meanwhile
        "stalls": [{"gap_ms": gap, **who} for gap, who in probe.stalls if gap > 100][:20],
        "napari_rss_before_train_mb": round(rss0, 1),
        "napari_peak_mb": max((s["napari_mb"] for s in samples), default=None),
        "child_peak_mb": max((s["child_mb"] for s in samples), default=None),
        "last_status": samples[-1]["status"] if samples else None,
        "samples": samples[::4],
        "labeled": labeled,
    }
    viewer.close()
    return out


def _ended(run: dict[str, Any]) -> str:
    """When the run ended (its whole-volume predictions measured), or that it was stopped."""
    its = run.get("iterations")
    if run.get("run_ended_s") is not None:
        return f"at {run['run_ended_s']} s ({its} iterations)"
    secs = run.get("seconds")
    return "no" if secs is None else f"no: stopped at {secs:.0f} s"


def markdown(data: dict[str, Any]) -> str:
    rows = [
        "# Scale check: the dock on large volumes (issue 22 item 5)",
        "",
        f"Command: `{data['command']}`  ",
        f"Machine: {data['machine']}; r = {data['r_s']:.3f} s (one torch fp32 encoder forward).",
        "",
        "| volume | shape | first overlay | longest UI stall (goal ≤ 100 ms) | p99"
        " | napari peak RSS | child peak RSS (goal ≤ 4 GB each) | run ended | status at the end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        rows.append(
            f"| {r['volume']} | {'×'.join(map(str, r['shape']))} {r['dtype']} "
            f"({r['volume_mb']:.0f} MB) | {r['first_overlay_s']} s | {r['ui_max_gap_ms']} ms | "
            f"{r['ui_p99_gap_ms']} ms | {r['napari_peak_mb']:.0f} MB | {r['child_peak_mb']:.0f} MB"
            f" | {_ended(r)} | {r['last_status']} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--volumes", default=",".join(VOLUMES))
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument(
        "--iterations", type=int, default=None,
        help="the dock's Iterations (default: the profile's); short runs end inside the window",
    )  # fmt: skip
    args = p.parse_args(argv)
    from napari_synfoc.machine_check import reference_encoder_seconds

    r = reference_encoder_seconds("cpu")
    runs = []
    for name in [v.strip() for v in args.volumes.split(",") if v.strip()]:
        runs.append(measure(name, args.seconds, args.iterations))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "samples"}), flush=True)
    data = {
        "command": "python -m benchmarks.scale " + " ".join(argv or []),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "r_s": r,
        "goals": {"rss_mb": GOAL_RSS_MB, "ui_stall_ms": GOAL_STALL_MS},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    (args.out / "scale.md").write_text(markdown(data), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
