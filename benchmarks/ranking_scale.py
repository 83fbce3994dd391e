"""How the review table's refresh grows with the volume and the labelled slices.

The dock refreshes the review table on its GUI thread whenever predictions arrive or the labels
change (``SynFoCDock.refresh_ranking``): it finds the labelled slices, calibrates the quality
estimate on them and ranks every slice.  This runs those same controller calls on a synthetic
(Z, 512, 512) volume with two classes, with 3 labelled slices and with every other slice
labelled (as after accepting many proposals), and times each part:

- ``labelled_ms``: :func:`~napari_synfoc.core.review.labeled_slices` over the labels;
- ``quality_ms``: ``Review.quality`` (the estimate, with the continuity rule);
- ``table_ms``: ``Review.table`` (the ranking: disagreement × novelty × distance in z);
- ``total_ms``, and in r, one torch fp32 LiteMedSAM encoder forward measured in the same run
  (``--no-reference`` leaves r out);
- with ``--dock`` (needs a display; Xvfb is fine), ``dock_ms``: the whole GUI-thread refresh
  a paint stroke triggers in the real dock (``SynFoCWidget.refresh_labeled``: the labelled-slice
  list, the estimate, the ranking and the review table's rows), in a hidden napari viewer with
  the maps shown as overlays.

The median of ``--repeats`` runs.  The maps carry the ensemble's class boxes, as the worker's do.

    xvfb-run -a python -m benchmarks.ranking_scale --dock \\
        --out docs/results/scale_cpu/ranking_scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import reference_r


def volume(z: int, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's labels (a tube, class 1, and a block, class 2, on the middle third) and
    the U-Net's (the tube shifted by 3 voxels: the models disagree on its rim)."""
    yy, xx = np.mgrid[:size, :size]
    ens = np.zeros((z, size, size), np.uint8)
    unet = np.zeros_like(ens)
    for i in range(z):
        r = size * (0.08 + 0.04 * np.sin(i / 20.0))
        cx = size / 2 + 20 * np.cos(i / 30.0)
        ens[i][(yy - size / 2) ** 2 + (xx - cx) ** 2 < r * r] = 1
        unet[i][(yy - size / 2) ** 2 + (xx - cx - 3) ** 2 < r * r] = 1
        if z // 3 <= i < 2 * z // 3:
            ens[i, 350:420, 240:300] = 2
            unet[i, 352:420, 240:300] = 2
    return ens, unet


def _maps(ens: np.ndarray, unet: np.ndarray, rng: np.random.Generator):
    from napari_synfoc.core.review import ReviewMaps
    from napari_synfoc.core.slice_boxes import class_boxes

    z = len(ens)
    agreement = np.clip(rng.normal(0.85, 0.08, (z, 2)), 0, 1).astype(np.float32)
    agreement[: z // 3, 1] = np.nan  # class 2 predicted by neither there
    agreement[2 * z // 3 :, 1] = np.nan
    return ReviewMaps(
        fm_label=ens, unet_label=unet, ensemble_label=ens,
        consensus=(ens == unet), divergence=(ens != unet),
        heat=np.zeros(ens.shape, np.float16), slice_scores=rng.random(z),
        agreement=agreement, ensemble_boxes=class_boxes(ens, 3),  # the worker's, with the maps
    )  # fmt: skip


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return round(1e3 * statistics.median(times), 1), out


def dock_refresh(viewer, ens: np.ndarray, unet: np.ndarray, labels: np.ndarray,
                 repeats: int = 3) -> dict:  # fmt: skip
    """``dock_ms``: the median time of the dock's refresh after a paint stroke, with the maps
    of ``ens`` and ``unet`` shown in ``viewer`` over a Labels layer holding ``labels``;
    ``dock_rows``: the review table's rows."""
    from napari_synfoc.widgets.dock import SynFoCWidget

    rng = np.random.default_rng(0)
    image = viewer.add_image(ens, name="volume")  # its values do not matter: the maps are given
    layer = viewer.add_labels(labels, name="labels")
    w = SynFoCWidget(viewer, backend="thread")
    viewer.window.add_dock_widget(w)
    w.image_combo.set_value(image)
    w.labels_combo.set_value(layer)
    w.controller.review.set_maps(_maps(ens, unet, rng), image, features=rng.random((len(ens), 56)))
    if not w.wait(300):
        raise RuntimeError("the dock did not build the overlay layers within 300 s")
    ms, _ = _median_ms(w.refresh_labeled, repeats)
    rows = w.review.table.rowCount()
    w.cleanup()
    return {"dock_ms": ms, "dock_rows": rows}


def measure(z: int, every: int | None, size: int = 512, repeats: int = 3, viewer=None) -> dict:
    """One row: ``every``-th slice labelled (None: 3 slices at a quarter, half and three
    quarters of the volume); with a napari ``viewer``, also :func:`dock_refresh` in it."""
    from napari_synfoc.app.controller import AppController
    from napari_synfoc.core.review import labeled_slices

    rng = np.random.default_rng(0)
    ens, unet = volume(z, size)
    marks = list(range(0, z, every)) if every else [z // 4, z // 2, 3 * z // 4]
    labels = np.zeros_like(ens)
    labels[marks] = ens[marks]
    ctl = AppController()
    review = ctl.review
    review.set_maps(_maps(ens, unet, rng), None, features=rng.random((z, 56)))
    review.set_volume(True)
    lab_ms, labeled = _median_ms(lambda: labeled_slices(labels), repeats)
    quality_ms, _ = _median_ms(lambda: review.quality(labels, labeled, labeled), repeats)
    table_ms, (order, _) = _median_ms(lambda: review.table(labeled), repeats)
    if len(order) != z:
        raise RuntimeError(f"the table holds {len(order)} of {z} slices")
    row = {
        "slices": z, "size": size, "labelled": len(labeled), "labelled_ms": lab_ms,
        "quality_ms": quality_ms, "table_ms": table_ms,
        "total_ms": round(lab_ms + quality_ms + table_ms, 1),
    }  # fmt: skip
    if viewer is not None:
        row.update(dock_refresh(viewer, ens, unet, labels, repeats))
    return row


def _measure_in_viewer(z: int, every: int | None, size: int, repeats: int) -> dict:
    import napari

    viewer = napari.Viewer(show=False)
    try:
        return measure(z, every, size, repeats, viewer)
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/results/scale_cpu/ranking_scale")
    ap.add_argument("--slices", default="100,200,300,500")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true", help="do not measure r")
    ap.add_argument("--dock", action="store_true", help="also time the dock's refresh")
    args = ap.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    r = reference_r(args.no_reference)
    load = [round(x, 2) for x in os.getloadavg()]
    run = _measure_in_viewer if args.dock else measure
    rows = [
        run(int(z), every, args.size, args.repeats)
        for z in args.slices.split(",")
        for every in (None, 2)
    ]
    for row in rows:
        if r:
            row["total_r"] = round(row["total_ms"] / 1e3 / r, 4)
            if "dock_ms" in row:
                row["dock_r"] = round(row["dock_ms"] / 1e3 / r, 4)
        print(row)
    data = {
        "command": " ".join(["python -m benchmarks.ranking_scale", *given]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "loadavg_start": load, "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "reference_encoder_s": r, "rows": rows,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranking_scale.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
