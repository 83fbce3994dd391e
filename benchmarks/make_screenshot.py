"""Make docs/images/screenshot.png: SynFoC at work on a stack of real FAZ (OCTA) images.

Run headless (Xvfb)::

    xvfb-run -a -s "-screen 0 1680x1050x24" .venv/bin/python -m benchmarks.make_screenshot

Stacks (``--stack``):

- ``faz12`` (default): the first train images of the five FAZ domains (scanners), taken in turn
  (Domain1 #1, Domain2 #1, ..., Domain5 #1, Domain1 #2, ...); slices 0, 4, 8 labelled.
- ``S40``: the interactive benchmark's stack (:func:`benchmarks.time_to_useful.faz_stack`
  with 8 per site: the first 8 train images of each site, site order); slices 0, 8, 16
  labelled.

Two modes:

- default: docks "SynFoC", calls ``train(iterations=--iterations)`` and ``wait()``, checks that
  the overlay layers exist with the stack's shape;
- ``--seconds N``: presses Train with the dock's defaults (iterations, backend, refresh rate),
  and N seconds of wall time after the press takes the screenshot while training still runs (if
  the overlays are not there yet it waits for them, up to ``--max-extra`` more seconds, and says
  so in the caption); then stops training and waits for it to end.

Both go to the most uncertain unlabelled slice (the dock's ranking), save a screenshot of the
whole window, print the caption (seconds measured, iteration reached, slice shown) and write it
to ``--caption`` (default docs/images/screenshot_caption.txt).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
N_SLICES = 12
LABELED = (0, 4, 8)  # one slice each of Domain1, Domain5 and Domain4
OVERLAYS = ("MedSAM prediction", "U-Net prediction", "Consensus (M_c)", "Divergence (M_d)")


def faz_stack(data: Path, n: int = N_SLICES, size: int = 256):
    """(image (n, size, size) float32 in [0, 1], mask (n, size, size) uint8, names)."""
    domains = sorted(p for p in data.glob("Domain*") if p.is_dir())
    if not domains:
        raise SystemExit(f"no FAZ domains under {data}")
    files = {d.name: sorted((d / "train" / "imgs").glob("*.png")) for d in domains}
    imgs, masks, names = [], [], []
    k = 0
    while len(imgs) < n:
        d = domains[len(imgs) % len(domains)]
        k = len(imgs) // len(domains)
        f = files[d.name][k]
        img = Image.open(f).convert("L").resize((size, size), Image.BILINEAR)
        msk = Image.open(f.parent.parent / "mask" / f.name).convert("L")
        msk = msk.resize((size, size), Image.NEAREST)
        imgs.append(np.asarray(img, np.float32) / 255.0)
        masks.append((np.asarray(msk) > 0).astype(np.uint8))
        names.append(f"{d.name}/{f.name}")
    return np.stack(imgs), np.stack(masks), names


def load_stack(
    name: str, data: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], str, str]:
    """(image, labels with only the labelled slices painted, labelled slices, layer name,
    caption phrase) of stack ``name`` ("faz12" or "S40"), FAZ under the data folder ``data``."""
    from benchmarks.common import faz_root

    data = faz_root(data)
    if name == "faz12":
        image, mask, _ = faz_stack(data)
        labeled = LABELED
        layer = "FAZ stack (5 scanners)"
        what = (
            f"a {len(image)}-slice stack of real FAZ OCTA images from five scanners "
            "(first train images of Domain1-5, taken in turn)"
        )
    elif name == "S40":
        from benchmarks.time_to_useful import STACKS
        from benchmarks.time_to_useful import faz_stack as bench_faz_stack

        spec = STACKS["S40"]
        try:
            image, mask = bench_faz_stack(spec["per_site"], data)
        except FileNotFoundError as exc:
            raise SystemExit(f"--stack S40: {exc}") from exc
        labeled = tuple(spec["labeled"])
        layer = "FAZ S40 (5 scanners)"
        what = (
            f"the {len(image)}-slice S40 stack of real FAZ OCTA images from five scanners "
            f"(first {spec['per_site']} train images of each of Domain1-5, in site order)"
        )
    else:
        raise SystemExit(f"unknown --stack {name!r}: choose faz12 or S40")
    labels = np.zeros_like(mask)
    for z in labeled:
        if not mask[z].any():
            raise SystemExit(f"--stack {name}: slice {z}'s mask is empty; it cannot be a label")
        labels[z] = mask[z]
    return image, labels, labeled, layer, what


def process_events(seconds: float) -> None:
    """Let Qt draw for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def profile_name(widget) -> str:
    """The compute profile the run uses ("auto" resolved by the run's device)."""
    chosen = widget.profile_combo.currentText()
    if chosen != "auto":
        return chosen
    from napari_synfoc.config import default_profile_for

    device = widget.controller.device.split(" ")[0]
    return default_profile_for(device) if device else "auto"


def run_fixed(widget, iterations: int) -> tuple[float, str] | None:
    """``train(iterations)`` then ``wait()``: (start time, phrase), or None on failure."""
    t0 = time.perf_counter()
    if not widget.train(iterations=iterations):
        print("training did not start:", widget.last_message, file=sys.stderr)
        return None
    widget.wait()
    took = time.perf_counter() - t0
    if widget.outcome != "done":
        print("training ended with", widget.outcome, widget.last_message, file=sys.stderr)
        return None
    return t0, f"after train(iterations={iterations}) ran to the end in {took:.0f} s"


def run_timed(widget, seconds: float, max_extra: float) -> tuple[float, str] | None:
    """Press Train; once ``seconds`` have passed and the overlays exist (training left
    running), return (the press's time, phrase), or None on failure."""
    widget.train_btn.click()
    t0 = time.perf_counter()
    if not widget.controller.busy:
        print("training did not start:", widget.last_message, file=sys.stderr)
        return None
    widget.wait(timeout=seconds)  # returns early only if training ended
    remaining = seconds - (time.perf_counter() - t0)
    if remaining > 0:  # it ended early: the view stays as it is until the N s point
        process_events(remaining)
    deadline = t0 + seconds + max_extra
    builder = widget.overlay_builder
    while not builder.overlays_exist() or builder.busy():
        if time.perf_counter() > deadline or not (widget.controller.busy or builder.busy()):
            break
        process_events(0.2)
    took = time.perf_counter() - t0
    if not builder.overlays_exist():
        print(
            f"no overlays {took:.0f} s after Train (training {widget.outcome or 'running'}: "
            f"{widget.last_message}); raise --max-extra or --seconds",
            file=sys.stderr,
        )
        return None
    late = f", the first overlays having come after {took:.0f} s" if took > seconds + 1 else ""
    return t0, f"after pressing Train with the dock's defaults{late}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "screenshot.png"))
    ap.add_argument("--caption", default=str(ROOT / "docs" / "images" / "screenshot_caption.txt"))
    ap.add_argument("--data", default=None, help="the shared data folder (../shared/data)")
    ap.add_argument("--stack", choices=("faz12", "S40"), default="faz12")
    ap.add_argument("--profile", default="auto", help="compute profile (auto, tiny, ...)")
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="press Train with the dock's defaults and take the screenshot this many seconds "
        "later, while training runs (default: train --iterations to the end first)",
    )
    ap.add_argument(
        "--max-extra",
        type=float,
        default=300.0,
        help="with --seconds: how much longer to wait for the first overlays",
    )
    ap.add_argument("--iterations", type=int, default=20, help="without --seconds")
    ap.add_argument("--predict-every", type=int, default=10, help="without --seconds")
    ap.add_argument("--precision", default=None, help="override the profile's precision")
    args = ap.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        ap.error("--seconds must be > 0")

    import napari

    image, labels, labeled, layer_name, what = load_stack(args.stack, args.data)

    viewer = napari.Viewer(title="napari-synfoc", show=True)
    viewer.window.resize(1680, 1020)
    viewer.add_image(image, name=layer_name, colormap="gray")
    lab = viewer.add_labels(labels, name="my labels")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    widget.set_profile(args.profile)
    if args.seconds is None:
        widget.predict_every_spin.setValue(args.predict_every)
    if args.precision:
        widget.advanced.widgets["precision"].setCurrentText(args.precision)
        widget.advanced.touched.add("precision")
    try:
        if args.seconds is None:
            result = run_fixed(widget, args.iterations)
        else:
            result = run_timed(widget, args.seconds, args.max_extra)
        if result is None:
            return 1
        t0, when = result
        for name in OVERLAYS:
            shape = viewer.layers[name].data.shape
            if shape != image.shape:
                print(f"layer {name!r} has shape {shape}, not {image.shape}", file=sys.stderr)
                return 1
            print(f"layer {name!r}: shape {shape}")

        ranking = widget.ranking()
        if not ranking:
            print("the dock ranks no unlabelled slice", file=sys.stderr)
            return 1
        z = ranking[0]
        widget.goto_slice(z)
        viewer.layers.selection.active = lab
        widget.loss_plot.redraw()
        process_events(1.0)
        out = Path(args.out)
        viewer.screenshot(str(out), canvas_only=False)
        shot_s = time.perf_counter() - t0
        steps = widget.event_counts.get("Step", 0)  # a fresh Train starts at iteration 0
        total = widget.iterations_spin.value()
        refreshes = widget.prediction_updates
        state = "still training" if widget.is_training else f"training {widget.outcome}"
        status = widget.status.text()
        caption = (
            f"SynFoC in napari: {what}, slices {', '.join(map(str, labeled))} labelled. "
            f"Screenshot {when if args.seconds is None else f'{shot_s:.0f} s {when}'} "
            f"({state}), at iteration {steps} of {total}, "
            "with the "
            f"'{profile_name(widget)}' compute profile on {widget.controller.device or '?'} "
            f"(overlays refreshed {refreshes}x). The view shows slice {z}, the unlabelled slice "
            "the review ranks first (disagreement × novelty): the disagreement heat map "
            "(inferno), consensus M_c and divergence M_d (magenta) overlays, the loss/alpha "
            "plot and the ranked slice table."
        )
        print("saved", out)
        print(f"seconds: {shot_s:.1f}  iteration: {steps}/{total}  slice: {z}")
        print("status:", status)
        print("CAPTION:", caption)
        Path(args.caption).write_text(caption + "\n", encoding="utf-8")
        print("caption written to", args.caption)
        if widget.is_training:
            widget.stop()
            widget.wait()
            print("after Stop:", widget.outcome, "-", widget.last_message)
    finally:
        widget.cleanup()
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
