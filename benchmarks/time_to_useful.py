"""Time to a useful overlay: what a user sees in the first minutes after pressing Train.

``python -m benchmarks.time_to_useful --out DIR [--quick] [--stacks S40,S200,CT] [--seconds N]``

Qt-free; goes through :func:`napari_synfoc.core.interactive.train_on_stack` with the dock's
defaults for the device (``resolve_config("auto", device)``, the dock's iteration count, the
slice in view = the middle slice).  Stacks (shared docs, benchmarks.md §5):

- ``S40``: the first 8 FAZ train images of each site (site order), slices 0, 8, 16 labelled;
- ``S200``: the first 40 of each site, slices 0, 40, 80 labelled;
- ``CT``: a generated 512×512×120 int16 volume (HU -1000..1500, an organ), 3 slices labelled
  (time and memory only: its quality numbers mean little).

At every prediction refresh it records the seconds since Train, the slices holding both models'
predictions, Dice on the unlabelled slices (foundation, U-Net, ensemble), M_d's precision and
recall for the ensemble's error pixels, the AUROC of the continuous disagreement map for those
pixels, and the RSS.  Writes ``interactive.json`` (atomically), ``interactive.md`` and
``interactive.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_synfoc.core.device import peak_rss_mb
from napari_synfoc.io.results import write_json_atomic

from .common import FAZ_ROOT, SHARED_DATA, bench_parser, faz_root

STACKS = {
    "S40": {"per_site": 8, "labeled": [0, 8, 16]},
    "S200": {"per_site": 40, "labeled": [0, 40, 80]},
    "CT": {"labeled": [40, 60, 80]},
    # the real CT (ct_aorta_totalseg, 164 slices; aorta and T12 as two classes), labelled on 3
    # slices a user would pick along the aorta
    "CTAORTA": {"labeled": [20, 80, 140]},
}
# issue 22: coverage goals in r (one torch fp32 encoder forward of the same run); the CT's
# "both models" limit is 100 r scaled to its slice count (164 / 200)
GOALS_R = {
    "unet_everywhere_r": {"S200": 20.0, "CTAORTA": 20.0},
    "all_covered_r": {"S200": 100.0, "CTAORTA": 100.0 * 164 / 200},
}
GOALS = {  # benchmarks.md §5 / issue 12 (seconds, MB)
    "first_overlay_s": {"S40": 10.0, "S200": 30.0, "CT": 30.0},
    "all_covered_s": {"S200": 180.0},
    "peak_rss_mb": {"CT": 4096.0},
    "ensemble_dice_120s": {"S40": 0.80},
    "ensemble_dice_600s": {"S40": 0.85},
}


# ----------------------------------------------------------------------------- stacks
def faz_stack(per_site: int, root: Path = FAZ_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_site`` train images of each FAZ site (sorted names, site order).

    A site with fewer train images (Domain5 holds 30) gives all it has; the shortfall comes from
    the next train images of the largest site, placed after that site's block (site order
    kept).  Returns the grey image stack (Z, 256, 256) uint8 (the PNGs' channels are identical)
    and the labels (Z, 256, 256) uint8 (mask > 0).
    """
    from PIL import Image

    dirs = [Path(root) / f"Domain{site}" / "train" for site in range(1, 6)]
    names = [sorted(p.name for p in (d / "imgs").glob("*.png")) for d in dirs]
    if not all(names):
        raise FileNotFoundError(f"FAZ train images missing under {root} (Domain1..5/train/imgs)")
    take = [min(per_site, len(n)) for n in names]
    largest = max(range(5), key=lambda i: len(names[i]))
    take[largest] = min(len(names[largest]), take[largest] + 5 * per_site - sum(take))
    imgs, labs = [], []
    for d, n, k in zip(dirs, names, take, strict=True):
        for name in n[:k]:
            img = np.asarray(Image.open(d / "imgs" / name))
            lab = np.asarray(Image.open(d / "mask" / name))
            imgs.append(img[..., 0] if img.ndim == 3 else img)
            labs.append(((lab[..., 0] if lab.ndim == 3 else lab) > 0).astype(np.uint8))
    return np.stack(imgs), np.stack(labs)


def faz_composition(per_site: int, root: Path = FAZ_ROOT) -> list[int]:
    """How many images each site gives to :func:`faz_stack` (see there)."""
    counts = [
        len(list((Path(root) / f"Domain{s}" / "train" / "imgs").glob("*.png")))
        for s in range(1, 6)
    ]
    take = [min(per_site, c) for c in counts]
    largest = max(range(5), key=lambda i: counts[i])
    take[largest] = min(counts[largest], take[largest] + 5 * per_site - sum(take))
    return take


def ct_stack(z: int = 120, size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic abdominal CT (Z, size, size) int16 in HU with an organ labelled everywhere.

    Air -1000 outside an elliptic body of soft tissue (~40 HU), two lungs (~-850 HU) in the upper
    slices, a spine (~700-1500 HU), and an ellipsoidal organ (~200 HU) spanning about z 25..95.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.52) / 0.32) ** 2 <= 1.0
    spine = ((xx - 0.5) / 0.06) ** 2 + ((yy - 0.74) / 0.06) ** 2 <= 1.0
    img = np.empty((z, size, size), np.int16)
    lab = np.zeros((z, size, size), np.uint8)
    for k in range(z):
        t = k / max(z - 1, 1)
        sl = np.full((size, size), -1000.0, np.float32)
        sl[body] = 40.0
        if t < 0.3:
            for cx in (0.33, 0.67):
                lung = ((xx - cx) / 0.13) ** 2 + ((yy - 0.48) / 0.2) ** 2 <= 1.0
                sl[lung & body] = -850.0
        r = 1.0 - ((t - 0.5) / 0.3) ** 2  # organ radius factor along z (z ~ 0.2..0.8)
        if r > 0:
            organ = ((xx - 0.4) / (0.16 * np.sqrt(r))) ** 2 + (
                (yy - 0.5) / (0.12 * np.sqrt(r))
            ) ** 2 <= 1.0
            sl[organ] = 200.0
            lab[k][organ] = 1
        sl[spine] = 700.0 + 800.0 * (((xx - 0.5) ** 2 + (yy - 0.74) ** 2) < 0.03**2)[spine]
        sl += rng.normal(0.0, 20.0, sl.shape).astype(np.float32)
        img[k] = np.clip(sl, -1024, 1500).astype(np.int16)
    return img, lab


def build_stack(name: str, data=None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(image, labels, labelled slices) of a named benchmark stack (FAZ under ``data``)."""
    if name not in STACKS:
        raise ValueError(f"unknown stack {name!r}; choose from {sorted(STACKS)}")
    spec = STACKS[name]
    if name == "CT":
        img, lab = ct_stack()
    elif name == "CTAORTA":
        from .effort import named_volume

        vol = named_volume("CT", data if data is not None else SHARED_DATA)
        img, lab = vol.image, vol.ref
    else:
        img, lab = faz_stack(spec["per_site"], faz_root(data))
    return img, lab, list(spec["labeled"])


# ----------------------------------------------------------------------------- metrics
def foreground(prob: np.ndarray) -> np.ndarray:
    """Foreground mask of (Z, K, Y, X) class probabilities: background probability < 0.5."""
    return np.asarray(prob)[:, 0] < 0.5


def slice_dice(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Foreground Dice of each (Y, X) slice of boolean (Z, Y, X) masks; 1.0 when both empty."""
    p = np.asarray(pred, bool).reshape(len(pred), -1)
    g = np.asarray(gt, bool).reshape(len(gt), -1)
    inter = (p & g).sum(1).astype(np.float64)
    denom = p.sum(1) + g.sum(1)
    return np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))


def error_detection(
    flagged: np.ndarray, score: np.ndarray, ens_fg: np.ndarray, gt: np.ndarray
) -> dict[str, float | None]:
    """How M_d (``flagged``) and a continuous ``score`` find the ensemble's error pixels.

    Errors: pixels where the ensemble's foreground differs from the ground truth.  Precision:
    the flagged pixels that are errors (None when nothing is flagged); recall: the errors that
    are flagged (None when there is no error); AUROC of ``score`` for the errors.
    """
    from napari_synfoc.core.review import auroc

    err = np.asarray(ens_fg, bool) != np.asarray(gt, bool)
    f = np.asarray(flagged, bool)
    n_flag, n_err, hit = int(f.sum()), int(err.sum()), int((f & err).sum())
    return {
        "md_precision": hit / n_flag if n_flag else None,
        "md_recall": hit / n_err if n_err else None,
        "auroc": auroc(score, err),
        "flagged_fraction": n_flag / f.size if f.size else 0.0,
        "error_fraction": n_err / err.size if err.size else 0.0,
    }


def evaluate(fm: np.ndarray, un: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """Dice of the foundation, the U-Net and their mean, and M_d's error detection.

    ``fm``, ``un``: (Z, K, Y, X) probabilities of the slices to score; ``gt``: (Z, Y, X).
    M_d is the dock's default divergence rule; the continuous map is the dock's heat map.
    """
    from napari_synfoc.core.review import DEFAULT_DIVERGENCE_RULE, divergence_map, review_maps

    gt_fg = np.asarray(gt) > 0
    ens = (np.asarray(fm, np.float32) + np.asarray(un, np.float32)) * 0.5
    ens_fg = foreground(ens)
    maps = review_maps(fm, un)
    md = divergence_map(fm, un, DEFAULT_DIVERGENCE_RULE)
    out: dict[str, Any] = {
        "dice_fm": float(slice_dice(foreground(fm), gt_fg).mean()),
        "dice_unet": float(slice_dice(foreground(un), gt_fg).mean()),
        "dice_ensemble": float(slice_dice(ens_fg, gt_fg).mean()),
        "fm_empty_slices": int((~foreground(fm).reshape(len(fm), -1).any(1)).sum()),
    }
    out.update(error_detection(md, maps.heat, ens_fg, gt_fg))
    return out


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux /proc; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="utf-8").split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


# ----------------------------------------------------------------------------- one run
def dock_config(
    device: str = "auto",
    iterations: int | None = None,
    profile: str = "auto",
    strategy: str = "synfoc",
):
    """The config the dock builds for ``device`` by default (``resolve_config``), with the
    dock's Strategy choice; ``iterations`` None: the profile's run length, as the dock's spin box
    (``config.run_iterations``)."""
    from napari_synfoc.config import (
        default_profile_for,
        resolve_config,
        resolve_device,
        run_iterations,
    )

    if iterations is None:
        name = default_profile_for(resolve_device(device)) if profile == "auto" else profile
        iterations = run_iterations(name)
    return resolve_config(
        profile, device, None, {"iterations": int(iterations), "strategy": strategy}
    )


def run_stack(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    labeled: list[int],
    cfg,
    *,
    seconds: float,
    view_slice: int | None = None,
    quality: bool = True,
    embed_cache_dir: str | Path | None = None,
    log=print,
) -> dict[str, Any]:
    """Train on one stack through ``train_on_stack`` for at most ``seconds``; a record per refresh.

    The clock starts when Train would be pressed (before the task is built) and excludes the
    benchmark's own scoring between events (training waits while it scores).
    """
    from napari_synfoc.core.events import Done, Encoding, Failed, Predictions, Step
    from napari_synfoc.core.interactive import StackTask, train_on_stack

    z = image.shape[0]
    view = z // 2 if view_slice is None else int(view_slice)
    unl = np.array([i for i in range(z) if i not in set(labeled)])
    k = max(2, int(labels.max()) + 1)
    fm_full = un_full = None
    have = np.zeros(z, bool)
    have_unet = np.zeros(z, bool)
    records: list[dict[str, Any]] = []
    paused = 0.0
    t0 = time.perf_counter()

    def now() -> float:
        return time.perf_counter() - t0 - paused

    from napari_synfoc.core.intensity import CT_WINDOWS, suggested_window

    ct = suggested_window(image)  # the dock's intensity choice: a CT starts from soft tissue
    task = StackTask(
        image=image, labels=labels, labeled_slices=list(labeled),
        intensity_window=CT_WINDOWS[ct] if ct else None,
    )  # fmt: skip
    stop = lambda: now() > seconds  # noqa: E731
    first_overlay = all_covered = unet_everywhere = None
    last_step = None
    encode_done = (0, 0)
    end = {"outcome": "running"}
    for ev in train_on_stack(
        task, cfg, should_stop=stop, view_slice=view, embed_cache_dir=embed_cache_dir
    ):
        if isinstance(ev, Step):
            last_step = ev
        elif isinstance(ev, Encoding):
            encode_done = (ev.done, ev.total)
        elif isinstance(ev, Predictions):
            t_ev = now()
            ts = time.perf_counter()
            if fm_full is None:
                shape = (z, ev.fm_prob.shape[1], *ev.fm_prob.shape[2:])
                fm_full = np.zeros(shape, np.float32)
                un_full = np.zeros(shape, np.float32)
            have[ev.scatter_into(fm_full, un_full)] = True
            have_unet[ev.covered()] = True
            if unet_everywhere is None and have_unet.all():
                unet_everywhere = t_ev
            if first_overlay is None and have[view]:
                first_overlay = t_ev
            if all_covered is None and have.all():
                all_covered = t_ev
            rec: dict[str, Any] = {
                "seconds": round(t_ev, 2),
                "iteration": ev.iteration,
                "slices_refreshed": len(ev.covered()),
                "slices_with_both": int(have.sum()),
                "slices_with_unet": int(have_unet.sum()),
                "encoded": list(encode_done),
                "rss_mb": round(rss_mb(), 1),
            }
            if quality:
                sel = unl[have[unl]]
                if len(sel):
                    rec.update(evaluate(fm_full[sel], un_full[sel], labels[sel]))
                rec["scored_slices"] = len(sel)
            records.append(rec)
            paused += time.perf_counter() - ts
            q = (
                f" ens {rec['dice_ensemble']:.3f} fm {rec['dice_fm']:.3f}"
                f" un {rec['dice_unet']:.3f}"
                if "dice_ensemble" in rec
                else ""
            )
            log(
                f"[{name}] {t_ev:7.1f}s it {ev.iteration:4d} slices {rec['slices_with_both']}/{z}"
                f"{q}"
            )
        elif isinstance(ev, Done):
            end = {"outcome": "done", "iteration": ev.iteration}
        elif isinstance(ev, Failed):
            end = {"outcome": "failed", "message": ev.message, "iteration": ev.iteration}
            log(f"[{name}] FAILED: {ev.message}")
        elif type(ev).__name__ == "Cancelled":
            end = {"outcome": "stopped at --seconds", "iteration": ev.iteration}
    return {
        "stack": name,
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "labeled_slices": list(labeled),
        "view_slice": view,
        "first_overlay_s": None if first_overlay is None else round(first_overlay, 2),
        "all_covered_s": None if all_covered is None else round(all_covered, 2),
        "unet_everywhere_s": None if unet_everywhere is None else round(unet_everywhere, 2),
        "wall_s": round(now(), 2),
        "scoring_overhead_s": round(paused, 2),
        "peak_rss_mb_process": round(peak_rss_mb(), 1),
        "max_rss_mb_sampled": round(max([r["rss_mb"] for r in records], default=rss_mb()), 1),
        "last_iteration": None if last_step is None else last_step.iteration + 1,
        "last_step_s": None if last_step is None else round(last_step.seconds, 3),
        "quality_scored": quality,
        "num_classes": k,
        **end,
        "refreshes": records,
    }


def value_at(records: list[dict[str, Any]], key: str, seconds: float) -> float | None:
    """``key`` at the last refresh at or before ``seconds`` (None when none yet)."""
    vals = [r[key] for r in records if r["seconds"] <= seconds and r.get(key) is not None]
    return vals[-1] if vals else None


def judge(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each measurable goal: figure, limit, met/missed."""
    out = []
    for goal, per in GOALS.items():
        for stack, limit in per.items():
            r = results.get(stack)
            if r is None:
                continue
            if goal == "peak_rss_mb":
                # the process peak (ru_maxrss): conservative when stacks share a process
                val = max(r["peak_rss_mb_process"], r["max_rss_mb_sampled"])
                ok = val <= limit
            elif goal.startswith("ensemble_dice"):
                t = 120.0 if goal.endswith("120s") else 600.0
                val = value_at(r["refreshes"], "dice_ensemble", t)
                ok = val is not None and val >= limit
                if t > r["wall_s"] + 1e-6 and ok is False:
                    ok = None  # the run was shorter than the goal's time point
            else:
                val = r[goal]
                ok = val is not None and val <= limit
            out.append({"goal": goal, "stack": stack, "value": val, "limit": limit, "met": ok})
    for goal, per in GOALS_R.items():
        for stack, limit in per.items():
            r = results.get(stack)
            if r is None or not r.get("reference_s"):
                continue
            secs = r[goal[: -len("_r")] + "_s"]
            val = None if secs is None else round(secs / r["reference_s"], 1)
            out.append(
                {"goal": goal, "stack": stack, "value": val, "limit": round(limit, 1),
                 "met": val is not None and val <= limit}
            )  # fmt: skip
    return out


# ----------------------------------------------------------------------------- reports
def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(data: dict[str, Any]) -> str:
    """The summary table, the goals and each stack's refreshes as markdown."""
    lines = [
        "# Interactive benchmark",
        "",
        f"Command: `{data['command']}`  ",
        f"Machine: {data['machine']}  ",
        f"Load average at start / end: {data['loadavg_start']} / {data['loadavg_end']} "
        "(other work shared the CPU: timings are noisy).  ",
        f"Reference encoder forward (fp32, idle {data.get('reference_encoder_idle_s')} s): "
        f"{data.get('reference_encoder_s_start')} s at start, "
        f"{data.get('reference_encoder_s_end')} s at end; torch threads "
        f"{data.get('torch_threads')}.",
        "",
        "| stack | slices | first overlay s | U-Net on all s | both on all s | max RSS MB | "
        "last iteration | ens. Dice @120 s | ens. Dice @end | M_d precision @end | AUROC @end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in data["stacks"].items():
        last = r["refreshes"][-1] if r["refreshes"] else {}
        lines.append(
            f"| {name} | {r['shape'][0]} | {_fmt(r['first_overlay_s'], 1)} | "
            f"{_fmt(r.get('unet_everywhere_s'), 1)} | {_fmt(r['all_covered_s'], 1)} | "
            f"{_fmt(r['max_rss_mb_sampled'], 0)} | "
            f"{_fmt(r['last_iteration'])} | "
            f"{_fmt(value_at(r['refreshes'], 'dice_ensemble', 120.0))} | "
            f"{_fmt(last.get('dice_ensemble'))} | {_fmt(last.get('md_precision'))} | "
            f"{_fmt(last.get('auroc'))} |"
        )
    lines += [
        "",
        "## Goals",
        "",
        "| goal | stack | value | limit | met |",
        "|---|---|---|---|---|",
    ]
    for g in data["goals"]:
        met = {True: "met", False: "MISSED", None: "not reached (run too short)"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['stack']} | {_fmt(g['value'])} | {g['limit']} | {met} |")
    for name, r in data["stacks"].items():
        lines += [
            "",
            f"## {name}: every refresh",
            "",
            "| s | iteration | slices with U-Net | slices with both | Dice FM | Dice U-Net | "
            "Dice ens. | M_d precision | M_d recall | AUROC | RSS MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in r["refreshes"]:
            lines.append(
                f"| {x['seconds']:.1f} | {x['iteration']} | {x.get('slices_with_unet', '–')} | "
                f"{x['slices_with_both']} | "
                f"{_fmt(x.get('dice_fm'))} | {_fmt(x.get('dice_unet'))} | "
                f"{_fmt(x.get('dice_ensemble'))} | {_fmt(x.get('md_precision'))} | "
                f"{_fmt(x.get('md_recall'))} | {_fmt(x.get('auroc'))} | {x['rss_mb']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Dice (three models) and M_d precision against seconds, one colour per stack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    colours = {"S40": "tab:blue", "S200": "tab:orange", "CT": "tab:green", "CTAORTA": "tab:red"}
    for name, r in data["stacks"].items():
        rs = [x for x in r["refreshes"] if "dice_ensemble" in x]
        if not rs or not r["quality_scored"]:
            continue
        t = [x["seconds"] for x in rs]
        c = colours.get(name, None)
        a.plot(t, [x["dice_ensemble"] for x in rs], "-o", color=c, ms=3, label=f"{name} ensemble")
        a.plot(t, [x["dice_fm"] for x in rs], "--", color=c, alpha=0.6, label=f"{name} foundation")
        a.plot(t, [x["dice_unet"] for x in rs], ":", color=c, alpha=0.8, label=f"{name} U-Net")
        pr = [(x["seconds"], x["md_precision"]) for x in rs if x.get("md_precision") is not None]
        if pr:
            b.plot(*zip(*pr, strict=True), "-o", color=c, ms=3, label=name)
    a.set(xlabel="seconds since Train", ylabel="Dice, unlabelled slices", ylim=(0, 1))
    b.set(xlabel="seconds since Train", ylabel="M_d precision (ensemble errors)", ylim=(0, 1))
    a.axhline(0.80, color="grey", lw=0.5)
    a.axhline(0.85, color="grey", lw=0.5)
    b.axhline(0.5, color="grey", lw=0.5)
    for ax in (a, b):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU cores, {platform.system()} (CPU run)"


# ----------------------------------------------------------------------------- CLI
def parser() -> argparse.ArgumentParser:
    p = bench_parser(
        "python -m benchmarks.time_to_useful",
        "Time to a useful overlay through the dock's code path (benchmarks.md §5).",
        quick_help="S40 alone, under 10 minutes",
    )
    p.add_argument(
        "--stacks", default="S40,S200,CT",
        help="comma list of S40, S200, CT (generated), CTAORTA (the real CT)",
    )  # fmt: skip
    p.add_argument("--seconds", type=float, default=None,
                   help="training time per stack (default 600; --quick 420)")  # fmt: skip
    p.add_argument("--iterations", type=int, default=None,
                   help="iterations per run (default: the dock's run length)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--profile", default="auto", help="config profile (the dock's: auto)")
    p.add_argument("--strategy", default="synfoc",
                   help="synfoc, semisam+, ifl or uncol (the dock's Strategy)")  # fmt: skip
    p.add_argument("--set", dest="settings", default="",
                   help="config settings over the profile's, '+'-joined key=value pairs, "
                   "e.g. 'encode_schedule=interleave+unet_first=false'")  # fmt: skip
    p.add_argument("--embed-cache", default=None,
                   help="embedding disk cache folder (default: a fresh temp folder, so the "
                   "first run's encoding is timed)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 when every run finished (goals are reported, not enforced)."""
    args = parser().parse_args(argv)
    stacks = ["S40"] if args.quick else [s.strip() for s in args.stacks.split(",") if s.strip()]
    for s in stacks:
        if s not in STACKS:
            raise SystemExit(f"unknown stack {s!r}: choose from {', '.join(STACKS)}")
    seconds = args.seconds if args.seconds is not None else (420.0 if args.quick else 600.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dock_config(args.device, args.iterations, args.profile, args.strategy)
    if args.settings:
        from napari_synfoc.machine_check import parse_profile_spec

        _, extra = parse_profile_spec("x+" + args.settings)
        cfg = cfg.replace(**extra)
    import torch

    from napari_synfoc.machine_check import reference_encoder_seconds

    data: dict[str, Any] = {
        "command": "python -m benchmarks.time_to_useful " + " ".join(argv or sys.argv[1:]),
        "machine": _machine(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "seconds_per_stack": seconds,
        "config": {k: v for k, v in cfg.to_dict().items()},
        "note": "other processes shared the CPU during the run (see loadavg); timings are noisy",
        "torch_threads": torch.get_num_threads(),
        # one fp32 LiteMedSAM encoder forward (machine_check); 1.45 s on this CPU when idle
        # (shared docs, environment.md): the ratio says how loaded the machine was
        "reference_encoder_s_start": round(reference_encoder_seconds(args.device, 1), 3),
        "reference_encoder_idle_s": 1.45,
        "stacks": {},
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="synfoc-bench-emb-") as tmp:
        for name in stacks:
            img, lab, labeled = build_stack(name, args.data)
            cache = Path(args.embed_cache) / name if args.embed_cache else Path(tmp) / name
            res = run_stack(
                name, img, lab, labeled, cfg, seconds=seconds, quality=name != "CT",
                embed_cache_dir=cache,
            )  # fmt: skip
            if name in ("S40", "S200"):
                res["images_per_site"] = faz_composition(
                    STACKS[name]["per_site"], faz_root(args.data)
                )
            res["reference_s"] = data["reference_encoder_s_start"]
            ok &= res["outcome"] != "failed"
            data["stacks"][name] = res
            data["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
            data["goals"] = judge(data["stacks"])
            write_json_atomic(out / "interactive.json", data)
            del img, lab
    data["reference_encoder_s_end"] = round(reference_encoder_seconds(args.device, 1), 3)
    write_json_atomic(out / "interactive.json", data)
    (out / "interactive.md").write_text(markdown(data), encoding="utf-8")
    plot(data, out / "interactive.png")
    for g in data["goals"]:
        met = "met" if g["met"] else "MISSED" if g["met"] is False else "not reached"
        print(f"{g['goal']:20s} {g['stack']:5s} {_fmt(g['value'])} (limit {g['limit']}): {met}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
