"""The "SynFoC demo: mixed-scanner stack" sample: synthetic slices from three simulated scanners.

Everything is generated here from a seed (no downloaded or copied data).  Each slice shows a body
cross-section holding one organ-like object (smooth irregular outline, mottled texture, thin dark
capsule) whose mask is the ground truth, plus distractors: brighter small spots (so the object
is not the brightest thing), smaller decoy blobs of the same mean brightness but without a capsule,
and a dark curved vessel.  Each scanner then applies its own gamma/gain/offset, blur, smooth
multiplicative bias field and noise, so the domains differ the way real scanners do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_synfoc.io.geometry import Geometry


@dataclass(frozen=True)
class Scanner:
    """How one simulated scanner turns tissue values in [0, 1] into image intensities."""

    name: str
    gamma: float
    gain: float
    offset: float
    blur: float  # point-spread sigma in pixels (0: sharp)
    bias: float  # amplitude of the smooth multiplicative bias field
    noise: float  # standard deviation of additive Gaussian noise


SCANNERS: tuple[Scanner, ...] = (
    Scanner("scanner A", gamma=1.0, gain=1.0, offset=0.0, blur=0.0, bias=0.08, noise=0.03),
    Scanner("scanner B", gamma=0.55, gain=0.7, offset=0.25, blur=0.8, bias=0.25, noise=0.06),
    Scanner("scanner C", gamma=1.8, gain=1.5, offset=-0.05, blur=1.3, bias=0.35, noise=0.09),
)
LABELLED_SLICES: tuple[int, ...] = (0, 1)  # two slices of scanner A carry labels in the sample
IMAGE_NAME = "SynFoC demo image"
LABELS_NAME = "SynFoC demo labels"


def slice_domains(n_slices: int) -> list[int]:
    """Scanner index of each slice: contiguous, near-equal blocks A.., B.., C.."""
    out: list[int] = []
    for k, block in enumerate(np.array_split(np.arange(n_slices), len(SCANNERS))):
        out += [k] * len(block)
    return out


def _texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    t = ndi.gaussian_filter(rng.standard_normal((size, size)), sigma)
    return t / (t.std() + 1e-8)


def _blob(yy, xx, cy, cx, r0, rng, n_harmonics: int = 5, rough: float = 0.25) -> np.ndarray:
    """Mask of a star-shaped blob r < r0 (1 + sum_k a_k cos(k theta + phi_k)), k = 2..n."""
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.hypot(yy - cy, xx - cx)
    rad = np.ones_like(theta)
    for k in range(2, n_harmonics + 1):
        rad += rng.uniform(0, rough / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r < r0 * rad


def _tissue_slice(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scanner-independent tissue map in [0, 1] and its organ mask."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (s - 1) / 2
    body = ((yy - c) / (s * rng.uniform(0.42, 0.47))) ** 2 + (
        (xx - c) / (s * rng.uniform(0.38, 0.46))
    ) ** 2 < 1
    tissue = 0.30 + 0.05 * _texture(rng, size, 1.2) + 0.04 * _texture(rng, size, 6.0)

    # dark curved vessel crossing the body (drawn first: the organ covers it)
    x0, amp, ph = rng.uniform(0.3, 0.7) * s, rng.uniform(0.05, 0.15) * s, rng.uniform(0, 6.3)
    path = x0 + amp * np.sin(2 * np.pi * yy / s * rng.uniform(0.7, 1.5) + ph)
    tissue[np.abs(xx - path) < rng.uniform(1.0, 2.0)] = 0.12

    # the organ: smooth irregular outline, mottled texture, thin dark capsule
    cy, cx = c + rng.uniform(-0.12, 0.12, size=2) * s
    organ = _blob(yy, xx, cy, cx, rng.uniform(0.15, 0.21) * s, rng) & body
    d_out = ndi.distance_transform_edt(~organ)
    tissue[(d_out > 0) & (d_out <= 1.8)] = 0.14
    tissue[organ] = 0.55 + 0.07 * _texture(rng, size, 3.0)[organ]

    # distractors away from the organ: decoys (organ brightness, fine texture, no capsule)
    # and small spots brighter than anything in the organ
    fine = _texture(rng, size, 0.7)
    placed = 0
    for _ in range(60):
        if placed >= 6:
            break
        py, px = rng.uniform(0.12, 0.88, size=2) * s
        decoy = placed < 2
        r = rng.uniform(0.06, 0.09) * s if decoy else rng.uniform(0.025, 0.05) * s
        m = _blob(yy, xx, py, px, r, rng, n_harmonics=3, rough=0.15)
        if not m.any() or not body[m].all() or d_out[m].min() < 4:
            continue
        tissue[m] = (0.55 + 0.07 * fine[m]) if decoy else rng.uniform(0.85, 0.95)
        placed += 1

    tissue[~body] = 0.02
    return np.clip(tissue, 0.0, 1.0), organ


def _scan(tissue: np.ndarray, sc: Scanner, rng: np.random.Generator) -> np.ndarray:
    size = tissue.shape[0]
    v = sc.gain * tissue**sc.gamma + sc.offset
    if sc.blur > 0:
        v = ndi.gaussian_filter(v, sc.blur)
    yy, xx = np.mgrid[0:size, 0:size] / size
    field = np.zeros_like(v)
    for _ in range(3):
        fy, fx = rng.uniform(-1.2, 1.2, size=2)
        field += np.cos(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    field /= np.abs(field).max() + 1e-8
    v = v * (1.0 + sc.bias * field) + sc.noise * rng.standard_normal(v.shape)
    return v


def make_demo_stack(
    n_slices: int = 12, size: int = 128, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The demo stack: image (Z, Y, X) float32, full ground truth (Z, Y, X) uint8 (1 = object)
    and each slice's scanner name.  Deterministic for a seed; slice ``i`` depends only on
    ``(seed, i)`` and its scanner."""
    if n_slices < 1 or size < 32:
        raise ValueError(f"need n_slices >= 1 and size >= 32, got {n_slices} and {size}")
    doms = slice_domains(n_slices)
    image = np.empty((n_slices, size, size), np.float32)
    labels = np.empty((n_slices, size, size), np.uint8)
    for i, d in enumerate(doms):
        rng = np.random.default_rng([seed, i])
        tissue, organ = _tissue_slice(rng, size)
        image[i] = _scan(tissue, SCANNERS[d], rng)
        labels[i] = organ
    return image, labels, [SCANNERS[d].name for d in doms]


def demo_ground_truth(n_slices: int = 12, size: int = 128, seed: int = 0) -> np.ndarray:
    """The full ground truth of :func:`make_demo_stack` (every slice labelled)."""
    return make_demo_stack(n_slices, size, seed)[1]


def sparse_labels(labels: np.ndarray, slices: tuple[int, ...] = LABELLED_SLICES) -> np.ndarray:
    """A copy of ``labels`` with every slice outside ``slices`` set to 0 (unlabelled)."""
    out = np.zeros_like(labels)
    keep = [s for s in slices if 0 <= s < labels.shape[0]]
    out[keep] = labels[keep]
    return out


def make_sample_data(
    n_slices: int = 12, size: int = 128, seed: int = 0
) -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample data: the demo image plus a Labels layer with only slices 0 and 1 labelled."""
    image, gt, domains = make_demo_stack(n_slices, size, seed)
    labelled = [s for s in LABELLED_SLICES if s < n_slices]
    geom = Geometry.identity(3)
    img_kw = geom.to_layer_kwargs()
    img_kw["metadata"].update(
        synfoc_sample="synfoc_demo",
        synfoc_domains=domains,
        synfoc_scanners={s.name: asdict(s) for s in SCANNERS},
        synfoc_labelled_slices=labelled,
    )
    img_kw.update(name=IMAGE_NAME, colormap="gray")
    lab_kw = geom.to_layer_kwargs()
    lab_kw["metadata"].update(synfoc_sample="synfoc_demo", synfoc_labelled_slices=labelled)
    lab_kw["name"] = LABELS_NAME
    return [(image, img_kw, "image"), (sparse_labels(gt, tuple(labelled)), lab_kw, "labels")]
