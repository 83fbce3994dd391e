"""The one intensity mapping the models see: a volume to float32 in [0, 1].

Two modes, chosen per volume:

* ``window=None`` (the default, unchanged from earlier releases): 8-bit data are divided by
  255; anything else is clipped to its 0.5-99.5 percentiles (over the whole array, all RGB
  channels together, NaNs ignored) and rescaled.
* ``window=(lo, hi)``: a fixed intensity window, e.g. the layer's contrast limits
  (:func:`window_from_contrast_limits`) or a CT preset from :data:`CT_WINDOWS` in Hounsfield
  units.  Values are clipped to the window and rescaled, whatever the dtype.

Qt-free and numpy-only, so every path (dock, CLI, child process, benchmarks) shares it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..io.hounsfield import CT_WINDOWS, DEFAULT_CT_WINDOW, looks_like_ct, suggested_window

__all__ = [
    "CT_WINDOWS",
    "DEFAULT_CT_WINDOW",
    "check_window",
    "looks_like_ct",
    "normalise_volume",
    "percentile_bounds",
    "suggested_window",
    "window_from_contrast_limits",
]


def percentile_bounds(volume: np.ndarray) -> tuple[float, float]:
    """The (lo, hi) of the default mapping: (0, 255) for uint8, else the 0.5 and 99.5
    percentiles of the finite values ((0, 0) when there are none)."""
    a = np.asarray(volume)
    if a.dtype == np.uint8:
        return 0.0, 255.0
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return float(lo), float(hi)


def check_window(window: Sequence[float], what: str = "intensity window") -> tuple[float, float]:
    """``window`` as a float ``(lo, hi)`` pair; ValueError unless both are finite and lo < hi."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be two numbers (lo, hi), got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(
            f"{what} ({lo:g}, {hi:g}) is empty or not finite: the upper bound must be above"
            " the lower one (widen the contrast limits or pick a CT preset)"
        )
    return lo, hi


def normalise_volume(
    volume: np.ndarray,
    rgb: bool = False,
    window: Sequence[float] | None = None,
    *,
    bounds: Sequence[float] | None = None,
) -> np.ndarray:
    """``volume`` as float32 in [0, 1], same shape.

    ``window=None``: uint8 / 255, else the 0.5-99.5 percentile stretch of the whole array (a
    constant array maps to zeros).  ``window=(lo, hi)``: clip to the window and rescale.
    ``bounds=(lo, hi)``: the (lo, hi) recorded when another volume was normalised (a stack's
    ``norm_info``), applied as a window; an empty pair (that volume was constant) maps to zeros
    as the default mapping did.  NaNs become 0 in every mode.  ``rgb`` only documents that a
    trailing axis of 3 is colour: the mapping is joint over channels either way, so colours
    keep their balance.
    """
    del rgb  # joint over channels either way
    a = np.asarray(volume)
    if bounds is not None:
        if window is not None:
            raise ValueError("normalise_volume: give a window or recorded bounds, not both")
        if float(bounds[1]) <= float(bounds[0]):
            return np.zeros(a.shape, np.float32)
        window = bounds
    if window is None:
        if a.dtype == np.uint8:
            return a.astype(np.float32) / np.float32(255.0)
        a = a.astype(np.float32)
        lo, hi = percentile_bounds(a)
        if hi <= lo:
            return np.zeros(a.shape, np.float32)
    else:
        lo, hi = check_window(window)
        a = a.astype(np.float32)
    out = (np.nan_to_num(a, nan=lo) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def window_from_contrast_limits(limits: Sequence[float]) -> tuple[float, float]:
    """The window ``(lo, hi)`` that a napari layer's ``contrast_limits`` show on screen, so the
    model sees what the user sees.  ValueError for an empty or non-finite range."""
    return check_window(limits, "contrast limits")
