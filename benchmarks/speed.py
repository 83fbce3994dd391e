"""``napari-synfoc bench``: seconds per iteration per profile, peak memory, time to the first
overlay through the widget, and the longest UI stall, all measured in one run.

Each profile is timed in its own subprocess so its peak RSS is its own; the overlay measurement
runs napari in a subprocess (under ``xvfb-run`` when there is no display).
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
from pathlib import Path
from typing import Any

QUICK_PROFILES = ("cpu-interactive",)
CPU_PROFILES = ("cpu-interactive", "faithful")
GPU_PROFILES = ("faithful", "gpu-fast")


def reference_encoder_seconds(device: str = "auto", repeats: int = 5) -> float:
    """One LiteMedSAM encoder forward, batch 1, fp32, 256×256: the median of ``repeats``."""
    import torch

    from ..config import make_config
    from ..core.device import pick_device
    from ..core.foundation import build_foundation

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


def _demo_task(n_slices: int = 20, size: int = 256, n_labeled: int = 3):
    from ..io.sample import make_demo_stack

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


def time_profile(
    profile: str, device: str, warmup: int, iters: int, torch_profile: int = 0
) -> dict[str, Any]:
    """Median seconds per training iteration of ``profile`` on the demo stack (in this process).

    The timed loop is the trainer's own: its data loaders (workers, pinned memory as the profile
    says) and ``train_step``, so a starving data pipeline shows in the time.
    """
    import torch

    from ..config import resolve_config
    from ..core.data import infinite_loader, samples_from_stack
    from ..core.device import peak_rss_mb
    from ..core.trainer import SynFoCTrainer

    name, extra = parse_profile_spec(profile)
    over: dict[str, Any] = {"iterations": 10_000}
    if name in ("faithful", "gpu-fast"):
        if torch.cuda.is_available() and device != "cpu":
            # The paper's model: SAM ViT-B at 512 with q/v LoRA, the U-Net at P = 384 (Prostate,
            # the paper's timed data set). Speed does not depend on the weights, so a random
            # ViT-B checkpoint stands in for medsam_vit_b.pth.
            over.update(
                foundation="medsam-vitb",
                fm_size=512,
                unet_size=384,
                checkpoint=str(_random_vitb_checkpoint()),
            )
        else:
            # The paper's recipe on a CPU (LiteMedSAM with LoRA, paper U-Net): for scale only.
            over.update(
                foundation="litemedsam", precision="fp32" if name == "faithful" else "auto"
            )
    over.update(extra)
    cfg = resolve_config(name, device, None, over)  # as the CLI and the dock build it
    n_slices = 6 if cfg.cache_embeddings else 8
    img, labels, labeled = _demo_task(n_slices, 256, 3)
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
    dev = tr.device
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, data_times, losses = [], [], []
    for i in range(warmup + iters):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        lb, ub = (
            next(li),
            next(ui),
        )  # the batch is part of the iteration (workers hide it on a GPU)
        t_data = time.perf_counter() - t
        logs = tr.train_step(lb, ub)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
            data_times.append(t_data)
        losses.append(round(logs["loss"], 5))
    table = None
    if torch_profile > 0:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as tprofile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with tprofile(activities=acts) as prof:
            for _ in range(torch_profile):
                tr.train_step(next(li), next(ui))
            if cuda:
                torch.cuda.synchronize()
        key = "cuda_time_total" if cuda else "cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=40)
        if cuda:
            table += "\n" + prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    out = {
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
    if table is not None:
        out["torch_profile"] = table
    return out


def _random_vitb_checkpoint() -> Path:
    """A randomly initialised SAM ViT-B state dict saved once to a temp file (for timing)."""
    import tempfile

    import torch

    path = Path(tempfile.gettempdir()) / "synfoc_bench_random_vit_b.pth"
    if not path.is_file():
        from segment_anything import sam_model_registry

        torch.save(sam_model_registry["vit_b"]().state_dict(), path)
    return path


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
    import napari
    from qtpy.QtWidgets import QApplication

    from ..widgets.ui_latency import EventLoopProbe

    img, labels, _ = _demo_task(n_slices, size, n_labeled)
    viewer = napari.Viewer(show=False)
    il = viewer.add_image(img, name="stack")
    ll = viewer.add_labels(labels, name="labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    app = QApplication.instance()
    # The dock warms its imports up in the background as it opens (while a user picks layers);
    # let that finish so the stall measured is the one of training itself.
    from ..widgets.process_tweaks import warm_up_threads

    for t in warm_up_threads():
        while t.is_alive():
            app.processEvents()
            t.join(0.01)
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


def _run_worker(args: list[str], timeout: float, xvfb: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "napari_synfoc.bench.speed", *args]
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


def compare_gpu_profiles(results: dict[str, Any], base: str = "faithful") -> dict[str, Any]:
    """Speed-up of every profile over ``base`` and how close their losses are on the same batches.

    Both runs start from the same seed and draw the same batches, so their per-iteration losses
    differ only by the arithmetic (fp16 vs bf16, fused vs eager attention).
    """
    out: dict[str, Any] = {}
    if base not in results:
        return out
    ref = results[base]
    for name, r in results.items():
        if name == base or "error" in r or "error" in ref:
            continue
        n = min(len(ref.get("losses", [])), len(r.get("losses", [])))
        rel = [abs(a - b) / max(abs(a), 1e-8) for a, b in zip(ref["losses"][:n], r["losses"][:n])]
        out[name] = {
            "speedup_vs_" + base: ref["s_per_iteration"] / r["s_per_iteration"],
            "loss_rel_diff_first": rel[0] if rel else None,
            "loss_rel_diff_max": max(rel) if rel else None,
            "iterations_compared": n,
        }
    return out


def main(args: argparse.Namespace) -> int:
    """The ``bench`` subcommand."""
    import torch

    from ..core.device import pick_device
    from ..io.results import device_name, write_json_atomic

    dev = pick_device(args.device)
    if args.profiles:
        profiles = tuple(p.strip() for p in args.profiles.split(","))
    elif args.quick:
        profiles = QUICK_PROFILES
    else:
        profiles = GPU_PROFILES if dev.type == "cuda" else CPU_PROFILES
    t_all = time.perf_counter()
    ref = reference_encoder_seconds(str(dev))
    print(f"reference: LiteMedSAM encoder forward {ref:.3f} s", file=sys.stderr)
    results: dict[str, Any] = {}
    for p in profiles:
        warm, iters = (3, 8) if args.quick else (5, 20)
        if dev.type == "cuda":
            warm, iters = (10, 30) if args.quick else (15, 60)
        if p.startswith("faithful") and dev.type == "cpu":
            warm, iters = 1, 2
        cmd = ["--worker", p, "--device", str(dev), "--warmup", str(warm), "--iters", str(iters)]
        if args.torch_profile:
            cmd += ["--torch-profile", str(args.torch_profile)]
        try:
            r = _run_worker(cmd, 1800)
        except (
            RuntimeError,
            subprocess.TimeoutExpired,
        ) as exc:  # one failing variant must not lose the rest
            print(f"{p}: FAILED: {exc}", file=sys.stderr)
            results[p] = {"error": str(exc)[-2000:]}
            continue
        r["x_reference"] = r["s_per_iteration"] / ref
        table = r.pop("torch_profile", None)
        if table is not None:
            print(f"--- torch profiler, {p} ---\n{table}", file=sys.stderr)
        results[p] = r
        print(
            f"{p}: {r['s_per_iteration']:.4f} s/it ({r['x_reference']:.2f}x reference), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, VRAM {r['peak_vram_mb']} MB",
            file=sys.stderr,
        )
    out = {
        "device": device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "reference_encoder_s": ref,
        "profiles": results,
    }
    comparison = compare_gpu_profiles(
        results, next((p for p in profiles if p.startswith("faithful")), "faithful")
    )
    if comparison:
        out["comparison"] = comparison
        print(json.dumps(comparison, indent=1), file=sys.stderr)
    if args.no_overlay:
        out["first_overlay_s"] = out["ui_max_gap_ms"] = None
    else:
        overlay = _run_worker(["--overlay"], 900, xvfb=True)
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
    if getattr(args, "foreign_load", False):
        from .foreign_load import measure as foreign_measure

        profile = "tiny" if args.profiles == "tiny" else "cpu-interactive"
        out["foreign_load"] = foreign_measure(profile, 8 if args.quick else 12)
        print(
            f"foreign load: ratio {out['foreign_load']['ratio']:.2f} "
            f"(goal {out['foreign_load']['goal_ratio']})",
            file=sys.stderr,
        )
    out.update(
        quick=bool(args.quick),
        wall_s=time.perf_counter() - t_all,
        command="napari-synfoc bench"
        + (" --quick" if args.quick else "")
        + (f" --profiles {args.profiles}" if args.profiles else "")
        + (" --no-overlay" if args.no_overlay else "")
        + (" --foreign-load" if getattr(args, "foreign_load", False) else "")
        + f" --out {args.out}",
    )
    write_json_atomic(args.out, out)
    print(
        json.dumps(
            {k: out[k] for k in ("reference_encoder_s", "first_overlay_s", "ui_max_gap_ms")}
        )
    )
    return 0


def _worker_main(argv: list[str]) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--worker", default=None)
    p.add_argument("--overlay", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--torch-profile", type=int, default=0)
    a = p.parse_args(argv)
    if a.overlay:
        res = measure_overlay()
    else:
        res = time_profile(a.worker, a.device, a.warmup, a.iters, a.torch_profile)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
