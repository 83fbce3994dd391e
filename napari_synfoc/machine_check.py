"""``napari-synfoc bench``: a short check of this machine, all measured in one run.

Seconds per training iteration of the profile the dock would use (and its peak memory), the time
from Train to the first overlay through the dock, and the longest UI stall while it trains. One
LiteMedSAM encoder forward is timed first as the reference, so the numbers can be read as
multiples of it on a shared or unknown machine.

Each profile is timed in its own subprocess so its peak RSS is its own; the overlay measurement
runs napari in a subprocess (under ``xvfb-run`` when there is no display). The development
benchmarks (GPU profile comparisons, the torch profiler, a foreign CPU load) live outside the
package: ``python -m benchmarks.speed --help`` in a source checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

QUICK_PROFILES = ("cpu-interactive",)
CPU_PROFILES = ("cpu-interactive", "faithful")
GPU_PROFILES = ("faithful", "gpu-fast")
WORKER_MODULE = "napari_synfoc.machine_check"


def reference_encoder_seconds(device: str = "auto", repeats: int = 5) -> float:
    """One LiteMedSAM encoder forward, batch 1, fp32, 256×256: the median of ``repeats``."""
    import torch

    from .config import make_config
    from .core.device import pick_device
    from .core.foundation import build_foundation

    dev = pick_device(device)
    fm = build_foundation(make_config(foundation="litemedsam")).to(dev).eval()
    x = torch.rand(1, 3, 256, 256, device=dev)
    times = []
    with torch.no_grad():
        fm.encode(fm.normalize(x))  # warm-up
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fm.encode(fm.normalize(x))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def demo_task(n_slices: int = 20, size: int = 256, n_labeled: int = 3):
    """The demo stack with its first ``n_labeled`` slices labelled: (image, labels, labelled)."""
    from .io.sample import make_demo_stack

    img, gt, _ = make_demo_stack(n_slices, size)
    labeled = list(range(n_labeled))
    labels = gt.copy()
    labels[n_labeled:] = 0
    return img, labels, labeled


def parse_profile_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"gpu-fast+compile=true+unet_size=384"`` → ``("gpu-fast", {"compile": True, ...})``.

    Values are read as JSON where they parse (numbers, true/false, lists), else kept as text.
    """
    name, *sets = spec.split("+")
    over: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"profile setting {item!r} in {spec!r} is not key=value")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        over[key.strip()] = tuple(val) if isinstance(val, list) else val
    return name, over


def profile_trainer(profile: str, device: str):
    """A trainer of ``profile`` (a :func:`parse_profile_spec` spec) on a small demo stack, its
    frozen-encoder bank filled, and its two batch iterators: ``(trainer, cfg, labelled batches,
    unlabelled batches, encoder seconds per slice or None)``."""
    import torch

    from .config import resolve_config
    from .core.data import infinite_loader, samples_from_stack
    from .core.trainer import SynFoCTrainer

    name, extra = parse_profile_spec(profile)
    over: dict[str, Any] = {"iterations": 10_000}
    if name in ("faithful", "gpu-fast") and not (torch.cuda.is_available() and device != "cpu"):
        # The paper's recipe on a CPU (LiteMedSAM with LoRA, paper U-Net): for scale only.
        over.update(foundation="litemedsam", precision="fp32" if name == "faithful" else "auto")
    over.update(extra)
    cfg = resolve_config(name, device, None, over)  # as the CLI and the dock build it
    n_slices = 6 if cfg.cache_embeddings else 8
    img, labels, labeled = demo_task(n_slices, 256, 3)
    lab, unl, _ = samples_from_stack(img, labels, labeled)
    tr = SynFoCTrainer(cfg, lab, unl)
    t_embed = None
    if tr.cached:
        # The one-off cost of the frozen encoder: every slice and its mirror, once.
        t = time.perf_counter()
        # the trainer's bank keys: "domain/name" of each sample
        lab_keys = [f"{s.domain}/{s.name}" for s in lab]
        unl_keys = [f"{s.domain}/{s.name}" for s in unl]
        for ds, keys in ((tr.labeled_ds, lab_keys), (tr.unlabeled_ds, unl_keys)):
            for i in range(len(keys)):
                x = torch.from_numpy(ds.images[i]) if hasattr(ds, "images") else ds[i]["image"]
                x = (
                    torch.nn.functional.interpolate(x[None].float(), size=(tr.S, tr.S))[0]
                    if x.shape[-1] != tr.S
                    else x
                )
                tr.bank.compute((keys[i], False), x)
                tr.bank.compute((keys[i], True), x)
        t_embed = (time.perf_counter() - t) / max(1, 2 * (len(lab_keys) + len(unl_keys)))
    pin = tr.device.type == "cuda"
    li = infinite_loader(
        tr.labeled_ds, cfg.batch_labeled, cfg.seed, cfg.num_workers, pin_memory=pin
    )
    ui = infinite_loader(
        tr.unlabeled_ds, cfg.batch_unlabeled, cfg.seed + 7, cfg.num_workers, pin_memory=pin
    )
    return tr, cfg, li, ui, t_embed


def time_profile(profile: str, device: str, warmup: int, iters: int) -> dict[str, Any]:
    """Median seconds per training iteration of ``profile`` on the demo stack (in this process).

    The timed loop is the trainer's own: its data loaders (workers, pinned memory as the profile
    says) and ``train_step``, so a starving data pipeline shows in the time.
    """
    import torch

    from .core.device import peak_rss_mb

    tr, cfg, li, ui, t_embed = profile_trainer(profile, device)
    dev = tr.device
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, data_times, losses = [], [], []
    for i in range(warmup + iters):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        lb, ub = next(li), next(ui)  # the batch is part of the iteration (workers hide it on GPU)
        t_data = time.perf_counter() - t
        logs = tr.train_step(lb, ub)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
            data_times.append(t_data)
        losses.append(round(logs["loss"], 5))
    return {
        "s_per_iteration": statistics.median(times),
        "s_per_iteration_all": [round(v, 4) for v in times],
        "data_s_per_iteration": statistics.median(data_times),
        "losses": losses,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_vram_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if cuda else None,
        "batch": [cfg.batch_labeled, cfg.batch_unlabeled],
        "size": cfg.unet_size,
        "fm_size": tr.S,
        "foundation": cfg.foundation,
        "precision": tr.precision,
        "settings": {
            k: getattr(cfg, k)
            for k in ("channels_last", "fused_attention", "compile", "num_workers")
        },
        "embed_s_per_slice": t_embed,
        "unet_features": list(cfg.unet_features),
    }


def open_dock(image, labels, name: str):
    """A hidden napari viewer with ``image`` and ``labels`` and the SynFoC dock, its background
    warm-up finished (so a stall measured next is training's own): ``(viewer, image layer,
    labels layer, dock, QApplication)``."""
    import napari
    from qtpy.QtWidgets import QApplication

    from .app.process_tweaks import warm_up_threads

    viewer = napari.Viewer(show=False)
    il = viewer.add_image(image, name=name)
    ll = viewer.add_labels(labels, name="labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    app = QApplication.instance()
    for t in warm_up_threads():
        while t.is_alive():
            app.processEvents()
            t.join(0.01)
    return viewer, il, ll, widget, app


def measure_overlay(
    n_slices: int = 20,
    size: int = 256,
    n_labeled: int = 3,
    iterations: int = 60,
) -> dict[str, Any]:
    """Time from ``widget.train()`` to the first prediction layers, and the longest UI stall.

    Runs napari in this process (needs a display: Xvfb is fine) through the widget's own
    scripting API, exactly the code path a user's click takes, with the dock's default settings
    (profile "auto", resolved by :func:`~napari_synfoc.config.resolve_config`).
    """
    from .widgets.ui_latency import EventLoopProbe

    img, labels, _ = demo_task(n_slices, size, n_labeled)
    viewer, il, ll, widget, app = open_dock(img, labels, "stack")
    probe = EventLoopProbe(10, stall_ms=150)
    probe.start()
    t0 = time.perf_counter()
    widget.train(image_layer=il, labels_layer=ll, iterations=iterations)
    first = None
    deadline = t0 + 600
    while time.perf_counter() < deadline:
        app.processEvents()
        if "MedSAM prediction" in viewer.layers and "U-Net prediction" in viewer.layers:
            first = time.perf_counter() - t0
            break
        if not widget.is_training:
            break
        time.sleep(0.002)
    # keep training a little longer to see stalls while training runs after the overlay
    t_more = time.perf_counter() + 5
    while widget.is_training and time.perf_counter() < t_more:
        app.processEvents()
        time.sleep(0.002)
    widget.stop()
    widget.wait(120)
    probe.stop()
    out = {
        "first_overlay_s": first,
        "ui_max_gap_ms": round(max(probe.gaps_ms), 1) if probe.gaps_ms else None,
        "ui_p99_gap_ms": round(probe.percentile(99), 1) if probe.gaps_ms else None,
        "stalls": [
            {
                "gap_ms": g,
                "worker": "; ".join(v[-160:] for k, v in th.items() if "MainThread" not in k),
            }
            for g, th in probe.stalls[:10]
        ],
        "n_slices": n_slices,
        "size": size,
        "n_labeled": n_labeled,
        "profile": "auto (the dock's default)",
    }
    viewer.close()
    return out


def run_worker(
    args: list[str], timeout: float, xvfb: bool = False, module: str = WORKER_MODULE
) -> dict[str, Any]:
    """Run ``python -m module *args`` and return the last JSON line it printed."""
    cmd = [sys.executable, "-m", module, *args]
    if xvfb and not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", *cmd]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(
        f"benchmark worker {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )


def timing_plan(profile: str, quick: bool, device_type: str) -> tuple[int, int]:
    """(warm-up, timed) iterations of one profile: fewer with ``quick``, more on a GPU, and
    the slow faithful profile on a CPU only 1 + 2."""
    warm, iters = (3, 8) if quick else (5, 20)
    if device_type == "cuda":
        warm, iters = (10, 30) if quick else (15, 60)
    if profile.startswith("faithful") and device_type == "cpu":
        warm, iters = 1, 2
    return warm, iters


def time_profiles(profiles: dict[str, str], device, quick: bool, ref: float) -> dict[str, Any]:
    """Each profile (name -> :func:`parse_profile_spec` spec) timed in its own worker process;
    a failing one is recorded, not fatal."""
    results: dict[str, Any] = {}
    for p, spec in profiles.items():
        warm, iters = timing_plan(p, quick, device.type)
        cmd = ["--worker", spec, "--device", str(device)]
        try:
            r = run_worker([*cmd, "--warmup", str(warm), "--iters", str(iters)], 1800)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"{p}: FAILED: {exc}", file=sys.stderr)
            results[p] = {"error": str(exc)[-2000:]}
            continue
        r["x_reference"] = r["s_per_iteration"] / ref
        results[p] = r
        print(
            f"{p}: {r['s_per_iteration']:.4f} s/it ({r['x_reference']:.2f}x reference), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, VRAM {r['peak_vram_mb']} MB",
            file=sys.stderr,
        )
    return results


def run_check(args: argparse.Namespace, profiles: dict[str, str] | None = None) -> dict:
    """The reference, the profiles' iteration times and the overlay: the result dict.

    ``args``: ``device``, ``quick``, ``profiles`` (comma list or None), ``no_overlay``;
    ``profiles`` (name -> spec) replaces the choice made from ``args``.
    """
    import torch

    from .core.device import pick_device
    from .io.results import device_name

    dev = pick_device(args.device)
    if profiles is None:
        if args.profiles:
            profiles = tuple(p.strip() for p in args.profiles.split(","))
        elif args.quick:
            profiles = QUICK_PROFILES
        else:
            profiles = GPU_PROFILES if dev.type == "cuda" else CPU_PROFILES
        profiles = {p: p for p in profiles}
    t_all = time.perf_counter()
    ref = reference_encoder_seconds(str(dev))
    print(f"reference: LiteMedSAM encoder forward {ref:.3f} s", file=sys.stderr)
    out: dict[str, Any] = {
        "device": device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "reference_encoder_s": ref,
        "profiles": time_profiles(profiles, dev, args.quick, ref),
    }
    if args.no_overlay:
        out["first_overlay_s"] = out["ui_max_gap_ms"] = None
    else:
        overlay = run_worker(["--overlay"], 900, xvfb=True)
        print(
            f"first overlay {overlay['first_overlay_s']} s, "
            f"UI max gap {overlay['ui_max_gap_ms']} ms",
            file=sys.stderr,
        )
        out.update(
            first_overlay_s=overlay["first_overlay_s"],
            ui_max_gap_ms=overlay["ui_max_gap_ms"],
            overlay=overlay,
        )
    out.update(quick=bool(args.quick), wall_s=time.perf_counter() - t_all)
    return out


def command_line(prog: str, args: argparse.Namespace, *flags: str) -> str:
    """The command that reproduces a run: ``prog``, the options that were set, ``--out``."""
    return (
        prog
        + (" --quick" if args.quick else "")
        + (f" --profiles {args.profiles}" if args.profiles else "")
        + (" --no-overlay" if args.no_overlay else "")
        + "".join(f" {f}" for f in flags)
        + f" --out {args.out}"
    )


def summary(out: dict) -> str:
    """The one JSON line printed at the end of a check."""
    return json.dumps(
        {k: out[k] for k in ("reference_encoder_s", "first_overlay_s", "ui_max_gap_ms")}
    )


def main(args: argparse.Namespace) -> int:
    """The ``bench`` subcommand: run the check, write ``--out`` (JSON, atomically)."""
    from .io.results import write_json_atomic

    out = run_check(args)
    out["command"] = command_line("napari-synfoc bench", args)
    write_json_atomic(args.out, out)
    print(summary(out))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``napari-synfoc bench`` (shared with ``benchmarks.speed``)."""
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument(
        "--quick", action="store_true", help="finish in under two minutes on a 2-core CPU"
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--profiles",
        default=None,
        help="comma-separated profiles to time; settings as name+key=value "
        "(gpu-fast+compile=true)",
    )
    p.add_argument(
        "--no-overlay",
        action="store_true",
        help="skip the napari measurements (no display/napari)",
    )


def worker_parser() -> argparse.ArgumentParser:
    """The options of a worker process (one profile, or the overlay)."""
    p = argparse.ArgumentParser()
    p.add_argument("--worker", default=None)
    p.add_argument("--overlay", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    return p


def _worker_main(argv: list[str]) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    a = worker_parser().parse_args(argv)
    if a.overlay:
        res = measure_overlay()
    else:
        res = time_profile(a.worker, a.device, a.warmup, a.iters)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
