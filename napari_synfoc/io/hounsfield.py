"""Hounsfield units: the CT window presets and how a CT is recognised (numpy only).

The reader opens a CT in the soft-tissue window, and the dock starts its intensity choice there;
:mod:`napari_synfoc.core.intensity` maps volumes through these windows for the models.
"""

from __future__ import annotations

import numpy as np

#: CT windows in Hounsfield units as (lo, hi) = (level - width/2, level + width/2).
#: soft tissue W400/L40, lung W1500/L-600, bone W1500/L300.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
}


#: The CT preset a CT in Hounsfield units starts from (the dock and the reader).
DEFAULT_CT_WINDOW = "soft tissue"


def looks_like_ct(volume: np.ndarray, max_samples: int = 200_000) -> bool:
    """True when ``volume`` reads as a CT in Hounsfield units: signed integers or floats with at
    least 2 % of the values in air (-1100..-850 HU) and a 99th percentile of at least soft
    tissue (≥ 0 HU).  Padding outside the scanner's field of view (-2048, -3024) is ignored.
    MR, ultrasound, photographs and normalised data never hold air at about -1000.  Looks at an
    evenly strided sample of at most ``max_samples`` values (cheap on a big volume).
    """
    a = np.asarray(volume)
    if a.dtype.kind not in "if" or a.size == 0:
        return False
    # the same stride on every axis: a view, never a copy of the volume (a reoriented volume is
    # not contiguous, and reshape(-1) would copy it whole)
    step = max(1, int(np.ceil((a.size / max_samples) ** (1.0 / a.ndim))))
    sample = a[(slice(None, None, step),) * a.ndim].astype(np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return False
    air = float(np.mean((sample >= -1100.0) & (sample <= -850.0)))
    return bool(air >= 0.02 and np.percentile(sample, 99) >= 0.0)


def suggested_window(volume: np.ndarray) -> str | None:
    """The CT preset name (a key of :data:`CT_WINDOWS`) to start from, or None for the default
    percentile mapping."""
    return DEFAULT_CT_WINDOW if looks_like_ct(volume) else None
