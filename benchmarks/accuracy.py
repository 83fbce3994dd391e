"""``python -m benchmarks.accuracy faz|hitl``: the SynFoC protocol on the five FAZ sites (train on
a few labelled images of one site, test on every site) and the simulated human in the loop
(label slices chosen by disagreement or at random, retrain, measure Dice).

Every row uses the same schedule and seed, and reports the model at the end of the schedule
(never a test-selected checkpoint). Results: ``DIR/results.json``, ``DIR/table.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import add_data_arg, faz_root

DOMAINS = ("Domain1", "Domain2", "Domain3", "Domain4", "Domain5")


@dataclass(frozen=True)
class Schedule:
    """How long and on how much data every row trains."""

    name: str
    profile: str
    iterations: int
    n_labeled: int = 20
    unlabeled_per_domain: int = 0  # 0 = every train image
    test_per_domain: int = 0  # 0 = the whole test split
    hitl_rounds: int = 6
    hitl_iterations: int = 60
    description: str = ""


SCHEDULES = {
    "cpu": Schedule(
        "cpu",
        "cpu-interactive",
        iterations=200,
        unlabeled_per_domain=24,
        test_per_domain=20,
        hitl_rounds=6,
        hitl_iterations=60,
        description=(
            "2-core CPU budget: cpu-interactive profile (frozen LiteMedSAM encoder with cached "
            "embeddings, trained mask decoder, U-Net 16..256 at 128 px, metrics at 256 px, "
            "batch 2+2), 200 iterations; unlabelled pool = the first 24 train images of every "
            "domain (minus the labelled ones); test = the first 20 test images of every domain"
        ),
    ),
    "gpu": Schedule(
        "gpu",
        "gpu-fast",
        iterations=30000,
        unlabeled_per_domain=0,
        test_per_domain=0,
        hitl_rounds=10,
        hitl_iterations=1000,
        description="the paper's schedule on a GPU: 30k iterations, batch 4+4, all data",
    ),
}


# --------------------------------------------------------------------------- §1 protocol
def rows_for(domain: str, ablation_domain: str) -> list[tuple[str, dict[str, Any]]]:
    """(run name, config overrides) for one labelled domain."""
    runs = [("suponly", {"suponly": True}), ("synfoc", {})]
    if domain == ablation_domain:
        runs += [("smc_only", {"use_cdcr": False}), ("cdcr_only", {"use_smc": False})]
    return runs


def _split(data: Path, sched: Schedule, domain: str):
    from napari_synfoc.core.layouts import discover, make_ssl_split

    split = discover(data)
    labeled, unlabeled = make_ssl_split(split, domain, sched.n_labeled)
    if sched.unlabeled_per_domain:
        keep: dict[str, set[str]] = {
            d: {
                s.name
                for s in sorted(split.train[d], key=lambda s: s.name)[: sched.unlabeled_per_domain]
            }
            for d in split.train
        }
        unlabeled = [s for s in unlabeled if s.name in keep[s.domain]]
    test = split.test
    if sched.test_per_domain:
        test = {
            d: sorted(v, key=lambda s: s.name)[: sched.test_per_domain] for d, v in test.items()
        }
    return split, labeled, unlabeled, test


def run_one(
    data: Path,
    sched: Schedule,
    domain: str,
    overrides: dict[str, Any],
    out: Path,
    device: str = "auto",
    seed: int = 1337,
) -> dict[str, Any]:
    """Train one row's run and evaluate its final students on every domain's test split."""
    from napari_synfoc.config import make_config
    from napari_synfoc.core.embeddings import EmbeddingDiskCache, frozen_encoder_id
    from napari_synfoc.core.evaluate import evaluate
    from napari_synfoc.core.events import Failed, Step
    from napari_synfoc.core.trainer import SynFoCTrainer
    from napari_synfoc.io.results import default_cache_dir

    split, labeled, unlabeled, test = _split(data, sched, domain)
    cfg = make_config(
        sched.profile,
        iterations=sched.iterations,
        num_classes=split.num_classes,
        in_channels=split.in_channels,
        phi_classes=split.phi_classes,
        device=device,
        seed=seed,
        **overrides,
    )
    cache_dir = default_cache_dir() / "embeddings"
    t0 = time.perf_counter()
    tr = SynFoCTrainer(cfg, labeled, unlabeled, out_dir=out, embed_cache_dir=cache_dir)
    steps, final = [], None
    for ev in tr.run():
        if isinstance(ev, Step):
            steps.append(
                {
                    "it": ev.iteration,
                    "s": ev.seconds,
                    "alpha": ev.alpha,
                    "conf": ev.confident_fraction,
                    **ev.losses,
                }
            )
        elif not isinstance(ev, Step) and type(ev).__name__ in ("Done", "Failed", "Cancelled"):
            final = ev
    if isinstance(final, Failed):
        raise RuntimeError(f"{domain} {overrides}: {final.message}")
    train_s = time.perf_counter() - t0
    cache = (
        EmbeddingDiskCache(cache_dir, frozen_encoder_id(tr.fm_student, cfg))
        if cfg.freeze_encoder
        else None
    )
    t1 = time.perf_counter()
    res = evaluate(tr.unet, tr.fm_student, test, cfg, tr.device, tr.precision, cache=cache)
    eval_s = time.perf_counter() - t1
    tr.free()
    return {
        "labeled_domain": domain,
        "overrides": overrides,
        "config": cfg.to_dict(),
        "train_s": train_s,
        "eval_s": eval_s,
        "iterations": len(steps),
        "s_per_iteration": float(np.median([s["s"] for s in steps])) if steps else None,
        "n_labeled": len(labeled),
        "n_unlabeled": len(unlabeled),
        "n_test": {d: len(v) for d, v in test.items()},
        "steps": steps[:: max(1, len(steps) // 50)],
        **res,
    }


ROW_ORDER = [
    ("SupOnly U-Net", "suponly", "unet"),
    ("SupOnly foundation (LiteMedSAM)", "suponly", "foundation"),
    ("SynFoC U-Net student", "synfoc", "unet"),
    ("SynFoC foundation student", "synfoc", "foundation"),
    ("SMC only: U-Net", "smc_only", "unet"),
    ("SMC only: foundation", "smc_only", "foundation"),
    ("CDCR only: U-Net", "cdcr_only", "unet"),
    ("CDCR only: foundation", "cdcr_only", "foundation"),
]


def make_table(results: dict[str, dict[str, dict[str, Any]]], domains: list[str]) -> str:
    """Markdown: per row, the cross-domain average Dice per labelled domain, then Avg metrics."""
    lines = [
        "| method | "
        + " | ".join(f"lab. {d}" for d in domains)
        + " | Avg Dice | Jaccard | HD95 (px) | ASD (px) |",
        "|---" * (len(domains) + 5) + "|",
    ]
    for label, run, model in ROW_ORDER:
        cells, avgs = [], []
        for d in domains:
            r = results.get(d, {}).get(run)
            if r is None:
                cells.append("–")
                continue
            a = r["average"][model]
            avgs.append(a)
            cells.append(f"{100 * a['dice']:.2f}")
        if not avgs:
            continue
        m = {k: float(np.mean([a[k] for a in avgs])) for k in ("dice", "jaccard", "hd95", "asd")}
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {100 * m['dice']:.2f} | {100 * m['jaccard']:.2f}"
            + f" | {m['hd95']:.2f} | {m['asd']:.2f} |"
        )
    return "\n".join(lines)


def per_test_domain_table(results, run: str, model: str, labeled_domain: str) -> str:
    r = results[labeled_domain][run]
    lines = ["| test domain | Dice | Jaccard | HD95 (px) | ASD (px) |", "|---|---|---|---|---|"]
    for d, v in r["per_domain"].items():
        m = v[model]
        lines.append(
            f"| {d} | {100 * m['dice']:.2f} | {100 * m['jaccard']:.2f} | {m['hd95']:.2f} | "
            f"{m['asd']:.2f} |"
        )
    a = r["average"][model]
    lines.append(
        f"| average | {100 * a['dice']:.2f} | {100 * a['jaccard']:.2f} | {a['hd95']:.2f} | "
        f"{a['asd']:.2f} |"
    )
    return "\n".join(lines)


def plot_results(results, domains: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    rows = [r for r in ROW_ORDER[:4]]
    w = 0.8 / len(rows)
    x = np.arange(len(domains))
    for i, (label, run, model) in enumerate(rows):
        vals = [
            100 * results[d][run]["average"][model]["dice"]
            if run in results.get(d, {})
            else np.nan
            for d in domains
        ]
        ax.bar(x + (i - (len(rows) - 1) / 2) * w, vals, w, label=label)
    ax.set_xticks(x, [f"labelled: {d}" for d in domains])
    ax.set_ylabel("Dice (%) averaged over the 5 test domains")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("FAZ mixed-domain protocol (20 labelled images of one site)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_faz(args: argparse.Namespace) -> int:
    from napari_synfoc.core.device import pick_device
    from napari_synfoc.io.results import device_name, git_commit, write_json_atomic

    sched = SCHEDULES[args.schedule]
    data = faz_root(args.data)
    domains = args.domains.split(",") if args.domains else list(DOMAINS)
    ablation_domain = domains[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "faz_results.json"
    results: dict[str, dict[str, Any]] = {}
    if res_path.is_file():  # resume: keep finished runs
        results = json.loads(res_path.read_text(encoding="utf-8")).get("runs", {})
    t0 = time.perf_counter()
    for d in domains:
        for run, over in rows_for(d, ablation_domain):
            if run in results.get(d, {}):
                continue
            print(f"[faz] labelled {d}: {run} ...", file=sys.stderr, flush=True)
            r = run_one(data, sched, d, over, out / "models" / d / run, args.device)
            results.setdefault(d, {})[run] = r
            print(
                f"[faz]   U-Net {100 * r['average']['unet']['dice']:.2f}  foundation "
                f"{100 * r['average']['foundation']['dice']:.2f}  "
                f"({r['train_s']:.0f}+{r['eval_s']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            write_json_atomic(res_path, {"runs": results})
    meta = {
        "schedule": sched.__dict__,
        "device": device_name(pick_device(args.device)),
        "commit": git_commit(),
        "wall_s_this_call": time.perf_counter() - t0,
        "command": "python -m benchmarks.accuracy faz "
        f"--schedule {args.schedule} --out {args.out}",
    }
    write_json_atomic(res_path, {"meta": meta, "runs": results})
    done_domains = [d for d in domains if d in results]
    table = make_table(results, done_domains)
    md = [
        f"# FAZ mixed-domain protocol ({sched.name} schedule)",
        "",
        sched.description,
        "",
        f"Device: {meta['device']}. Commit: {meta['commit']}. Command: `{meta['command']}`.",
        "",
        "Each column: Dice (%) of the final model averaged over the five test domains, for one "
        "labelled domain. Avg: mean over the labelled-domain runs.",
        "",
        table,
        "",
    ]
    if ablation_domain in results and "synfoc" in results[ablation_domain]:
        md += [
            f"## Per test domain, labelled {ablation_domain}, SynFoC foundation student",
            "",
            per_test_domain_table(results, "synfoc", "foundation", ablation_domain),
            "",
            f"## Per test domain, labelled {ablation_domain}, SynFoC U-Net student",
            "",
            per_test_domain_table(results, "synfoc", "unet", ablation_domain),
            "",
        ]
    total_train = sum(r["train_s"] + r["eval_s"] for v in results.values() for r in v.values())
    md += [f"Wall time of all runs (train + eval): {total_train / 60:.1f} min.", ""]
    (out / "faz_table.md").write_text("\n".join(md), encoding="utf-8")
    plot_results(results, done_domains, out / "faz_dice.png")
    print("\n".join(md))
    return 0


# --------------------------------------------------------------------------- §2 HITL
def hitl_stack(data: Path, per_domain: int = 8):
    """The §2 stack: the first ``per_domain`` train images of each FAZ domain, in domain order."""
    from napari_synfoc.core.data import load_sample_arrays
    from napari_synfoc.core.layouts import discover

    split = discover(data)
    imgs, gts, names = [], [], []
    for d in sorted(split.train):
        for s in sorted(split.train[d], key=lambda s: s.name)[:per_domain]:
            img, lab = load_sample_arrays(s, split.in_channels)
            imgs.append(img[0])
            gts.append(lab.astype(np.uint8))
            names.append(f"{d}/{s.name}")
    return np.stack(imgs), np.stack(gts), names, split


def run_hitl(args: argparse.Namespace) -> int:
    """Disagreement-ranked vs random slice choice, Dice on the test splits after every round."""
    from napari_synfoc.core.device import pick_device
    from napari_synfoc.core.embeddings import EmbeddingDiskCache, frozen_encoder_id
    from napari_synfoc.core.evaluate import evaluate
    from napari_synfoc.core.interactive import load_trained
    from napari_synfoc.core.review import rank_slices, review_maps
    from napari_synfoc.io.results import (
        default_cache_dir,
        device_name,
        git_commit,
        write_json_atomic,
    )

    from .common import stack_config, train_round

    sched = SCHEDULES[args.schedule]
    data = faz_root(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img, gt, names, split = hitl_stack(data)
    test = {
        d: sorted(v, key=lambda s: s.name)[: sched.test_per_domain or None]
        for d, v in split.test.items()
    }
    cache_dir = default_cache_dir() / "embeddings"
    t0 = time.perf_counter()
    curves: dict[str, list[dict[str, Any]]] = {}
    for strategy in ("disagreement", "random"):
        rng = np.random.default_rng(2024)
        labeled = [0, 1, 2]
        ckpt = None
        curve = []
        for rnd in range(sched.hitl_rounds + 1):
            cfg = stack_config(sched.profile, sched.hitl_iterations, args.device)
            ckpt, last_pred = train_round(
                img, gt, labeled, cfg, ckpt, out / "hitl" / strategy / f"round{rnd}", cache_dir,
                what=f"HITL {strategy} round {rnd}",
            )  # fmt: skip
            cfg_t, unet, fm, dev, precision = load_trained(ckpt, args.device)
            cache = (
                EmbeddingDiskCache(cache_dir, frozen_encoder_id(fm, cfg_t))
                if cfg_t.freeze_encoder
                else None
            )
            res = evaluate(unet, fm, test, cfg_t, dev, precision, cache=cache)
            curve.append(
                {
                    "round": rnd,
                    "n_labeled": len(labeled),
                    "labeled": list(labeled),
                    "unet_dice": res["average"]["unet"]["dice"],
                    "fm_dice": res["average"]["foundation"]["dice"],
                    "per_domain": {
                        d: {m: v[m]["dice"] for m in v} for d, v in res["per_domain"].items()
                    },
                }
            )
            print(
                f"[hitl] {strategy} round {rnd}: {len(labeled)} labelled, U-Net "
                f"{100 * curve[-1]['unet_dice']:.2f}, foundation {100 * curve[-1]['fm_dice']:.2f}",
                file=sys.stderr,
                flush=True,
            )
            if rnd == sched.hitl_rounds:
                break
            if strategy == "disagreement":
                maps = review_maps(last_pred.fm_prob, last_pred.unet_prob)
                nxt = rank_slices(maps.slice_scores, labeled)[0]
            else:
                nxt = int(rng.choice([z for z in range(len(img)) if z not in labeled]))
            labeled.append(int(nxt))
        curves[strategy] = curve
    meta = {
        "schedule": sched.__dict__,
        "device": device_name(pick_device(args.device)),
        "commit": git_commit(),
        "wall_s": time.perf_counter() - t0,
        "stack": names,
        "command": "python -m benchmarks.accuracy hitl "
        f"--schedule {args.schedule} --out {args.out}",
    }
    write_json_atomic(out / "hitl_results.json", {"meta": meta, "curves": curves})
    _plot_hitl(curves, out / "hitl_dice.png")
    md = [
        "# Simulated human in the loop (FAZ, 40-slice stack)",
        "",
        f"Device: {meta['device']}. Commit: {meta['commit']}. "
        f"Wall time: {meta['wall_s'] / 60:.1f} min. "
        f"Command: `{meta['command']}`.",
        "",
        f"{sched.hitl_iterations} iterations per round (warm start), {sched.profile} profile; "
        "Dice averaged over the five test domains.",
        "",
        "| labelled slices | disagreement: U-Net | disagreement: foundation | random: U-Net "
        "| random: foundation |",
        "|---|---|---|---|---|",
    ]
    for a, b in zip(curves["disagreement"], curves["random"], strict=True):
        md.append(
            f"| {a['n_labeled']} | {100 * a['unet_dice']:.2f} | {100 * a['fm_dice']:.2f} | "
            f"{100 * b['unet_dice']:.2f} | {100 * b['fm_dice']:.2f} |"
        )
    md += [
        "",
        "Slices picked (disagreement): "
        + ", ".join(names[z] for z in curves["disagreement"][-1]["labeled"][3:]),
        "",
        "Slices picked (random): "
        + ", ".join(names[z] for z in curves["random"][-1]["labeled"][3:]),
        "",
    ]
    (out / "hitl_table.md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


def _plot_hitl(curves, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for strategy, style in (("disagreement", "-o"), ("random", "--s")):
        c = curves[strategy]
        n = [r["n_labeled"] for r in c]
        ax.plot(n, [100 * r["fm_dice"] for r in c], style, label=f"{strategy}: foundation")
        ax.plot(n, [100 * r["unet_dice"] for r in c], style, alpha=0.6, label=f"{strategy}: U-Net")
    ax.set_xlabel("labelled slices")
    ax.set_ylabel("Dice (%) over the 5 test domains")
    ax.legend(fontsize=8)
    ax.set_title("Which slice to label next: disagreement vs random")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description="FAZ protocol (faz) or the simulated human in the loop (hitl)",
    )
    p.add_argument("which", choices=["faz", "hitl"])
    p.add_argument("--out", required=True)
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="cpu")
    add_data_arg(p)
    p.add_argument("--domains", default=None, help="comma-separated labelled domains")
    p.add_argument("--device", default="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.which == "faz":
        return run_faz(args)
    return run_hitl(args)


if __name__ == "__main__":
    raise SystemExit(main())
