"""Speed benchmark: ``napari-synfoc bench`` (the machine check) plus what only developers need.

``python -m benchmarks.speed --out bench.json [--quick] [--device cuda] [--no-overlay]
[--foreign-load] [--torch-profile N]``

On a GPU the ``faithful`` and ``gpu-fast`` profiles are timed with the paper's model: SAM ViT-B
at 512 with q/v LoRA and the U-Net at P = 384 (Prostate, the paper's timed data set). Speed does
not depend on the weights, so a random ViT-B checkpoint stands in for medsam_vit_b.pth. The two
profiles' losses on the same batches are compared (``comparison``). ``--foreign-load`` also
times the dock's training child with a second CPU-bound torch process running;
``--torch-profile N`` prints torch.profiler tables of N extra iterations per profile.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from napari_synfoc import machine_check as mc

PAPER_GPU_MODEL = {"foundation": "medsam-vitb", "fm_size": 512, "unet_size": 384}


def random_vitb_checkpoint() -> Path:
    """A randomly initialised SAM ViT-B state dict saved once to a temp file (for timing)."""
    import tempfile

    import torch

    path = Path(tempfile.gettempdir()) / "synfoc_bench_random_vit_b.pth"
    if not path.is_file():
        from segment_anything import sam_model_registry

        torch.save(sam_model_registry["vit_b"]().state_dict(), path)
    return path


def paper_gpu_spec(profile: str) -> str:
    """``faithful`` / ``gpu-fast`` on a GPU with the paper's model (see the module docstring);
    any settings already in ``profile`` win."""
    name, extra = mc.parse_profile_spec(profile)
    if name not in ("faithful", "gpu-fast"):
        return profile
    sets = {**PAPER_GPU_MODEL, "checkpoint": str(random_vitb_checkpoint()), **extra}
    return "+".join([name, *(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                             for k, v in sets.items())])  # fmt: skip


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


def torch_profile_table(profile: str, device: str, n: int) -> str:
    """torch.profiler tables (sorted by device time, then CPU time) of ``n`` iterations."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    tr, _, li, ui, _ = mc.profile_trainer(profile, device)
    cuda = tr.device.type == "cuda"
    tr.train_step(next(li), next(ui))  # warm-up outside the profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with tprofile(activities=acts) as prof:
        for _ in range(n):
            tr.train_step(next(li), next(ui))
        if cuda:
            torch.cuda.synchronize()
    key = "cuda_time_total" if cuda else "cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=40)
    if cuda:
        table += "\n" + prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    return table


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__)
    mc.add_arguments(p)
    p.add_argument(
        "--foreign-load",
        action="store_true",
        help="also time the dock's training child with a second CPU-bound torch process "
        "running (iteration ratio and parent stalls)",
    )
    p.add_argument(
        "--torch-profile",
        type=int,
        default=0,
        metavar="N",
        help="print torch.profiler tables of N extra iterations per profile",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from napari_synfoc.core.device import pick_device
    from napari_synfoc.io.results import write_json_atomic

    args = parser().parse_args(argv)
    dev = pick_device(args.device)
    profiles = None
    if dev.type == "cuda":
        if args.profiles:
            names = [p.strip() for p in args.profiles.split(",")]
        else:
            names = list(mc.QUICK_PROFILES if args.quick else mc.GPU_PROFILES)
        profiles = {p: paper_gpu_spec(p) for p in names}
    out = mc.run_check(args, profiles)
    if args.torch_profile:
        for p in out["profiles"]:
            spec = profiles[p] if profiles else p
            table = torch_profile_table(spec, str(dev), args.torch_profile)
            print(f"--- torch profiler, {p} ---\n{table}", file=sys.stderr)
    names = list(out["profiles"])
    comparison = compare_gpu_profiles(
        out["profiles"], next((p for p in names if p.startswith("faithful")), "faithful")
    )
    if comparison:
        out["comparison"] = comparison
        print(json.dumps(comparison, indent=1), file=sys.stderr)
    if args.foreign_load:
        from .foreign_load import measure as foreign_measure

        profile = "tiny" if args.profiles == "tiny" else "cpu-interactive"
        out["foreign_load"] = foreign_measure(profile, 8 if args.quick else 12)
        print(
            f"foreign load: ratio {out['foreign_load']['ratio']:.2f} "
            f"(goal {out['foreign_load']['goal_ratio']})",
            file=sys.stderr,
        )
    flags = [f for f, on in (("--foreign-load", args.foreign_load),) if on]
    if args.torch_profile:
        flags.append(f"--torch-profile {args.torch_profile}")
    out["command"] = mc.command_line("python -m benchmarks.speed", args, *flags)
    write_json_atomic(args.out, out)
    print(mc.summary(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
