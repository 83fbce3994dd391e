"""``python -m benchmarks.strategies``: the FAZ protocol (benchmarks.md §1) per strategy.

Every strategy (``synfoc``, ``semisam+``, ``ifl``, ``uncol``) trains on the same labelled
slices with the same seed and the same budget in **seconds** (costs per iteration differ): a
short probe measures each strategy's seconds per iteration, the run gets ``budget / s_per_it``
iterations (so its ramps and rounds complete), and a stop flag caps it at 1.5x the budget.
Both predictions (the foundation model's, trained or prompted, and the U-Net's) are scored on
the test split of every domain through the same path (``trainer.predict``, then per-image
metrics at ``eval_size``).  Results: ``OUT/strategies.json`` and ``OUT/strategies.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_synfoc.io.results import write_json_atomic

from .common import add_data_arg, faz_root

STRATEGY_LIST = ("synfoc", "semisam+", "ifl", "uncol")


def split(data: Path, domain: str, n_labeled: int, unl_per_domain: int, test_per_domain: int):
    """Labelled: the first ``n_labeled`` train images of ``domain``; unlabelled: the first
    ``unl_per_domain`` train images of every domain (minus labelled); test: the first
    ``test_per_domain`` test images of every domain."""
    from napari_synfoc.core.layouts import discover, make_ssl_split

    sp = discover(data)
    labeled, unlabeled = make_ssl_split(sp, domain, n_labeled)
    keep = {
        d: {s.name for s in sorted(v, key=lambda s: s.name)[:unl_per_domain]}
        for d, v in sp.train.items()
    }
    unlabeled = [s for s in unlabeled if s.name in keep[s.domain]]
    test = {d: sorted(v, key=lambda s: s.name)[:test_per_domain] for d, v in sp.test.items()}
    return sp, labeled, unlabeled, test


def score(trainer, test: dict, cfg) -> dict[str, Any]:
    """Dice/Jaccard/HD95/ASD of both predictions per test domain and their domain average."""
    import torch

    from napari_synfoc.core.data import load_test_set
    from napari_synfoc.core.metrics import aggregate, domain_average, image_metrics
    from napari_synfoc.core.strategies.base import resize_labels

    size = cfg.eval_size or cfg.unet_size
    per = {}
    for d, samples in test.items():
        items = load_test_set(list(samples), max(size, trainer.S))
        fm_p, un_p = trainer.predict([it[1] for it in items])
        res = {"unet": [], "foundation": []}
        for i, it in enumerate(items):
            gt = resize_labels(torch.from_numpy(np.asarray(it[2]))[None], size)[0].numpy()
            for key, prob in (("unet", un_p[i]), ("foundation", fm_p[i])):
                pred = torch.from_numpy(prob.argmax(0))[None]
                pred = resize_labels(pred, size)[0].numpy()
                res[key].append(
                    image_metrics(pred, gt, cfg.num_classes, cfg.phi_classes, empty_gt="rule")
                )
        per[d] = {k: aggregate(v) for k, v in res.items()}
    avg = {k: domain_average({d: v[k] for d, v in per.items()}) for k in ("unet", "foundation")}
    return {"per_domain": per, "average": avg}


def run_one(strategy: str, seed: int, args, data) -> dict[str, Any]:
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Cancelled, Done, Failed, Step
    from napari_synfoc.core.trainer import SynFoCTrainer
    from napari_synfoc.io.results import default_cache_dir

    sp, labeled, unlabeled, test = data
    cache = default_cache_dir() / "embeddings"

    def config(iterations):
        return make_config(
            "cpu-interactive", iterations=iterations, num_classes=sp.num_classes,
            in_channels=sp.in_channels, phi_classes=sp.phi_classes, device=args.device,
            seed=seed, strategy=strategy,
        )  # fmt: skip

    def train(cfg, limit_s):
        tr = SynFoCTrainer(cfg, labeled, unlabeled, out_dir=Path(args.out) / "models" / strategy,
                           embed_cache_dir=cache)  # fmt: skip
        t0 = time.perf_counter()
        steps, final = [], None
        for ev in tr.run(lambda: time.perf_counter() - t0 > limit_s):
            if isinstance(ev, Step):
                steps.append(ev.seconds)
            elif isinstance(ev, (Done, Failed, Cancelled)):
                final = ev
        if isinstance(final, Failed):
            raise RuntimeError(f"{strategy} seed {seed}: {final.message}")
        return tr, steps, time.perf_counter() - t0, final

    # probe: seconds per iteration of this strategy (embeddings come from the disk cache)
    probe_it = args.probe_iterations
    tr, steps, _, _ = train(config(probe_it), 1e9)
    tr.free()
    s_it = float(np.median(steps[1:] if len(steps) > 1 else steps))
    iterations = max(args.min_iterations, int(args.budget_s / s_it))
    tr, steps, wall, final = train(config(iterations), 1.5 * args.budget_s)
    calls = getattr(getattr(tr.strategy, "prompted", None), "calls", 0)
    t1 = time.perf_counter()
    res = score(tr, test, tr.cfg)
    eval_s = time.perf_counter() - t1
    out = {
        "strategy": strategy,
        "seed": seed,
        "probe_s_per_iteration": s_it,
        "iterations_planned": iterations,
        "iterations_done": len(steps),
        "stopped_early": type(final).__name__ == "Cancelled",
        "train_s": wall,
        "s_per_iteration_median": float(np.median(steps)),
        "s_per_iteration_mean": float(np.mean(steps)),
        "prompted_decoder_calls_per_iteration": calls / max(1, len(steps)),
        "eval_s": eval_s,
        **res,
    }
    tr.free()
    return out


def make_table(runs: list[dict[str, Any]]) -> str:
    from .common import markdown_table

    header = [
        "strategy", "model", "Dice % (mean ± spread over seeds)", "per seed", "HD95 px",
        "iterations", "s/it (median)", "prompted decoder passes / it",
    ]  # fmt: skip
    rows = []
    for s in STRATEGY_LIST:
        rs = [r for r in runs if r["strategy"] == s]
        if not rs:
            continue
        for model in ("unet", "foundation"):
            d = [100 * r["average"][model]["dice"] for r in rs]
            h = [r["average"][model]["hd95"] for r in rs]
            name = {"unet": "U-Net", "foundation": "foundation"}[model]
            if model == "foundation" and s != "synfoc":
                name = "foundation (frozen, prompted by U-Net)"
            rows.append(
                [
                    s,
                    name,
                    f"{np.mean(d):.2f} ± {(max(d) - min(d)) / 2:.2f}",
                    " / ".join(f"{v:.2f}" for v in d),
                    f"{np.mean(h):.1f}",
                    " / ".join(str(r["iterations_done"]) for r in rs),
                    f"{np.mean([r['s_per_iteration_median'] for r in rs]):.3f}",
                    f"{np.mean([r['prompted_decoder_calls_per_iteration'] for r in rs]):.1f}",
                ]  # fmt: skip
            )
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.strategies")
    add_data_arg(p)
    p.add_argument("--out", default="docs/results/strategies_cpu")
    p.add_argument("--domain", default="Domain1", help="the labelled domain")
    p.add_argument("--strategies", default=",".join(STRATEGY_LIST))
    p.add_argument("--seeds", default="1337,1338")
    p.add_argument("--budget-s", type=float, default=60.0, help="training seconds per run")
    p.add_argument("--n-labeled", type=int, default=20)
    p.add_argument("--unlabeled-per-domain", type=int, default=12)
    p.add_argument("--test-per-domain", type=int, default=10)
    p.add_argument("--probe-iterations", type=int, default=4)
    p.add_argument("--min-iterations", type=int, default=10)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = split(faz_root(args.data), args.domain, args.n_labeled, args.unlabeled_per_domain,
                 args.test_per_domain)  # fmt: skip
    path = out / "strategies.json"
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"] if path.is_file() else []
    done = {(r["strategy"], r["seed"]) for r in runs}
    t0 = time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        for s in args.strategies.split(","):
            if (s, seed) in done:
                continue
            print(f"[strategies] {s} seed {seed} ...", file=sys.stderr, flush=True)
            r = run_one(s, seed, args, data)
            print(
                f"[strategies]   U-Net {100 * r['average']['unet']['dice']:.2f}  foundation "
                f"{100 * r['average']['foundation']['dice']:.2f}  {r['iterations_done']} it, "
                f"{r['train_s']:.0f}+{r['eval_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            runs.append(r)
            write_json_atomic(path, {"args": vars(args), "runs": runs})
    cmd = "python -m benchmarks.strategies " + " ".join(argv or sys.argv[1:])
    md = [
        "# Strategies side by side: FAZ protocol, CPU schedule (same seconds per run)",
        "",
        f"Command: `{cmd}`. Labelled domain {args.domain}: first {args.n_labeled} train images; "
        f"unlabelled: first {args.unlabeled_per_domain} train images of every domain; test: first "
        f"{args.test_per_domain} test images of every domain (Dice averaged per domain, then over "
        f"domains). cpu-interactive profile, budget {args.budget_s:.0f} s of training per run, "
        f"seeds {args.seeds}. Spread = half the range over seeds. Wall time of this call: "
        f"{(time.perf_counter() - t0) / 60:.1f} min.",
        "",
        make_table(runs),
        "",
    ]
    (out / "strategies.md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
