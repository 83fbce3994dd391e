"""``napari-synfoc``: open napari with the plugin, or train / evaluate / benchmark headless.

napari-synfoc                      # napari with the SynFoC dock and the demo sample
napari-synfoc open FILE...         # napari with the SynFoC dock and your files
napari-synfoc train --data DIR --labeled-domain NAME --n-labeled N --iterations N --out OUT
napari-synfoc eval --data DIR --model OUT/synfoc_checkpoint.pt --out OUT
napari-synfoc bench --out bench.json [--quick]
napari-synfoc benchmark faz --out DIR
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .config import FIXES, PROFILES, SynFoCConfig, choices, field_meta, resolve_config
from .io.results import default_cache_dir, device_name, write_json_atomic


# --------------------------------------------------------------------------- napari
def launch_napari(files: list[str] | None = None, sample: bool = True) -> int:
    """Open napari with the SynFoC dock widget and either ``files`` or the demo sample."""
    import napari

    from .io.readers import prefer_synfoc_reader

    prefer_synfoc_reader()
    viewer = napari.Viewer(title="napari-synfoc")
    if files:
        for f in files:
            viewer.open(f, plugin="napari-synfoc")
    elif sample:
        viewer.open_sample("napari-synfoc", "synfoc_demo")
    viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    napari.run()
    return 0


# --------------------------------------------------------------------------- config
# Method switches exposed as ``--name-with-dashes`` with the table's choices and help.
METHOD_CHOICE_FIELDS = (
    "strategy",
    "alpha_mode",
    "lr_schedule",
    "teacher_bn",
    "ce_norm",
    "model_selection",
    "empty_gt_hd95",
)


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_method_args(p: argparse.ArgumentParser) -> None:
    """Model, compute and method options; choices and help come from the config table."""
    g = p.add_argument_group("model and compute")
    g.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="compute profile (default: cpu-interactive on a CPU, gpu-fast on a GPU)",
    )
    g.add_argument(
        "--foundation",
        choices=choices("foundation"),
        default=None,
        help="foundation model (default: the profile's; litemedsam, bundled)",
    )
    g.add_argument("--checkpoint", default=None, help=field_meta("checkpoint")["help"])
    g.add_argument("--device", default="auto", help=field_meta("device")["help"])
    g.add_argument("--precision", choices=choices("precision"), default=None)
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument(
        "--batch", type=int, default=None, help="labelled and unlabelled batch size (each)"
    )
    g.add_argument("--size", type=int, default=None, help=field_meta("unet_size")["help"])
    g.add_argument("--fm-size", type=int, default=None, help=field_meta("fm_size")["help"])
    g.add_argument("--unet-features", default=None, help="U-Net widths, e.g. 16,32,64,128,256")
    g.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    g.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the students and teachers (profiles compile only long runs)",
    )
    m = p.add_argument_group("method (faithful by default) and the spec's fixes")
    m.add_argument(
        "--baseline",
        choices=["suponly"],
        default=None,
        help="suponly: train both models on the labelled images only, same schedule",
    )
    m.add_argument("--no-smc", action="store_true", help="ablation: constant alpha instead of SMC")
    m.add_argument("--no-cdcr", action="store_true", help="ablation: no L_c / L_d")
    for name in METHOD_CHOICE_FIELDS:
        m.add_argument(
            _opt(name), choices=choices(name), default=None, help=field_meta(name)["help"]
        )
    m.add_argument(
        "--dice-bg-masked",
        action="store_true",
        default=None,
        help=field_meta("dice_bg_masked")["help"],
    )
    m.add_argument("--fixes", action="store_true", help="turn on every fix of the spec at once")


def config_from_args(args: argparse.Namespace, **task: Any) -> SynFoCConfig:
    """The run's config through :func:`resolve_config`: task settings, then explicit options."""
    over: dict[str, Any] = dict(task)
    over["seed"] = args.seed
    if getattr(args, "iterations", None) is not None:
        over["iterations"] = args.iterations
    if args.fixes:
        over.update(FIXES)
    simple = {
        "checkpoint": args.checkpoint,
        "precision": args.precision,
        "unet_size": args.size,
        "fm_size": args.fm_size,
        "num_workers": args.workers,
        "dice_bg_masked": args.dice_bg_masked,
        "compile": args.compile,
        **{name: getattr(args, name) for name in METHOD_CHOICE_FIELDS},
    }
    over.update({k: v for k, v in simple.items() if v is not None})
    if args.batch is not None:
        over["batch_labeled"] = over["batch_unlabeled"] = args.batch
    if args.unet_features:
        over["unet_features"] = tuple(int(v) for v in args.unet_features.split(","))
    if args.baseline == "suponly":
        over["suponly"] = True
    if args.no_smc:
        over["use_smc"] = False
    if args.no_cdcr:
        over["use_cdcr"] = False
    return resolve_config(args.profile, args.device, args.foundation, over)


# --------------------------------------------------------------------------- train / eval
def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, file=sys.stderr)


def run_training(cfg: SynFoCConfig, labeled, unlabeled, out: Path, quiet: bool = False):
    """Train with a terminal progress bar; returns (trainer, step times, final event)."""
    from .core.events import Cancelled, Done, Failed, Progress, Step
    from .core.trainer import SynFoCTrainer

    trainer = SynFoCTrainer(
        cfg, labeled, unlabeled, out_dir=out, embed_cache_dir=default_cache_dir() / "embeddings"
    )
    bar = (
        None
        if quiet
        else _progress_bar(cfg.iterations, "SynFoC" if not cfg.suponly else "SupOnly")
    )
    times: list[float] = []
    final = None
    for ev in trainer.run():
        if isinstance(ev, Step):
            times.append(ev.seconds)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{ev.losses['loss']:.3f}", alpha=f"{ev.alpha:.2f}", lam=f"{ev.lam:.3f}"
                )
        elif isinstance(ev, Progress) and bar is not None:
            bar.set_description(f"{ev.message} {ev.done}/{ev.total}")
        elif isinstance(ev, Done | Cancelled | Failed):
            final = ev
    if bar is not None:
        bar.close()
    return trainer, times, final


def _evaluate_with_bar(trainer_or_models, split_test, cfg, quiet=False, cache_dir=None):
    from .core.embeddings import EmbeddingDiskCache, frozen_encoder_id
    from .core.evaluate import evaluate

    unet, fm, device, precision = trainer_or_models
    total = sum(len(v) for v in split_test.values())
    bar = None if quiet else _progress_bar(total, "evaluating")
    cache = None
    if cfg.freeze_encoder and cache_dir is not None:
        cache = EmbeddingDiskCache(cache_dir, frozen_encoder_id(fm, cfg))

    def progress(done, tot):
        if bar is not None:
            bar.n = done
            bar.refresh()

    res = evaluate(unet, fm, split_test, cfg, device, precision, cache=cache, progress=progress)
    if bar is not None:
        bar.close()
    return res


def cmd_train(args: argparse.Namespace) -> int:
    from .core.layouts import discover, make_ssl_split

    split = discover(args.data, layout=args.layout)
    labeled, unlabeled = make_ssl_split(split, args.labeled_domain, args.n_labeled)
    if args.unlabeled_limit:
        unlabeled = _limit_per_domain(unlabeled, args.unlabeled_limit)
    test = split.test
    if args.eval_limit:
        test = {d: list(v)[: args.eval_limit] for d, v in test.items()}
    cfg = config_from_args(
        args,
        num_classes=split.num_classes,
        in_channels=split.in_channels,
        phi_classes=split.phi_classes,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainer, times, final = run_training(cfg, labeled, unlabeled, out, args.quiet)
    from .core.events import Failed

    if isinstance(final, Failed):
        print(f"napari-synfoc: {final.message}", file=sys.stderr)
        if final.checkpoint:
            print(f"napari-synfoc: last good checkpoint: {final.checkpoint}", file=sys.stderr)
        return 1
    train_s = time.perf_counter() - t0
    if trainer.world_size > 1:
        # Under torchrun: every rank records a fingerprint of its students (the test checks the
        # ranks stayed in sync); rank 0 alone evaluates and writes metrics.json.
        write_json_atomic(
            out / f"rank{trainer.rank}_params.json",
            {
                "rank": trainer.rank,
                "world_size": trainer.world_size,
                "iterations": trainer.iteration,
                **model_fingerprint(trainer),
                "strategy": trainer.strategy.fingerprint(),
            },
        )
        if trainer.rank != 0:
            trainer.free()
            return 0
    res = _evaluate_with_bar(
        (trainer.unet, trainer.fm_student, trainer.device, trainer.precision),
        test,
        cfg,
        args.quiet,
        default_cache_dir() / "embeddings",
    )
    metrics = {
        "config": cfg.to_dict(),
        "device": device_name(trainer.device),
        "iterations": trainer.iteration,
        "seconds_per_iteration": statistics.mean(times) if times else None,
        "seconds_per_iteration_median": statistics.median(times) if times else None,
        "train_seconds": train_s,
        "labeled_domain": args.labeled_domain,
        "n_labeled": len(labeled),
        "n_unlabeled": len(unlabeled),
        "model": str(trainer.last_checkpoint),
        "world_size": trainer.world_size,
        **res,
    }
    write_json_atomic(out / "metrics.json", metrics)
    _print_summary(metrics)
    trainer.free()
    return 0


def model_fingerprint(trainer) -> dict[str, Any]:
    """SHA-256 of both students' parameters (bitwise identity across DDP ranks)."""
    import hashlib

    out = {}
    for name, module in (("unet", trainer.unet), ("foundation", trainer.fm_student)):
        h = hashlib.sha256()
        for _, p in sorted(module.named_parameters()):
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        out[f"{name}_sha256"] = h.hexdigest()
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    from .core.interactive import load_trained
    from .core.layouts import discover

    cfg, unet, fm, dev, precision = load_trained(args.model, args.device)
    split = discover(args.data, layout=args.layout)
    if split.num_classes != cfg.num_classes or split.in_channels != cfg.in_channels:
        print(
            f"napari-synfoc: the model has {cfg.num_classes} classes / {cfg.in_channels} channels "
            f"but '{args.data}' has {split.num_classes} / {split.in_channels}",
            file=sys.stderr,
        )
        return 2
    test = split.test
    if args.eval_limit:
        test = {d: list(v)[: args.eval_limit] for d, v in test.items()}
    res = _evaluate_with_bar(
        (unet, fm, dev, precision), test, cfg, args.quiet, default_cache_dir() / "embeddings"
    )
    metrics = {
        "config": cfg.to_dict(),
        "device": device_name(dev),
        "model": str(args.model),
        **res,
    }
    from .core import checkpoint as ckpt

    metrics["iterations"] = int(ckpt.load_checkpoint(args.model).get("iteration", 0))
    metrics["seconds_per_iteration"] = None
    write_json_atomic(Path(args.out) / "metrics.json", metrics)
    _print_summary(metrics)
    return 0


def _limit_per_domain(samples, n: int):
    seen: dict[str, int] = {}
    out = []
    for s in samples:
        if seen.get(s.domain, 0) < n:
            out.append(s)
            seen[s.domain] = seen.get(s.domain, 0) + 1
    return out


def _print_summary(m: dict) -> None:
    rows = []
    for dom, v in m["per_domain"].items():
        rows.append((dom, v["unet"]["dice"], v["foundation"]["dice"]))
    rows.append(("average", m["average"]["unet"]["dice"], m["average"]["foundation"]["dice"]))
    print(f"{'domain':<12} {'U-Net Dice':>10} {'FM Dice':>10}")
    for dom, u, f in rows:
        print(f"{dom:<12} {u:>10.4f} {f:>10.4f}")


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="napari-synfoc",
        description="SynFoC in napari: foundation model + U-Net co-training from a few labels.",
    )
    p.add_argument("--version", action="version", version=f"napari-synfoc {__version__}")
    sub = p.add_subparsers(dest="command")

    o = sub.add_parser("open", help="open napari with the SynFoC dock and the given files")
    o.add_argument("files", nargs="*")

    t = sub.add_parser(
        "train", help="train SynFoC on a data set folder, evaluate, write metrics.json"
    )
    t.add_argument(
        "--data", required=True, help="data set root (generic, paper layouts, Drishti-GS)"
    )
    t.add_argument("--layout", default="auto")
    t.add_argument("--labeled-domain", required=True)
    t.add_argument("--n-labeled", type=int, required=True)
    t.add_argument("--iterations", type=int, required=True)
    t.add_argument("--out", required=True)
    t.add_argument(
        "--unlabeled-limit",
        type=int,
        default=0,
        help="use at most N unlabelled images per domain (0 = all)",
    )
    t.add_argument(
        "--eval-limit",
        type=int,
        default=0,
        help="evaluate at most N test images per domain (0 = all)",
    )
    t.add_argument("--quiet", action="store_true")
    _add_method_args(t)

    e = sub.add_parser("eval", help="evaluate a saved model on every domain's test split")
    e.add_argument("--data", required=True)
    e.add_argument("--layout", default="auto")
    e.add_argument(
        "--model", required=True, help="a napari-synfoc checkpoint (OUT/synfoc_checkpoint.pt)"
    )
    e.add_argument("--out", required=True)
    e.add_argument("--device", default="auto")
    e.add_argument("--eval-limit", type=int, default=0)
    e.add_argument("--quiet", action="store_true")

    b = sub.add_parser("bench", help="speed benchmark (profiles, first overlay, UI stalls)")
    b.add_argument("--out", required=True)
    b.add_argument(
        "--quick", action="store_true", help="finish in under two minutes on a 2-core CPU"
    )
    b.add_argument("--device", default="auto")
    b.add_argument(
        "--profiles",
        default=None,
        help="comma-separated profiles to time; settings as name+key=value "
        "(gpu-fast+compile=true)",
    )
    b.add_argument(
        "--no-overlay",
        action="store_true",
        help="skip the napari measurements (no display/napari)",
    )
    b.add_argument(
        "--foreign-load",
        action="store_true",
        help="also time the dock's training child with a second CPU-bound torch process "
        "running (iteration ratio and parent stalls)",
    )
    b.add_argument(
        "--torch-profile",
        type=int,
        default=0,
        metavar="N",
        help="print torch.profiler tables of N extra iterations per profile",
    )

    bm = sub.add_parser(
        "benchmark",
        help="accuracy benchmarks (FAZ protocol, human-in-the-loop); "
        "'benchmark interactive|prompts --help' for the interactive and prompt benchmarks",
    )
    bm.add_argument("which", choices=["faz", "hitl", *DELEGATED_BENCHMARKS])
    bm.add_argument("--out", required=True)
    bm.add_argument("--schedule", choices=["cpu", "gpu"], default="cpu")
    bm.add_argument("--data", default=None)
    bm.add_argument("--domains", default=None, help="comma-separated labelled domains")
    bm.add_argument("--device", default="auto")
    return p


# ``napari-synfoc benchmark NAME ...``: benchmarks with their own options, imported lazily.
DELEGATED_BENCHMARKS = {
    "interactive": "napari_synfoc.bench.interactive",
    "prompts": "napari_synfoc.bench.prompts",
}


def _delegated_benchmark(argv: list[str]) -> int | None:
    """Run ``benchmark interactive|prompts ...`` through that module's ``main(argv)``."""
    if len(argv) < 2 or argv[0] != "benchmark" or argv[1] not in DELEGATED_BENCHMARKS:
        return None
    import importlib

    module = importlib.import_module(DELEGATED_BENCHMARKS[argv[1]])
    return int(module.main(argv[2:]) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        delegated = _delegated_benchmark(argv)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"napari-synfoc: {exc}", file=sys.stderr)
        return 2
    if delegated is not None:
        return delegated
    args = build_parser().parse_args(argv)
    try:
        if args.command is None:
            return launch_napari()
        if args.command == "open":
            return launch_napari(args.files)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "bench":
            from .bench.speed import main as bench_main

            return bench_main(args)
        if args.command == "benchmark":
            from .bench.accuracy import main as acc_main

            return acc_main(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"napari-synfoc: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
