"""The prediction overlay layers: created once, then updated in place (GUI thread, cheap).

Names are fixed so users and scripts can find them; the layers copy the image's geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.review import ReviewMaps, squeeze_single

MEDSAM = "MedSAM prediction"
UNET = "U-Net prediction"
CONSENSUS = "Consensus (M_c)"
DIVERGENCE = "Divergence (M_d)"
HEAT = "Disagreement"
LABEL_OVERLAYS = (MEDSAM, UNET, CONSENSUS, DIVERGENCE)
OVERLAY_NAMES = (*LABEL_OVERLAYS, HEAT)

# name -> (ReviewMaps field, visible when first created, opacity)
_SPEC = {
    HEAT: ("heat", True, 0.55),
    MEDSAM: ("fm_label", False, 0.5),
    UNET: ("unet_label", False, 0.5),
    CONSENSUS: ("consensus", True, 0.45),
    DIVERGENCE: ("divergence", True, 0.6),
}


def layer_geometry(image_layer: Any) -> dict[str, Any]:
    """scale / translate / rotate / shear / affine of ``image_layer`` (spatial axes only)."""
    return {
        "scale": tuple(image_layer.scale),
        "translate": tuple(image_layer.translate),
        "rotate": np.asarray(image_layer.rotate),
        "shear": np.asarray(image_layer.shear),
        "affine": np.asarray(image_layer.affine.affine_matrix),
    }


def spatial_ndim(image_layer: Any) -> int:
    """Spatial dimensions of an image layer (its RGB axis excluded)."""
    return int(image_layer.ndim)


def _divergence_colormap():
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "magenta"})


def update_overlays(
    viewer: Any,
    maps: ReviewMaps,
    image_layer: Any,
    below: Any = None,
    names: Sequence[str] | None = None,
    max_new: int | None = None,
) -> list[str]:
    """Create or update the overlay layers ``names`` (default: all five) from ``maps``.

    Existing layers keep their view settings (colormap, opacity, visibility); only their data and
    geometry change.  At most ``max_new`` layers are created per call; the names still missing
    are returned.  New layers go just below ``below`` (the user's Labels layer) so painting
    stays on top, and the active layer is kept.
    """
    from napari.layers import Image, Labels

    two_d = spatial_ndim(image_layer) == 2
    geom = layer_geometry(image_layer)
    active = viewer.layers.selection.active
    missing: list[str] = []
    created = 0
    for name, (field, visible, opacity) in _SPEC.items():
        if names is not None and name not in names:
            continue
        data = squeeze_single(getattr(maps, field), two_d)
        kind = "image" if name == HEAT else "labels"
        layer = viewer.layers[name] if name in viewer.layers else None
        if layer is not None and not isinstance(layer, Image if kind == "image" else Labels):
            viewer.layers.remove(layer)
            layer = None
        if layer is None and max_new is not None and created >= max_new:
            missing.append(name)
            continue
        if layer is None:
            created += 1
            if kind == "image":
                layer = viewer.add_image(
                    data, name=name, colormap="inferno", contrast_limits=(0.0, 1.0),
                    blending="additive", opacity=opacity, visible=visible, **geom,
                )  # fmt: skip
            else:
                layer = viewer.add_labels(
                    data, name=name, opacity=opacity, visible=visible, **geom
                )
                if name == DIVERGENCE:
                    layer.colormap = _divergence_colormap()
            _place_below(viewer, layer, below)
        else:
            for key, val in geom.items():
                if key in ("scale", "translate") and tuple(getattr(layer, key)) != tuple(val):
                    setattr(layer, key, val)
            layer.data = data
            if kind == "image":
                layer.contrast_limits = (0.0, 1.0)
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return missing


def _place_below(viewer: Any, layer: Any, below: Any) -> None:
    if below is None or below not in viewer.layers:
        return
    src = viewer.layers.index(layer)
    dst = viewer.layers.index(below)
    if src > dst:
        viewer.layers.move(src, dst)
