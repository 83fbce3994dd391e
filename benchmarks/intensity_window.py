"""Dice on a CT-like volume: percentile normalisation vs the soft-tissue CT window.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.intensity_window \
        --iterations 300 --seeds 0 1 2 --out docs/results/intensity_cpu

A synthetic int16 CT (HU): air -1000 outside an elliptic body (30 +- 8 HU), a soft-tissue organ
(60 +- 8 HU), a dense bone ring (1000-1500 HU) and lungs (-850 HU); 3 labelled slices; Dice of
the organ on the unlabelled slices from core.interactive.train_on_stack's final predictions.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from napari_synfoc.core.metrics import dice
from napari_synfoc.io.results import write_json_atomic


def ct_volume(z=12, size=96, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float) / size - 0.5
    vol = np.full((z, size, size), -1000.0)
    lab = np.zeros((z, size, size), np.int32)
    for k in range(z):
        t = k / (z - 1)
        body = (xx / 0.45) ** 2 + (yy / 0.35) ** 2 < 1
        ring = ((xx / 0.43) ** 2 + (yy / 0.33) ** 2 > 0.85) & body
        lungs = (((xx - 0.18) / 0.12) ** 2 + (yy / 0.18) ** 2 < 1) | (
            ((xx + 0.18) / 0.12) ** 2 + (yy / 0.18) ** 2 < 1
        )
        r = 0.08 + 0.06 * np.sin(np.pi * t)  # the organ grows then shrinks along z
        organ = ((xx - 0.02 * k / z) / r) ** 2 + ((yy + 0.12) / (0.8 * r)) ** 2 < 1
        s = vol[k]
        s[body] = 30 + 8 * rng.standard_normal(body.sum())
        s[lungs & body] = -850 + 30 * rng.standard_normal((lungs & body).sum())
        s[organ] = 60 + 8 * rng.standard_normal(organ.sum())
        s[ring] = 1000 + 500 * rng.random(ring.sum())
        lab[k][organ] = 1
    return np.clip(np.round(vol), -1024, 3071).astype(np.int16), lab


def run(window, seed, iterations, profile):
    from napari_synfoc.config import resolve_config
    from napari_synfoc.core.events import Done, Failed, Predictions
    from napari_synfoc.core.interactive import StackTask, train_on_stack

    img, lab = ct_volume(seed=seed)
    labelled = [2, 6, 9]
    sparse = np.zeros_like(lab)
    sparse[labelled] = lab[labelled]
    task = StackTask(img, sparse, labelled, intensity_window=window)
    cfg = resolve_config(profile, device="cpu", overrides={"iterations": iterations, "seed": seed})
    last = None
    t0 = time.perf_counter()
    for ev in train_on_stack(task, cfg, embed_cache_dir=None, predict_every=iterations):
        if isinstance(ev, Predictions):
            last = ev
        elif isinstance(ev, Failed):
            raise RuntimeError(ev)
        elif isinstance(ev, Done):
            break
    secs = time.perf_counter() - t0
    fm = np.asarray(last.fm_prob).argmax(1)
    un = np.asarray(last.unet_prob).argmax(1)
    ens = (np.asarray(last.fm_prob) + np.asarray(last.unet_prob)).argmax(1)
    test = [k for k in range(len(lab)) if k not in labelled]
    out = {}
    for name, pred in (("unet", un), ("foundation", fm), ("ensemble", ens)):
        out[name] = float(np.mean([dice(pred[k] == 1, lab[k] == 1) for k in test]))
    out["seconds"] = round(secs, 1)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.intensity_window", description=__doc__)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--out", required=True, help="folder for results.json and results.md")
    a = p.parse_args(argv)
    from napari_synfoc.core.intensity import CT_WINDOWS

    rows = []
    for seed in a.seeds:
        for label, window in (
            ("percentile 0.5-99.5", None),
            ("soft tissue", CT_WINDOWS["soft tissue"]),
        ):
            r = run(window, seed, a.iterations, a.profile)
            rows.append({"mapping": label, "window": window, "seed": seed, **r})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for label in ("percentile 0.5-99.5", "soft tissue"):
        sel = [r for r in rows if r["mapping"] == label]
        summary[label] = {
            k: round(float(np.mean([r[k] for r in sel])), 3)
            for k in ("unet", "foundation", "ensemble")
        }
    result = {
        "command": "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.intensity_window "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "profile": a.profile,
        "iterations": a.iterations,
        "machine": f"{platform.machine()} CPU, shared by other jobs (times are noisy)",
        "runs": rows,
        "mean_dice": summary,
    }
    out = Path(a.out)
    write_json_atomic(out / "results.json", result)
    lines = [
        "# Intensity mapping on a CT-like volume (CPU)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Profile `{a.profile}`, {a.iterations} iterations, seeds {a.seeds}; organ Dice on the"
        " 9 unlabelled slices (3 labelled), mean over seeds.",
        "",
        "| mapping | U-Net | foundation | ensemble |",
        "|---|---|---|---|",
    ]
    for label, s in summary.items():
        lines.append(
            f"| {label} | {s['unet']:.3f} | {s['foundation']:.3f} | {s['ensemble']:.3f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
