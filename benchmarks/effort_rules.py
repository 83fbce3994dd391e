"""The robot annotator's rules (benchmarks.md §6), Qt-free numpy: what an action costs, how it
looks at the reference, and when a volume is finished.

- **Costs** (:data:`COSTS`): a box, a click, accepting one slice, one "accept many", marking a
  slice empty: 1 each; a brush correction: 1 per connected error region it paints.
- **Corrections** (:func:`correction_plan`): the error pixels of a slice (label differs from the
  reference) split into connected regions per reference value (8-connected; the value is what
  the stroke paints, 0 erases).  Regions of at least :data:`MIN_REGION_PIXELS` are painted,
  largest first, until the slice meets the target; only if the slice still misses it are the
  smaller regions painted too (1 each).  A person would not paint a stray 3-pixel speck.
- **Boxes** (:func:`boxes_for_slice`): one per connected part (at least
  :data:`MIN_REGION_PIXELS`) of each class on the slice in front of the robot, from the
  reference: the box a person would draw.
- **Finished** (:func:`slice_ok`, :func:`failing_slices`): on every slice, each class the
  reference holds has Dice >= ``target`` (0.90); each class it does not hold covers at most
  ``empty_max`` (20) voxels of the labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

COSTS = {"box": 1, "click": 1, "accept": 1, "accept_many": 1, "mark_empty": 1, "brush": 1}
MIN_REGION_PIXELS = 10
TARGET_DICE = 0.90
EMPTY_MAX_VOXELS = 20
EIGHT = np.ones((3, 3), bool)


def class_dice(label: np.ndarray, ref: np.ndarray, cls: int) -> float:
    """Dice of class ``cls`` between two label slices; 1.0 when neither holds it."""
    a, b = np.asarray(label) == cls, np.asarray(ref) == cls
    n = int(a.sum() + b.sum())
    return 1.0 if n == 0 else 2.0 * float((a & b).sum()) / n


def slice_ok(
    label: np.ndarray,
    ref: np.ndarray,
    classes: Iterable[int],
    target: float = TARGET_DICE,
    empty_max: int = EMPTY_MAX_VOXELS,
) -> bool:
    """The stop rule on one slice: every class of ``classes`` the reference holds has Dice >=
    ``target``; every class it does not hold covers at most ``empty_max`` pixels of ``label``."""
    lab, r = np.asarray(label), np.asarray(ref)
    for c in classes:
        if (r == c).any():
            if class_dice(lab, r, c) < target:
                return False
        elif int((lab == c).sum()) > empty_max:
            return False
    return True


def failing_slices(
    labels: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    target: float = TARGET_DICE,
    empty_max: int = EMPTY_MAX_VOXELS,
    classes: Iterable[int] | None = None,
) -> list[int]:
    """Slices of a (Z, Y, X) volume that break :func:`slice_ok` (empty: the volume is finished);
    ``classes``: only these (default: every class of ``num_classes``)."""
    classes = range(1, int(num_classes)) if classes is None else list(classes)
    return [
        z for z in range(len(ref)) if not slice_ok(labels[z], ref[z], classes, target, empty_max)
    ]


def mean_class_dice(labels: np.ndarray, ref: np.ndarray, num_classes: int) -> dict[int, float]:
    """Per class, the mean Dice over the slices whose reference holds it (a volume's score)."""
    out = {}
    for c in range(1, int(num_classes)):
        zs = [z for z in range(len(ref)) if (ref[z] == c).any()]
        if zs:
            out[c] = float(np.mean([class_dice(labels[z], ref[z], c) for z in zs]))
    return out


@dataclass
class Region:
    """One connected error region: the value a stroke paints there and its pixels."""

    value: int
    mask: np.ndarray

    @property
    def size(self) -> int:
        return int(self.mask.sum())


def error_regions(label: np.ndarray, ref: np.ndarray) -> list[Region]:
    """The connected regions (8-connected) where ``label`` differs from ``ref``, split by the
    reference value to paint; largest first (ties: lower value, then first pixel)."""
    from scipy import ndimage as ndi

    lab, r = np.asarray(label), np.asarray(ref)
    wrong = lab != r
    regions = []
    for v in np.unique(r[wrong]):
        comp, n = ndi.label(wrong & (r == v), structure=EIGHT)
        for i in range(1, n + 1):
            regions.append(Region(int(v), comp == i))
    regions.sort(key=lambda g: (-g.size, g.value, int(np.argmax(g.mask))))
    return regions


def correction_plan(
    label: np.ndarray,
    ref: np.ndarray,
    classes: Iterable[int],
    target: float = TARGET_DICE,
    empty_max: int = EMPTY_MAX_VOXELS,
    min_pixels: int = MIN_REGION_PIXELS,
) -> tuple[np.ndarray, list[Region]]:
    """The slice after brush corrections from the reference, and the regions painted (each costs
    1): regions of at least ``min_pixels``, largest first, until :func:`slice_ok`; then smaller
    ones if it still fails.  Nothing is painted on a slice that already passes."""
    cls = list(classes)
    out = np.array(label, copy=True)
    painted: list[Region] = []
    if slice_ok(out, ref, cls, target, empty_max):
        return out, painted
    regions = error_regions(out, ref)
    big = [g for g in regions if g.size >= min_pixels]
    small = [g for g in regions if g.size < min_pixels]
    for group in (big, small):
        for g in group:
            out[g.mask] = g.value
            painted.append(g)
            if slice_ok(out, ref, cls, target, empty_max):
                return out, painted
    return out, painted


def strokes(label: np.ndarray, ref: np.ndarray, classes: Iterable[int]) -> int:
    """Brush strokes to finish one slice (:func:`correction_plan`'s painted regions)."""
    return len(correction_plan(label, ref, classes)[1])


def visit_action(n_fix: int, n_paint: int) -> str:
    """What a person does on a visited slice, from the strokes that finish the proposal
    (``n_fix``) and the slice as it is (``n_paint``): ``"accept"`` it and fix it (1 + n_fix)
    when that is no dearer, else ``"empty"`` (mark it empty: 1) or ``"paint"`` (n_paint)."""
    if n_fix == 0 or 1 + n_fix <= max(n_paint, 1):
        return "accept"
    return "empty" if n_paint == 0 else "paint"


def boxes_for_slice(ref: np.ndarray, classes: Iterable[int], min_pixels: int = MIN_REGION_PIXELS):
    """``[(cls, (x0, y0, x1, y1))]``: one box per connected part of each class of ``classes`` on
    a reference slice (parts under ``min_pixels`` get none), largest part of a class first."""
    from scipy import ndimage as ndi

    r = np.asarray(ref)
    out = []
    for c in classes:
        comp, n = ndi.label(r == c, structure=EIGHT)
        parts = []
        for i in range(1, n + 1):
            ys, xs = np.nonzero(comp == i)
            if ys.size >= min_pixels:
                box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
                parts.append((ys.size, box))
        parts.sort(key=lambda p: -p[0])
        out += [(int(c), (b[0], b[1], max(b[2], b[0] + 1), max(b[3], b[1] + 1))) for _, b in parts]
    return out


def box_vertices(z: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """A napari Shapes rectangle ``4×3`` ``(z, row, col)`` from ``(x0, y0, x1, y1)`` on slice z."""
    x0, y0, x1, y1 = box
    return np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], dtype=np.float64)


def click_for(label: np.ndarray, ref: np.ndarray, cls: int) -> tuple[tuple[int, int], bool] | None:
    """Where a person clicks to fix class ``cls``: the innermost pixel of its largest error
    region, ``((row, col), positive)`` (positive: the region should be ``cls``); None when the
    class is already exact."""
    from scipy import ndimage as ndi

    lab, r = np.asarray(label), np.asarray(ref)
    wrong = ((lab == cls) | (r == cls)) & (lab != r)
    if not wrong.any():
        return None
    comp, n = ndi.label(wrong, structure=EIGHT)
    sizes = ndi.sum(wrong, comp, range(1, n + 1))
    region = comp == 1 + int(np.argmax(sizes))
    dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]  # the border is outside
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (int(row), int(col)), bool(r[row, col] == cls)


@dataclass
class Ledger:
    """Interactions counted by kind, with one record per change of the volume's state.

    ``clock``: seconds the robot has waited (set by the driver); :meth:`add` appends a record of
    the running totals so curves of Dice against interactions and minutes can be drawn.
    """

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COSTS, 0))
    records: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(sum(COSTS[k] * n for k, n in self.counts.items()))

    def add(self, kind: str, n: int = 1) -> int:
        """Count ``n`` actions of ``kind``; returns the new total."""
        if kind not in COSTS:
            raise ValueError(f"unknown interaction {kind!r}; choose from {tuple(COSTS)}")
        if n < 0:
            raise ValueError("an interaction count cannot be negative")
        self.counts[kind] += int(n)
        return self.total

    def record(self, seconds: float, **values) -> None:
        """A point of the curves: the running total and ``values`` (e.g. Dice) at ``seconds``."""
        self.records.append({"interactions": self.total, "seconds": round(seconds, 2), **values})


def interaction_cap(baseline_interactions: int | None, factor: float = 3.0) -> int | None:
    """The most interactions a run may use: ``factor`` times the baseline's (None: no cap)."""
    if baseline_interactions is None:
        return None
    return int(np.ceil(factor * baseline_interactions))
