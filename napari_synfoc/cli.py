"""``napari-synfoc``: open napari with the plugin, train / evaluate headless, check the machine.

napari-synfoc                      # napari with the SynFoC dock and the demo sample
napari-synfoc open FILE...         # napari with the SynFoC dock and your files
napari-synfoc train --data DIR --labeled-domain NAME --n-labeled N --iterations N --out OUT
napari-synfoc eval --data DIR --model OUT/synfoc_checkpoint.pt --out OUT
napari-synfoc bench --out bench.json [--quick]   # a short check of this machine

The training options are generated from the config table (``SynFoCConfig``'s fields: a field
``unet_size`` is ``--unet-size``). The benchmarks are not installed: in a source checkout,
``python -m benchmarks.<name> --help`` (docs/results/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .config import (
    ADVANCED_FIELDS,
    FIXES,
    PROFILES,
    SynFoCConfig,
    field_meta,
    resolve_config,
)
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
# Config fields offered as ``--field-name`` options: the option's name, type, choices and help
# come from the field and its metadata (config.py), and every default is the config's (or the
# profile's): an option left out is not passed on.
MODEL_FIELDS = (
    "foundation", "checkpoint", "device", "precision", "seed", "batch_labeled",
    "batch_unlabeled", "unet_size", "fm_size", "unet_features", "num_workers", "compile",
    "checkpoint_every",
)  # fmt: skip
METHOD_FIELDS = (
    "strategy", *(f for f in ADVANCED_FIELDS if f not in MODEL_FIELDS), "empty_gt_hd95",
)  # fmt: skip
# Older option names kept as aliases (field -> extra option strings).
ALIASES = {"unet_size": ("--size",), "num_workers": ("--workers",)}
# ``--no-<alias>``: older names of ``--no-<field>`` for the ablation switches.
NEGATIVE_ALIASES = {"use_smc": "--no-smc", "use_cdcr": "--no-cdcr"}


def option_name(field_name: str) -> str:
    """The command-line option of a config field: ``unet_size`` -> ``--unet-size``."""
    return "--" + field_name.replace("_", "-")


def _tuple_of(convert):
    def parse(text: str) -> tuple:
        try:
            return tuple(convert(v) for v in text.split(","))
        except ValueError:
            msg = f"expected comma-separated numbers, not {text!r}"
            raise argparse.ArgumentTypeError(msg) from None

    return parse


def _field_type(name: str):
    """(argparse type or ``bool``, metavar) of config field ``name``, from its annotation."""
    kind = str(next(f.type for f in dataclasses.fields(SynFoCConfig) if f.name == name))
    if kind == "bool":
        return bool, None
    if kind.startswith("tuple[int"):
        return _tuple_of(int), "N,N,..."
    if kind.startswith("tuple[float"):
        return _tuple_of(float), "X,X"
    if kind == "int":
        return int, "N"
    if kind == "float":
        return float, "X"
    return str, None


def add_config_option(
    group, name: str, *, required: bool = False, help: str | None = None
) -> None:
    """Add ``--name-with-dashes`` for config field ``name`` (choices, type and help from the
    config table); a bool field gets ``--name`` and ``--no-name``. Default None: not set."""
    meta = field_meta(name)
    text = help or meta["help"] or name
    default = getattr(SynFoCConfig(), name)
    if not required:
        text += f" (default: the profile's, else {default!r})"
    flags = [option_name(name), *ALIASES.get(name, ())]
    kind, metavar = _field_type(name)
    if kind is bool:
        group.add_argument(
            *flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
        )
        if name in NEGATIVE_ALIASES:
            group.add_argument(
                NEGATIVE_ALIASES[name],
                dest=name,
                action="store_false",
                default=None,
                help=f"alias of --no-{name.replace('_', '-')}",
            )
        return
    group.add_argument(
        *flags,
        dest=name,
        type=kind,
        choices=meta["choices"],
        metavar=metavar if meta["choices"] is None else None,
        default=None,
        required=required,
        help=text,
    )


def _add_method_args(p: argparse.ArgumentParser) -> None:
    """Model, compute and method options, generated from the config table."""
    g = p.add_argument_group("model and compute")
    g.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="compute profile (default: cpu-interactive on a CPU, gpu-fast on a GPU)",
    )
    for name in MODEL_FIELDS:
        add_config_option(g, name)
    g.add_argument(
        "--batch",
        type=int,
        default=None,
        help="shorthand: --batch-labeled and --batch-unlabeled both N",
    )
    m = p.add_argument_group(
        "method (faithful by default) and the fixes of upstream quirks (docs/method.md)"
    )
    for name in METHOD_FIELDS:
        add_config_option(m, name)
    m.add_argument(
        "--baseline",
        choices=["suponly"],
        default=None,
        help="alias of --suponly: train both models on the labelled images only",
    )
    m.add_argument(
        "--fixes", action="store_true", help="turn on every fix of an upstream quirk at once"
    )


def config_from_args(args: argparse.Namespace, **task: Any) -> SynFoCConfig:
    """The run's config through :func:`resolve_config`: task settings, the ``--fixes`` set,
    then every config option that was given (``--batch`` before the per-batch options)."""
    over: dict[str, Any] = dict(task)
    if getattr(args, "iterations", None) is not None:
        over["iterations"] = args.iterations
    if args.fixes:
        over.update(FIXES)
    if args.batch is not None:
        over["batch_labeled"] = over["batch_unlabeled"] = args.batch
    if args.baseline == "suponly":
        over["suponly"] = True
    for name in MODEL_FIELDS + METHOD_FIELDS:
        if name not in ("foundation", "device") and getattr(args, name) is not None:
            over[name] = getattr(args, name)
    return resolve_config(args.profile, args.device or "auto", args.foundation, over)


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

    cfg, unet, fm, dev, precision = load_trained(args.model, args.device or "auto")
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
        epilog="Benchmarks (source checkout only): python -m benchmarks.<name> --help",
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
    add_config_option(t, "iterations", required=True)
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
    add_config_option(e, "device")
    e.add_argument("--eval-limit", type=int, default=0)
    e.add_argument("--quiet", action="store_true")

    b = sub.add_parser(
        "bench",
        help="check this machine: seconds per iteration, first overlay, longest UI stall",
    )
    from .machine_check import add_arguments

    add_arguments(b)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
            from .machine_check import main as check_main

            return check_main(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"napari-synfoc: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
