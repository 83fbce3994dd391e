"""Simulated human in the loop (benchmarks.md §2): which slice to label next, over seeds.

``python -m benchmarks.hitl --out DIR [--seeds 3] [--rounds R] [--iterations T]``

The S40 stack (the first 8 train images of each FAZ site, in site order) starts with slices
0, 1, 2 labelled.  Each round trains T iterations through the dock's path
(:func:`~napari_synfoc.core.interactive.train_on_stack`, warm start from the previous round),
then a simulated annotator labels the top slice of a strategy with its ground truth:

- ``random``: a uniformly random unlabelled slice;
- ``disagreement``: the highest mean disagreement (``ReviewMaps.slice_scores``), today's ranking;
- ``diverse``: :func:`~napari_synfoc.core.review.acquisition_scores` (disagreement times
  novelty in appearance features).

Round 0 (the 3 first slices) is trained once per seed and shared by the strategies.  After every
round, Dice on the first ``--test-per-domain`` test images of every site (mean over sites) for
the foundation student, the U-Net student and their ensemble (mean probability).  Writes
``hitl.json`` and ``hitl.md`` (per-seed means over rounds, the gain over random and its spread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_synfoc.core.metrics import dice

from .common import add_data_arg, faz_root

STRATEGIES = ("random", "disagreement", "diverse")
START = (0, 1, 2)


def _test_set(split, per_domain: int):
    """{domain: (images (N, C, H, W) float32, masks (N, H, W) bool, keys)}."""
    from napari_synfoc.core.data import load_sample_arrays

    out = {}
    for d in sorted(split.test):
        imgs, gts, keys = [], [], []
        for s in sorted(split.test[d], key=lambda s: s.name)[:per_domain]:
            img, lab = load_sample_arrays(s, split.in_channels)
            imgs.append(img)
            gts.append(lab > 0)
            keys.append(f"test/{d}/{s.name}")
        out[d] = (imgs, np.stack(gts), keys)
    return out


def evaluate_test(checkpoint, test, device: str, cache_dir: Path) -> dict[str, float]:
    """Mean-over-sites Dice of the foundation model, the U-Net and the ensemble."""
    from napari_synfoc.core.embeddings import EmbeddingBank, EmbeddingDiskCache, frozen_encoder_id
    from napari_synfoc.core.inference import predict_probabilities
    from napari_synfoc.core.interactive import load_trained

    cfg, unet, fm, dev, precision = load_trained(checkpoint, device)
    bank = None
    if cfg.freeze_encoder:
        bank = EmbeddingBank(
            fm, dev, precision, EmbeddingDiskCache(cache_dir, frozen_encoder_id(fm, cfg))
        )
    per: dict[str, list[float]] = {"fm": [], "unet": [], "ensemble": []}
    for imgs, gts, keys in test.values():
        fm_p, un_p = predict_probabilities(
            unet,
            fm,
            imgs,
            cfg.unet_size,
            dev,
            precision,
            bank=bank,
            bank_keys=keys if bank is not None else None,
            unet_downsample=cfg.unet_downsample,
        )
        f, u = fm_p[:, 1], un_p[:, 1]
        for name, pred in (("fm", f > 0.5), ("unet", u > 0.5), ("ensemble", (f + u) / 2 > 0.5)):
            per[name].append(float(np.mean([dice(p, g) for p, g in zip(pred, gts, strict=True)])))
    return {k: float(np.mean(v)) for k, v in per.items()}


def pick_next(strategy: str, last_pred, labeled: list[int], feats, rng) -> int:
    """The slice a strategy asks the annotator to label next."""
    from napari_synfoc.core.review import acquisition_scores, rank_slices, review_maps

    if strategy == "random":
        pool = [z for z in range(len(feats)) if z not in labeled]
        return int(rng.choice(pool))
    maps = review_maps(last_pred.fm_prob, last_pred.unet_prob)
    method = "diverse" if strategy == "diverse" else "disagreement"
    scores = acquisition_scores(maps.slice_scores, labeled, feats, method)
    return int(rank_slices(scores, labeled)[0])


def summarise(curves: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per strategy and model: mean Dice over rounds 1..R per seed, and the gain over random."""
    out: dict[str, Any] = {}
    seeds = sorted(curves)
    for strategy in STRATEGIES:
        if not all(strategy in curves[s] for s in seeds):
            continue
        out[strategy] = {}
        for model in ("fm", "unet", "ensemble"):
            per_seed = [float(np.mean([r[model] for r in curves[s][strategy][1:]])) for s in seeds]
            gain = [
                p - float(np.mean([r[model] for r in curves[s]["random"][1:]]))
                for p, s in zip(per_seed, seeds, strict=True)
            ]
            out[strategy][model] = {
                "mean_over_rounds_per_seed": per_seed,
                "gain_over_random_per_seed": gain,
                "gain_mean": float(np.mean(gain)),
                "gain_min": float(np.min(gain)),
                "gain_max": float(np.max(gain)),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hitl", description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=20, help="T, iterations per round")
    ap.add_argument("--test-per-domain", type=int, default=10)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--profile", default="cpu-interactive")
    ap.add_argument("--device", default="cpu")
    add_data_arg(ap)
    args = ap.parse_args(argv)
    from napari_synfoc.core.device import pick_device
    from napari_synfoc.core.layouts import discover
    from napari_synfoc.core.review import slice_features
    from napari_synfoc.io.results import (
        default_cache_dir,
        device_name,
        git_commit,
        write_json_atomic,
    )

    from .accuracy import hitl_stack
    from .common import stack_config, train_round

    strategies = [s for s in args.strategies.split(",") if s]
    if "random" not in strategies:
        ap.error("the comparison needs the 'random' strategy")
    data = faz_root(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    img, gt, names, _ = hitl_stack(data)
    gt = (gt > 0).astype(np.uint8)
    test = _test_set(discover(data), args.test_per_domain)
    feats = slice_features(img)
    cache_dir = default_cache_dir() / "embeddings"
    t0 = time.perf_counter()
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    work = Path(out) / "_runs"

    def log(msg: str) -> None:
        print(f"[hitl {time.perf_counter() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)

    for seed in range(args.seeds):
        cfg = stack_config(args.profile, args.iterations, args.device, seed=1337 + seed)
        ck0, pred0 = train_round(img, gt, list(START), cfg, None, work / f"s{seed}/r0", cache_dir)
        d0 = evaluate_test(ck0, test, args.device, cache_dir)
        log(f"seed {seed} round 0: {d0}")
        curves[str(seed)] = {}
        for strategy in strategies:
            rng = np.random.default_rng(2024 + seed)
            labeled, ckpt, pred = list(START), ck0, pred0
            curve = [{"round": 0, "labeled": list(labeled), **d0}]
            for rnd in range(1, args.rounds + 1):
                labeled.append(pick_next(strategy, pred, labeled, feats, rng))
                ckpt, pred = train_round(
                    img, gt, labeled, cfg, ckpt, work / f"s{seed}/{strategy}/r{rnd}", cache_dir
                )
                d = evaluate_test(ckpt, test, args.device, cache_dir)
                curve.append({"round": rnd, "labeled": list(labeled), **d})
                log(f"seed {seed} {strategy} round {rnd} picked {names[labeled[-1]]}: {d}")
            curves[str(seed)][strategy] = curve
        summary = summarise(curves)
        meta = {
            "device": device_name(pick_device(args.device)),
            "commit": git_commit(),
            "wall_s": time.perf_counter() - t0,
            "stack": names,
            "args": vars(args),
            "command": "python -m benchmarks.hitl " + " ".join(argv or sys.argv[1:]),
        }
        write_json_atomic(out / "hitl.json", {"meta": meta, "curves": curves, "summary": summary})
        (out / "hitl.md").write_text(markdown(meta, curves, summary, names), encoding="utf-8")
    print((out / "hitl.md").read_text(encoding="utf-8"))
    return 0


def markdown(meta, curves, summary, names) -> str:
    a = meta["args"]
    md = [
        "# Simulated human in the loop: which slice to label next (S40, FAZ)",
        "",
        f"Device: {meta['device']}. Commit: {meta['commit']}. Wall time "
        f"{meta['wall_s'] / 60:.1f} min. Command: `{meta['command']}`.",
        "",
        f"{a['profile']} profile, {a['iterations']} iterations per round (warm start), "
        f"{a['rounds']} rounds after the 3 first slices, {len(curves)} seed(s); Dice on the first "
        f"{a['test_per_domain']} test images of each site, mean over the 5 sites. Short rounds: "
        "the numbers are noisy, read the spread.",
        "",
        "| strategy | model | mean Dice over rounds 1..R per seed | gain over random: mean "
        "(min..max) |",
        "|---|---|---|---|",
    ]
    for strategy, models in summary.items():
        for model, v in models.items():
            per = ", ".join(f"{100 * x:.1f}" for x in v["mean_over_rounds_per_seed"])
            md.append(
                f"| {strategy} | {model} | {per} | {100 * v['gain_mean']:+.1f} "
                f"({100 * v['gain_min']:+.1f}..{100 * v['gain_max']:+.1f}) |"
            )
    md += ["", "Picks (slice names after the 3 first):", ""]
    for seed, by in curves.items():
        for strategy, c in by.items():
            md.append(
                f"- seed {seed}, {strategy}: " + ", ".join(names[z] for z in c[-1]["labeled"][3:])
            )
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
