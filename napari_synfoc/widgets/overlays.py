"""The prediction overlay layers: created once, then updated in place (GUI thread, cheap).

Names are fixed so users and scripts can find them; the layers copy the image's geometry.

Adding a layer to a napari viewer is the expensive part: 70-130 ms of the GUI thread each on a
2-core machine (vispy visuals, Qt layer controls, and napari making each new layer the active
one, which the widget then undoes).  So the widget creates them one per event-loop turn
(``max_new=1``), and ``defer=True`` splits each add in two:
a Labels layer is added with its painting-tool overlays (polygon, brush stroke) hidden, which
halves the cost of the add, the heat map hidden (~15 ms less), and :func:`finish_layer` shows
them in a later turn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from ..core.review import ReviewMaps, squeeze_single

MEDSAM = "MedSAM prediction"
UNET = "U-Net prediction"
CONSENSUS = "Consensus (M_c)"
DIVERGENCE = "Divergence (M_d)"
HEAT = "Disagreement"
LABEL_OVERLAYS = (MEDSAM, UNET, CONSENSUS, DIVERGENCE)
OVERLAY_NAMES = (*LABEL_OVERLAYS, HEAT)

# name -> (ReviewMaps field, visible when first created, opacity), in the order of creation:
# the heat map last (the costliest add; measured 15-30% cheaper after the others than first)
_SPEC = {
    MEDSAM: ("fm_label", False, 0.5),
    UNET: ("unet_label", False, 0.5),
    CONSENSUS: ("consensus", True, 0.45),
    DIVERGENCE: ("divergence", True, 0.6),
    HEAT: ("heat", True, 0.55),
}
# the layer stack, bottom to top (just below the user's Labels layer)
STACK_ORDER = (HEAT, MEDSAM, UNET, CONSENSUS, DIVERGENCE)


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


# A Labels layer's painting-tool overlays (napari creates them visible; their vispy visuals are
# built when the layer joins a canvas, only for visible overlays).
TOOL_OVERLAYS = ("polygon", "brush_stroke")
# layer -> what finish_layer must show: names of tool overlays, and "" for the layer itself
_unfinished: WeakKeyDictionary[Any, tuple[str, ...]] = WeakKeyDictionary()


def _defer(layer: Any) -> None:
    """Hide the costly parts of a layer not yet in a viewer, for :func:`finish_layer`."""
    found = getattr(layer, "_overlays", {})
    hidden = tuple(k for k in TOOL_OVERLAYS if k in found and found[k].visible)
    for key in hidden:
        found[key].visible = False
    if not hidden and layer.visible:  # no tool overlays (the heat map): hide the layer itself
        layer.visible = False
        hidden = ("",)
    if hidden:
        _unfinished[layer] = hidden


def unfinished_layers(viewer: Any, tools: bool = True) -> list[Any]:
    """The viewer's overlay layers added with ``defer=True`` and not yet finished.

    ``tools=False``: only those whose display is hidden (the heat map), not the Labels layers
    that lack only their painting-tool overlays (those matter once a user activates the layer
    to paint; the dock finishes them then).
    """
    return [
        layer
        for layer, hidden in list(_unfinished.items())
        if layer in viewer.layers and (tools or "" in hidden)
    ]


def finish_layer(layer: Any) -> bool:
    """Show what ``defer`` hid (True if anything): the layer is then exactly as napari's
    ``add_labels`` / ``add_image`` would have made it.  Costs ~6-30 ms (vispy visuals)."""
    hidden = _unfinished.pop(layer, ())
    for key in hidden:
        if key:
            layer._overlays[key].visible = True
        else:
            layer.visible = True
    return bool(hidden)


@contextmanager
def _keep_selection(viewer: Any) -> Iterator[None]:
    """Insert overlay layers without changing the selection, and without telling anyone.

    napari makes every inserted layer the active one, which swaps the layer-controls panel in and
    back out (~40 ms of the GUI thread per layer on a 2-core machine).  The selection's events
    are blocked while the layers go in (``EmitterGroup.blocker_all``, napari's public event API)
    and the user's selection is put back before they are released, so no view ever sees the
    detour.  No private napari attribute is touched: a plugin's viewer is a proxy that warns on
    each.
    """
    layers = viewer.layers
    sel = layers.selection
    before = list(sel)
    with sel.events.blocker_all():
        try:
            yield
        finally:
            sel.clear()  # one selected layer is the active one again (napari derives it)
            sel.update(layer for layer in before if layer in layers)


def _new_layer(name: str, data: np.ndarray, geom: dict[str, Any], defer: bool) -> Any:
    """The napari layer object of overlay ``name`` (not yet in a viewer)."""
    from napari.layers import Image, Labels

    _, visible, opacity = _SPEC[name]
    if name == HEAT:
        layer = Image(
            data, name=name, colormap="inferno", contrast_limits=(0.0, 1.0),
            blending="additive", opacity=opacity, visible=visible, **geom,
        )  # fmt: skip
    else:
        cmap = _divergence_colormap() if name == DIVERGENCE else None
        layer = Labels(data, name=name, opacity=opacity, visible=visible, colormap=cmap, **geom)
    if defer:
        _defer(layer)
    return layer


def update_overlays(
    viewer: Any,
    maps: ReviewMaps,
    image_layer: Any,
    below: Any = None,
    names: Sequence[str] | None = None,
    max_new: int | None = None,
    defer: bool = False,
) -> list[str]:
    """Create or update the overlay layers ``names`` (default: all five) from ``maps``.

    Existing layers keep their view settings (colormap, opacity, visibility); only their data and
    geometry change.  At most ``max_new`` layers are created per call (0: none, only updates);
    the names still missing are returned.  New layers are inserted just below ``below`` (the
    user's Labels layer) so painting stays on top, in ``STACK_ORDER``, and the active layer is
    given back.
    ``defer``: new layers come with their costly parts hidden (Labels: the tool overlays; the
    heat map: itself); call :func:`finish_layer` on each of :func:`unfinished_layers` later.
    """
    from napari.layers import Image, Labels

    two_d = spatial_ndim(image_layer) == 2
    geom = layer_geometry(image_layer)
    missing: list[str] = []
    created = 0
    with _keep_selection(viewer):
        for name, (field, _visible, _opacity) in _SPEC.items():
            if names is not None and name not in names:
                continue
            kind = Image if name == HEAT else Labels
            layer = viewer.layers[name] if name in viewer.layers else None
            if layer is not None and not isinstance(layer, kind):
                viewer.layers.remove(layer)
                layer = None
            if layer is None and max_new is not None and created >= max_new:
                missing.append(name)
                continue
            data = squeeze_single(getattr(maps, field), two_d)
            if layer is None:
                created += 1
                # straight to its place: an append followed by a move redraws the scene twice
                viewer.layers.insert(
                    _insert_index(viewer, name, below), _new_layer(name, data, geom, defer)
                )
            else:
                for key, val in geom.items():
                    if key in ("scale", "translate") and tuple(getattr(layer, key)) != tuple(val):
                        setattr(layer, key, val)
                layer.data = data
                if kind is Image:
                    layer.contrast_limits = (0.0, 1.0)
    return missing


def _insert_index(viewer: Any, name: str, below: Any) -> int:
    """Where overlay ``name`` goes: under the overlays that stack above it (``STACK_ORDER``),
    else just below ``below``, else at the top."""
    above = STACK_ORDER[STACK_ORDER.index(name) + 1 :]
    present = [viewer.layers.index(n) for n in above if n in viewer.layers]
    if present:
        return min(present)
    if below is None or below not in viewer.layers:
        return len(viewer.layers)
    return viewer.layers.index(below)
