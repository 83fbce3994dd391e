"""Make resources/screenshot.png: SynFoC at work on a 12-slice stack of real FAZ (OCTA) images.

Run headless (Xvfb)::

    xvfb-run -a -s "-screen 0 1680x1050x24" .venv/bin/python resources/make_screenshot.py

The stack holds the first train images of the five FAZ domains (scanners), taken in turn
(Domain1 #1, Domain2 #1, ..., Domain5 #1, Domain1 #2, ...); the masks (> 0) of three slices are
the labels.  The script docks "SynFoC", calls ``train(iterations=20)`` and ``wait()``, checks that
the four overlay layers exist with the stack's shape, goes to the most uncertain unlabelled slice
and saves a screenshot of the whole window.  It prints the caption.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "faz_octa_5sites" / "data" / "FAZ"
N_SLICES = 12
LABELED = (0, 4, 8)  # one slice each of Domain1, Domain5 and Domain4


def faz_stack(data: Path = DATA, n: int = N_SLICES, size: int = 256):
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "resources" / "screenshot.png"))
    ap.add_argument("--profile", default="auto", help="compute profile (auto, tiny, ...)")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--predict-every", type=int, default=10)
    ap.add_argument("--precision", default=None, help="override the profile's precision")
    args = ap.parse_args(argv)

    import napari

    image, mask, names = faz_stack()
    labels = np.zeros_like(mask)
    for z in LABELED:
        labels[z] = mask[z]

    viewer = napari.Viewer(title="napari-synfoc", show=True)
    viewer.window.resize(1680, 1020)
    viewer.add_image(image, name="FAZ stack (5 scanners)", colormap="gray")
    lab = viewer.add_labels(labels, name="my labels")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    widget.profile_combo.setCurrentText(args.profile)
    widget.predict_every_spin.setValue(args.predict_every)
    if args.precision:
        widget.advanced_widgets["precision"].setCurrentText(args.precision)
        widget._adv_touched.add("precision")
    t0 = time.perf_counter()
    if not widget.train(iterations=args.iterations):
        print("training did not start:", widget.last_message, file=sys.stderr)
        return 1
    widget.wait()
    took = time.perf_counter() - t0
    if widget.outcome != "done":
        print("training ended with", widget.outcome, widget.last_message, file=sys.stderr)
        return 1
    for name in ("MedSAM prediction", "U-Net prediction", "Consensus (M_c)", "Divergence (M_d)"):
        shape = viewer.layers[name].data.shape
        assert shape == image.shape, (name, shape)
        print(f"layer {name!r}: shape {shape}")

    z = widget.next_uncertain()
    viewer.layers.selection.active = lab
    widget.loss_plot.redraw()
    from qtpy.QtWidgets import QApplication

    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    out = Path(args.out)
    viewer.screenshot(str(out), canvas_only=False)
    profile = widget.status.text()
    caption = (
        f"SynFoC in napari: a {N_SLICES}-slice stack of real FAZ OCTA images from five scanners "
        f"(first train images of Domain1-5), slices {', '.join(map(str, LABELED))} labelled. "
        f"After train(iterations={args.iterations}) with the '{_profile_name(widget)}' compute "
        f"profile on the CPU ({took:.0f} s), the view shows slice {z}, the unlabelled slice "
        "where MedSAM and the U-Net disagree most: the disagreement heat map (inferno), "
        "consensus M_c and divergence M_d (magenta) overlays, the loss/alpha plot and the "
        "ranked slice table."
    )
    print("saved", out)
    print("status:", profile)
    print("CAPTION:", caption)
    widget.cleanup()
    viewer.close()
    return 0


def _profile_name(widget) -> str:
    chosen = widget.profile_combo.currentText()
    if chosen != "auto":
        return chosen
    cfg = widget._ckpt_config or {}
    return "cpu-interactive" if cfg.get("freeze_encoder") else f"auto ({cfg.get('foundation')})"


if __name__ == "__main__":
    sys.exit(main())
