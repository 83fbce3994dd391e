"""The prompt tool's napari layers: their names, how each is made, and the prompts they hold on
one slice (no Qt; napari's layer classes are imported when a layer is made)."""

from __future__ import annotations

from typing import Any

import numpy as np

PROMPTS = "SynFoC prompts"
POINTS = "SynFoC points"
PROPOSALS = "SynFoC proposals"
PROMPT_LAYERS = (PROMPTS, POINTS, PROPOSALS)


def new_prompt_layer(name: str, kind: str, ref: Any) -> Any:
    """A new "shapes" (yellow box outlines), "points" (``positive`` feature: lime / red) or
    "labels" (proposals) layer named ``name`` with the geometry of layer ``ref``."""
    from napari.layers import Labels, Points, Shapes

    nd = ref.ndim
    geom = {"scale": ref.scale[-nd:], "translate": ref.translate[-nd:]}
    if kind == "shapes":
        return Shapes(ndim=nd, name=name, edge_color="yellow", face_color="transparent",
                      edge_width=1.5, **geom)  # fmt: skip
    if kind == "points":
        layer = Points(
            np.zeros((0, nd)), ndim=nd, name=name, features={"positive": np.zeros(0, bool)},
            face_color="positive", face_color_cycle={True: "lime", False: "red"},
            size=max(3.0, min(np.shape(ref.data)[-2:]) / 60), **geom,
        )  # fmt: skip
        layer.feature_defaults["positive"] = True
        return layer
    return Labels(np.zeros(np.shape(ref.data), np.asarray(ref.data).dtype), name=name,
                  opacity=0.5, **geom)  # fmt: skip


def prompts_on(shapes: Any, points: Any, z: int):
    """The prompts of slice ``z`` in the ``shapes`` and ``points`` layers (either may be None):
    (the last box's vertices or None, the points or None, their labels, the slices that hold
    points elsewhere)."""
    box, pts, labs, other = None, None, None, []
    if shapes is not None and len(shapes.data):
        on = [v for v in shapes.data if v.shape[1] == 2 or np.all(np.round(v[:, 0]) == z)]
        box = np.asarray(on[-1]) if on else None
    if points is not None and len(points.data):
        d = np.asarray(points.data)
        here = np.ones(len(d), bool) if d.shape[1] == 2 else np.round(d[:, 0]) == z
        other = sorted({int(round(v)) for v in d[~here, 0]}) if d.shape[1] == 3 else []
        if here.any():
            pts = d[here]
            labs = points.features["positive"].to_numpy()[here].astype(int).tolist()
    return box, pts, labs, other
