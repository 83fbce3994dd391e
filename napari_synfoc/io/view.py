"""Upright slice views for layers in patient coordinates (Qt-free; works on a ViewerModel).

Layers read by this plugin live in patient millimetres with world axes (S, P, L) (LPS
reversed, see :mod:`napari_synfoc.io.geometry`).  napari draws the vertical axis of a 2D view
increasing downwards, which is right for axial slices (anterior at the top, the patient's left
on the right: radiological convention) but puts the head at the bottom of coronal and sagittal
slices.  :func:`keep_views_upright` flips the vertical axis whenever it is the S axis.
"""

from __future__ import annotations

import weakref
from typing import Any

_WATCHED: dict[int, weakref.ref] = {}


def upright_orientation2d(ndim: int, displayed: tuple[int, ...]) -> tuple[str, str]:
    """The camera ``orientation2d`` (vertical, horizontal) that shows a 2D view upright.

    ``displayed`` are the two world axes on screen (vertical first).  The superior axis is
    world axis ``ndim - 3``: it points up; every other axis keeps napari's default.
    """
    vertical = "up" if ndim >= 3 and displayed[0] == ndim - 3 else "down"
    return vertical, "right"


def keep_views_upright(viewer: Any) -> None:
    """Keep ``viewer``'s 2D views upright as the user changes the displayed axes (idempotent)."""
    key = id(viewer)
    ref = _WATCHED.get(key)
    if ref is not None and ref() is viewer:
        return

    def update(event: Any = None) -> None:
        dims = viewer.dims
        if dims.ndisplay != 2:
            return
        wanted = upright_orientation2d(dims.ndim, tuple(dims.displayed))
        if tuple(viewer.camera.orientation2d) != wanted:
            viewer.camera.orientation2d = wanted

    for name in ("order", "ndisplay", "ndim"):
        getattr(viewer.dims.events, name).connect(update)
    _WATCHED[key] = weakref.ref(viewer)
    update()


def upright_current_viewer() -> None:
    """:func:`keep_views_upright` on napari's current viewer, when napari runs one."""
    import sys

    napari = sys.modules.get("napari")
    if napari is None:
        return
    viewer = napari.current_viewer()
    if viewer is not None:
        keep_views_upright(viewer)
