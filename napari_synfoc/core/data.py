"""Samples, decoding, in-memory stacks, torch datasets and the infinite loader.

A :class:`Sample` is one 2-D training/test image: either files on disk (found by
:mod:`napari_synfoc.core.layouts`) or arrays held in memory (napari layers, via
:func:`samples_from_stack`).  :func:`load_sample_arrays` turns it into a float32 ``(C, H, W)``
image in [0, 1] and an int64 ``(H, W)`` map of class indices.

Intensity normalisation (:func:`~.intensity.normalise_volume`): 8-bit data are divided by 255
(what the paper's pipeline does); anything else is clipped to its 0.5-99.5 percentiles and
rescaled to [0, 1], once per volume (all channels together for RGB, so colours keep their
balance).

Determinism: a dataset item is a pure function of ``(seed, draw, index)``: it draws from
``np.random.default_rng((seed, draw, index))``.  :func:`infinite_loader` hands each item a
globally unique ``draw`` counter through its batch sampler, so which DataLoader worker computes
an item does not matter: results are identical with ``num_workers=0`` or ``> 0``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .augment import resize_pair, strong_augment, weak_augment
from .intensity import check_window, normalise_volume, percentile_bounds

ENCODINGS = ("index", "binary", "map", "prostate", "fundus", "drishti", "mnms", "busi")


class DataError(ValueError):
    """Bad input data: a readable message naming the file, folder or array at fault."""


@dataclass
class Sample:
    """One 2-D image (and optionally its label), on disk or in memory.

    ``encoding`` says how the mask file maps to class indices: ``binary`` (any non-zero is 1),
    ``map`` (``label_map``), ``prostate`` (0 = prostate, 255 = background), ``fundus``
    (0 = cup, 128 = rim, 255 = background), ``drishti`` (palette 0 bg, 1 rim, 2 cup),
    ``mnms`` (RGB one-hot: R LV, G MYO, B RV), ``busi`` (0/255 masks merged with max, including
    ``extra_mask_paths``), ``index`` (already class indices).  Decoded classes: cup = 1 and
    rim = 2 for fundus data (disc = label > 0); LV 1, MYO 2, RV 3 for M&Ms.
    ``channels`` is the number of image channels to produce (1 or 3; None keeps the file's).
    """

    name: str
    domain: str
    image_path: Path | None = None
    mask_path: Path | None = None
    image: np.ndarray | None = None
    label: np.ndarray | None = None
    extra_mask_paths: tuple[Path, ...] = ()
    encoding: str = "binary"
    label_map: dict[int, int] | None = None
    channels: int | None = None

    @property
    def has_label(self) -> bool:
        return self.label is not None or self.mask_path is not None


# ----------------------------------------------------------------------------- intensities


# ----------------------------------------------------------------------------- decoding


def _read(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except Exception as exc:  # PIL raises many types for unreadable files
        raise DataError(f"cannot read image {path}: {exc}") from None
    return img


def _image_to_chw(img: Image.Image, channels: int | None, path: Path) -> np.ndarray:
    """A PIL image as float32 (C, H, W) in [0, 1] with ``channels`` channels."""
    if img.mode in ("1", "L", "P", "LA", "PA", "RGBA", "CMYK", "YCbCr", "HSV", "LAB"):
        img = img.convert("L" if img.mode in ("1", "L", "LA") else "RGB")
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise DataError(f"unsupported image array shape {a.shape} in {path}")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / np.float32(255.0)
    else:  # 16-bit / 32-bit / float images: per-image percentile stretch
        x = normalise_volume(a)
    n = x.shape[-1]
    want = n if channels is None else channels
    if want == n:
        pass
    elif want == 1 and n == 3:
        if np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2]):
            x = x[..., :1]
        else:  # PIL "L" luma
            x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif want == 3 and n == 1:
        x = np.repeat(x, 3, axis=-1)
    else:
        raise DataError(f"cannot make {want} channel(s) from {n} in {path}")
    return np.ascontiguousarray(np.moveaxis(x, -1, 0), dtype=np.float32)


def _values(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(a)]


def _check_values(a: np.ndarray, allowed: set[int], path: Path, what: str) -> None:
    vals = set(_values(a))
    bad = sorted(vals - allowed)
    if bad:
        raise DataError(
            f"unexpected mask values {bad[:10]} in {path} (found {sorted(vals)[:12]}); "
            f"{what} masks may only hold {sorted(allowed)}"
        )


def _gray_mask(a: np.ndarray, path: Path) -> np.ndarray:
    """A (H, W) mask from grey, palette index, RGB(A) with equal channels."""
    if a.ndim == 2:
        return a
    if a.shape[-1] in (2, 4):  # drop alpha
        a = a[..., :-1]
    if a.shape[-1] == 1 or all(np.array_equal(a[..., 0], a[..., c]) for c in range(a.shape[-1])):
        return a[..., 0]
    raise DataError(f"mask {path} has differing colour channels; expected a grey-level mask")


def decode_mask(sample: Sample) -> np.ndarray:
    """Read ``sample.mask_path`` (and extra masks) and decode it into int64 class indices."""
    path = sample.mask_path
    img = _read(path)
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    enc = sample.encoding
    if enc == "mnms":
        if a.ndim != 3 or a.shape[-1] < 3:
            raise DataError(f"M&Ms mask {path} must be RGB (R = LV, G = MYO, B = RV)")
        rgb = a[..., :3]
        _check_values(rgb, {0, 255}, path, "M&Ms one-hot")
        lab = np.zeros(rgb.shape[:2], np.int64)
        for c in range(3):  # channel n -> class n + 1 (a later channel wins on overlap)
            lab[rgb[..., c] == 255] = c + 1
        return lab
    if enc == "busi":
        merged = _busi_binary(a, path)
        for extra in sample.extra_mask_paths:
            b = np.asarray(_read(extra))
            if b.dtype == bool:
                b = b.astype(np.uint8) * 255
            b = _busi_binary(b, extra)
            if b.shape != merged.shape:
                raise DataError(
                    f"mask size mismatch: {path} is {merged.shape[1]}x{merged.shape[0]} but "
                    f"{extra} is {b.shape[1]}x{b.shape[0]} (W x H)"
                )
            merged = np.maximum(merged, b)
        return merged.astype(np.int64)
    if enc == "binary":
        return (_channel_max(a) != 0).astype(np.int64)
    g = _gray_mask(a, path)
    if enc == "prostate":
        _check_values(g, {0, 255}, path, "Prostate (0 = prostate, 255 = background)")
        return (g == 0).astype(np.int64)
    if enc == "fundus":
        _check_values(g, {0, 128, 255}, path, "Fundus (0 = cup, 128 = rim, 255 = background)")
        lab = np.zeros(g.shape, np.int64)
        lab[g == 0] = 1
        lab[g == 128] = 2
        return lab
    if enc == "drishti":
        _check_values(g, {0, 1, 2}, path, "Drishti-GS (0 = background, 1 = rim, 2 = cup)")
        return np.array([0, 2, 1], np.int64)[g]
    if enc == "map":
        return apply_label_map(g, sample.label_map or {}, path)
    if enc == "index":
        if g.dtype.kind not in "iu":
            raise DataError(f"mask {path} is not an integer image ({g.dtype})")
        if g.size and g.min() < 0:
            raise DataError(f"mask {path} holds negative values {sorted(set(_values(g)))[:5]}")
        return g.astype(np.int64)
    raise DataError(f"unknown mask encoding {enc!r}; choose from {ENCODINGS}")


def _channel_max(a: np.ndarray) -> np.ndarray:
    """(H, W) from (H, W) or the max over the colour channels of (H, W, C) (alpha dropped)."""
    if a.ndim == 2:
        return a
    chans = a.shape[-1] - 1 if a.shape[-1] in (2, 4) else a.shape[-1]
    out = a[..., 0].copy()
    for c in range(1, chans):  # elementwise over views: much faster than a.max(axis=-1)
        np.maximum(out, a[..., c], out=out)
    return out


def _busi_binary(a: np.ndarray, path: Path) -> np.ndarray:
    a = _channel_max(a)
    _check_values(a, {0, 255}, path, "BUSI (lesion = 255)")
    return (a == 255).astype(np.uint8)


def apply_label_map(mask: np.ndarray, label_map: dict[int, int], path: Path | str) -> np.ndarray:
    """Map stored mask values to class indices; a value the map does not cover is an error."""
    vals = _values(mask)
    missing = [v for v in vals if v not in label_map]
    if missing:
        raise DataError(
            f"label_map {dict(label_map)} does not cover mask values {missing[:10]} in {path} "
            f"(values present: {vals[:12]})"
        )
    lut_size = max(max(vals) + 1, 1)
    if mask.dtype.kind not in "iu" or (mask.size and mask.min() < 0) or lut_size > 1 << 20:
        out = np.zeros(mask.shape, np.int64)
        for v in vals:
            out[mask == v] = label_map[v]
        return out
    lut = np.zeros(lut_size, np.int64)
    for v in vals:
        lut[v] = label_map[v]
    return lut[mask]


def _in_channels(cfg_or_params: Any) -> int | None:
    if cfg_or_params is None:
        return None
    if isinstance(cfg_or_params, (int, np.integer)):
        return int(cfg_or_params)
    if isinstance(cfg_or_params, dict):
        return cfg_or_params.get("in_channels")
    return getattr(cfg_or_params, "in_channels", None)


def _num_classes(cfg_or_params: Any) -> int | None:
    if isinstance(cfg_or_params, dict):
        return cfg_or_params.get("num_classes")
    return getattr(cfg_or_params, "num_classes", None)


def check_label_range(label: np.ndarray, num_classes: int | None, where: str) -> None:
    """Raise :class:`DataError` if ``label`` holds values outside 0..num_classes-1."""
    if label.size == 0:
        return
    lo, hi = int(label.min()), int(label.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        vals = _values(label)
        rng_txt = "0..?" if num_classes is None else f"0..{num_classes - 1}"
        raise DataError(
            f"label of {where} holds class values {vals[:12]} outside {rng_txt}"
            + ("" if num_classes is None else f" (num_classes = {num_classes})")
        )


def load_sample_arrays(
    sample: Sample, cfg_or_params: Any = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The sample's image, float32 (C, H, W) in [0, 1], and label, int64 (H, W) or None.

    ``cfg_or_params``: a :class:`SynFoCConfig`, a dict with ``in_channels``/``num_classes``,
    an int (channels) or None.  Channels come from ``sample.channels`` first, then from it.
    Labels are checked against ``num_classes`` when it is known; image and mask sizes must
    match.
    """
    channels = sample.channels if sample.channels is not None else _in_channels(cfg_or_params)
    num_classes = _num_classes(cfg_or_params)
    where = f"{sample.domain}/{sample.name}"
    if sample.image is not None:
        image = np.asarray(sample.image, dtype=np.float32)
        if image.ndim == 2:
            image = image[None]
        if channels is not None and image.shape[0] != channels:
            if channels == 3 and image.shape[0] == 1:
                image = np.repeat(image, 3, axis=0)
            else:
                raise DataError(f"{where}: image has {image.shape[0]} channels, need {channels}")
    elif sample.image_path is not None:
        image = _image_to_chw(_read(Path(sample.image_path)), channels, Path(sample.image_path))
    else:
        raise DataError(f"sample {where} has neither an image array nor an image file")
    label = None
    if sample.label is not None:
        label = np.asarray(sample.label)
        if label.dtype.kind not in "iub":
            raise DataError(f"label of {where} must be integer class indices, not {label.dtype}")
        label = label.astype(np.int64)
        if label.shape != image.shape[1:]:
            raise DataError(
                f"label of {where} has shape {label.shape} but its image is {image.shape[1:]}"
            )
    elif sample.mask_path is not None:
        label = decode_mask(sample)
        if label.shape != image.shape[1:]:
            raise DataError(
                f"image/mask size mismatch: image {sample.image_path} is "
                f"{image.shape[2]}x{image.shape[1]} but mask {sample.mask_path} is "
                f"{label.shape[1]}x{label.shape[0]} (W x H)"
            )
    if label is not None:
        check_label_range(label, num_classes, str(sample.mask_path or where))
    return image, label


# ----------------------------------------------------------------------------- napari stacks


def _as_slices(image: np.ndarray, rgb: bool, what: str) -> np.ndarray:
    """(Z, Y, X[, 3]) or (Y, X[, 3]) -> (Z, Y, X, C)."""
    a = np.asarray(image)
    if rgb:
        if a.ndim not in (3, 4) or a.shape[-1] not in (3, 4):
            raise DataError(
                f"{what}: an RGB image must be (Y, X, 3) or (Z, Y, X, 3), got shape {a.shape}"
            )
        a = a[..., :3]
        return a[None] if a.ndim == 3 else a
    if a.ndim == 2:
        return a[None, ..., None]
    if a.ndim == 3:
        return a[..., None]
    raise DataError(
        f"{what}: expected a (Y, X) image or a (Z, Y, X) stack, got shape {a.shape}"
        + (" (pass rgb=True for colour images)" if a.shape[-1:] == (3,) else "")
    )


def samples_from_stack(
    image: np.ndarray,
    labels: np.ndarray | None,
    labeled_slices: Sequence[int],
    extra_unlabeled: Sequence[np.ndarray] = (),
    rgb: bool = False,
    num_classes: int | None = None,
    window: tuple[float, float] | None = None,
) -> tuple[list[Sample], list[Sample], dict[str, Any]]:
    """Samples from a napari image (and labels) layer.

    ``image``: (Z, Y, X), (Y, X), or with ``rgb`` (Z, Y, X, 3) / (Y, X, 3).  ``labels``: the
    matching (Z, Y, X) / (Y, X) integer map.  Slices in ``labeled_slices`` become labelled
    samples (``slice_0007``, domain ``"stack"``); every other slice, and every slice of each
    ``extra_unlabeled`` array (domains ``extra1``, ``extra2``, ...), is unlabelled.  Intensities
    are normalised once per volume by :func:`~.intensity.normalise_volume` (``window``: a fixed
    intensity window for the stack and the extras, else the default mapping).  Returns
    ``(labeled, unlabeled, norm_info)`` with ``norm_info = {"lo", "hi", "method", "rgb",
    "shape"}``.
    """
    vol = _as_slices(image, rgb, "image")
    z = vol.shape[0]
    labeled_slices = [int(i) for i in labeled_slices]
    if not labeled_slices:
        raise DataError("no labelled slices: label at least one slice before training")
    lab_vol = _labels_volume(image, labels, vol, rgb)
    bad = [i for i in labeled_slices if not 0 <= i < z]
    if bad:
        raise DataError(f"labelled slice(s) {bad} outside the stack's 0..{z - 1}")
    if lab_vol is None:
        raise DataError("labelled slices were given but there is no labels layer")
    norm, norm_info = _normalise_stack(vol, image, rgb, window)
    labeled, unlabeled = _stack_samples(norm, lab_vol, sorted(set(labeled_slices)), num_classes)
    unlabeled += _extra_samples(extra_unlabeled, rgb, window, vol.shape[-1])
    return labeled, unlabeled, norm_info


def _labels_volume(
    image: np.ndarray, labels: np.ndarray | None, vol: np.ndarray, rgb: bool
) -> np.ndarray | None:
    """``labels`` as an int64 (Z, Y, X) volume matching ``vol`` (None without labels).

    Raises :class:`DataError` when the shape does not match the image or the values are not
    integers.
    """
    if labels is None:
        return None
    lab = np.asarray(labels)
    spatial = vol.shape[:3] if np.asarray(image).ndim - int(rgb) == 3 else vol.shape[1:3]
    if lab.shape != tuple(spatial):
        raise DataError(
            f"labels shape {lab.shape} does not match image shape {np.asarray(image).shape}"
            f" (expected labels of shape {tuple(spatial)})"
        )
    if lab.dtype.kind not in "iub":
        raise DataError(f"labels must be integer class indices, not {lab.dtype}")
    return lab.reshape(vol.shape[:3]).astype(np.int64)


class NormalisedSlice:
    """One slice of a stack, mapped to float32 (C, Y, X) in [0, 1] only when it is read
    (``np.asarray``): a stack's samples hold these views of the raw volume instead of a float32
    copy of the whole volume (issue 22, scale: 315 MB on a 300 x 512 x 512 CT).

    ``bounds``: the (lo, hi) of :func:`~.intensity.normalise_volume` for the whole stack (its
    window, or its percentiles), so each slice maps as the whole-volume call maps it; None:
    8-bit data divided by 255.
    """

    __slots__ = ("_src", "_bounds")
    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, src_yxc: np.ndarray, bounds: tuple[float, float] | None) -> None:
        self._src = src_yxc
        self._bounds = bounds

    @property
    def shape(self) -> tuple[int, int, int]:
        y, x, c = self._src.shape
        return (c, y, x)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self)[index]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = normalise_volume(self._src, bounds=self._bounds)
        out = _channels_first(a)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __reduce__(self):  # pickled (a worker process) as the float32 array it stands for
        return (np.asarray, (np.asarray(self),))


def _slice_bounds(vol: np.ndarray, window) -> tuple[tuple[float, float] | None, dict[str, Any]]:
    """The bounds every slice of ``vol`` is mapped with (None: uint8 / 255) and the method."""
    if window is not None:
        return check_window(window), {"method": "window"}
    lo, hi = percentile_bounds(vol)
    if vol.dtype == np.uint8:
        return None, {"method": "uint8/255", "lo": lo, "hi": hi}
    return (lo, hi), {"method": "percentile 0.5-99.5"}


def _normalise_stack(
    vol: np.ndarray, image: np.ndarray, rgb: bool, window: tuple[float, float] | None
) -> tuple[list[NormalisedSlice], dict[str, Any]]:
    """The stack's slices as :class:`NormalisedSlice` views (no float copy of the volume) and
    its ``norm_info`` (``lo``, ``hi``, ``method``, ``rgb``, ``shape``)."""
    bounds, info = _slice_bounds(vol, window)
    lo, hi = (info["lo"], info["hi"]) if bounds is None else bounds
    norm_info = {
        "lo": lo,
        "hi": hi,
        "method": info["method"],
        "rgb": bool(rgb),
        "shape": tuple(np.asarray(image).shape),
    }
    return [NormalisedSlice(vol[i], bounds) for i in range(vol.shape[0])], norm_info


def _channels_first(slice_yxc: np.ndarray) -> np.ndarray:
    """A (Y, X, C) slice as a contiguous (C, Y, X) array."""
    return np.ascontiguousarray(np.moveaxis(slice_yxc, -1, 0))


def _stack_samples(
    norm: Sequence[NormalisedSlice],
    lab_vol: np.ndarray,
    chosen: list[int],
    num_classes: int | None,
) -> tuple[list[Sample], list[Sample]]:
    """Labelled samples for the ``chosen`` slices and unlabelled ones for the rest (domain
    ``"stack"``); checks each labelled slice's class range."""
    labeled, unlabeled = [], []
    for i, img in enumerate(norm):
        if i in chosen:
            check_label_range(lab_vol[i], num_classes, f"slice {i}")
            label = lab_vol[i].copy()
        else:
            label = None
        sample = Sample(
            f"slice_{i:04d}",
            "stack",
            image=img,
            label=label,
            encoding="index",
            channels=img.shape[0],
        )
        (labeled if label is not None else unlabeled).append(sample)
    return labeled, unlabeled


def _extra_samples(
    extra_unlabeled: Sequence[np.ndarray],
    rgb: bool,
    window: tuple[float, float] | None,
    n_channels: int,
) -> list[Sample]:
    """Unlabelled samples from every slice of each extra image (domains ``extra1``, ...),
    each mapped with its own image's bounds when read."""
    samples = []
    for k, extra in enumerate(extra_unlabeled, start=1):
        ev = _as_slices(extra, rgb, f"extra image {k}")
        if ev.shape[-1] != n_channels:
            raise DataError(
                f"extra image {k} has {ev.shape[-1]} channels, the stack has {n_channels}"
            )
        bounds, _ = _slice_bounds(ev, window)
        for i in range(ev.shape[0]):
            img = NormalisedSlice(ev[i], bounds)
            samples.append(
                Sample(
                    f"slice_{i:04d}",
                    f"extra{k}",
                    image=img,
                    encoding="index",
                    channels=img.shape[0],
                )
            )
    return samples


def stack_slices_for_prediction(
    image: np.ndarray,
    rgb: bool = False,
    norm_info: dict[str, Any] | None = None,
    window: tuple[float, float] | None = None,
) -> list[np.ndarray]:
    """Every slice of a stack as float32 (C, H, W) in [0, 1], normalised as for training.

    Pass the ``norm_info`` from :func:`samples_from_stack` to reuse its bounds exactly, or the
    same ``window``.  (Training on a stack reuses its samples' images instead.)
    """
    vol = _as_slices(image, rgb, "image")
    if norm_info is not None and (vol.dtype != np.uint8 or norm_info["method"] == "window"):
        norm = normalise_volume(vol, rgb, bounds=(norm_info["lo"], norm_info["hi"]))
    else:
        norm = normalise_volume(vol, rgb, window)
    return [np.ascontiguousarray(np.moveaxis(s, -1, 0)) for s in norm]


def prediction_slice_chunks(
    image: np.ndarray,
    rgb: bool = False,
    window: tuple[float, float] | None = None,
    chunk: int = 32,
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """:func:`stack_slices_for_prediction`, ``chunk`` slices at a time: (slice indices, their
    float32 (C, H, W) arrays).  Each slice is mapped as a training sample is
    (:class:`NormalisedSlice` with the whole stack's bounds, :func:`_slice_bounds`), so no
    float copy of the whole stack is ever made."""
    vol = _as_slices(image, rgb, "image")  # a view; checks the shape
    bounds, _ = _slice_bounds(vol, window)
    step = max(1, int(chunk))
    for s in range(0, len(vol), step):
        idx = list(range(s, min(s + step, len(vol))))
        yield idx, [np.asarray(NormalisedSlice(vol[i], bounds)) for i in idx]


# ----------------------------------------------------------------------------- datasets


def _load_resized(samples: Sequence[Sample], cfg: Any, size: int, need_labels: bool):
    """Load every sample once, resize to ``size``; images (N, C, S, S) float32, labels int16."""
    n = len(samples)
    images, labels, has = None, None, np.zeros(n, bool)

    def load(s: Sample):
        img, lab = load_sample_arrays(s, cfg)
        if lab is None and need_labels:
            raise DataError(f"labelled sample {s.domain}/{s.name} has no label")
        return resize_pair(img, lab, size)

    # PNG decoding and PIL resizing release the GIL: a few threads load in parallel
    workers = max(1, min(8, os.cpu_count() or 1, n))
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        loaded = pool.map(load, samples) if workers > 1 else map(load, samples)
        for i, (s, (img, lab)) in enumerate(zip(samples, loaded)):
            if images is None:
                images = np.empty((n, img.shape[0], size, size), np.float32)
                labels = np.full((n, size, size), -1, np.int16)
            if img.shape[0] != images.shape[1]:
                raise DataError(
                    f"{s.domain}/{s.name} has {img.shape[0]} channels, the first "
                    f"sample has {images.shape[1]}"
                )
            images[i] = img
            if lab is not None:
                labels[i] = lab
                has[i] = True
    finally:  # on a bad file, do not wait for the remaining loads
        pool.shutdown(wait=True, cancel_futures=True)
    if images is None:
        images = np.empty((0, 1, size, size), np.float32)
        labels = np.empty((0, size, size), np.int16)
    return images, labels, has


class _CachedDataset(torch.utils.data.Dataset):
    need_labels = True  # every sample must have a label (the labelled set)
    kind = "labelled"

    def __init__(
        self,
        samples: Sequence[Sample],
        cfg: Any,
        size: int,
        geometric: str = "full",
        seed: int | None = None,
    ):
        if not samples:
            raise DataError(f"no {self.kind} images: the {self.kind} set is empty")
        self.samples = list(samples)
        self.cfg = cfg
        self.size = int(size)
        self.geometric = geometric
        self.seed = int(cfg.seed if seed is None else seed)
        self.epoch = 0
        self.images, self.labels, self.has_label = _load_resized(
            self.samples, cfg, self.size, self.need_labels
        )

    def __len__(self) -> int:
        return len(self.samples)

    def _rng(self, key) -> tuple[int, np.random.Generator]:
        if isinstance(key, (tuple, list)):
            index, draw = int(key[0]), int(key[1])
        else:
            index, draw = int(key), self.epoch
        return index, np.random.default_rng((self.seed, draw, index))


class LabeledDataset(_CachedDataset):
    """Labelled samples with weak augmentation.

    Item ``key`` is an index (randomness from ``(seed, self.epoch, index)``) or a tuple
    ``(index, draw)`` (randomness from ``(seed, draw, index)``; what :func:`infinite_loader`
    uses).  Returns ``{"image": float32 (C, S, S), "label": int64 (S, S), "index": int,
    "flip": bool}``.
    """

    def __getitem__(self, key) -> dict[str, Any]:
        index, rng = self._rng(key)
        img, lab, params = weak_augment(
            self.images[index], self.labels[index].astype(np.int64), self.cfg, rng, self.geometric
        )
        return {
            "image": torch.from_numpy(img),
            "label": torch.from_numpy(lab),
            "index": index,
            "flip": bool(params["flip"]),
        }


class UnlabeledDataset(_CachedDataset):
    """Unlabelled samples: a weak view and a strong (photometric) view of that weak view.

    Returns ``{"image": weak float32 (C, S, S), "strong": float32 (C, S, S), "label": int64
    (S, S) (all -1 when unknown; for logging only), "index": int, "flip": bool}``.  Keys as
    in :class:`LabeledDataset`.
    """

    need_labels = False
    kind = "unlabelled"

    def __getitem__(self, key) -> dict[str, Any]:
        index, rng = self._rng(key)
        lab = self.labels[index].astype(np.int64)
        img, lab, params = weak_augment(self.images[index], lab, self.cfg, rng, self.geometric)
        if not self.has_label[index]:
            lab = np.full_like(lab, -1)
        strong = strong_augment(img, self.cfg, rng)
        return {
            "image": torch.from_numpy(img),
            "strong": torch.from_numpy(strong),
            "label": torch.from_numpy(lab),
            "index": index,
            "flip": bool(params["flip"]),
        }


class _InfiniteBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(index, draw)`` keys forever; deterministic for a seed.

    Each pass is a fresh permutation from ``default_rng((seed, pass))``.  With at least
    ``batch_size`` items, a pass is cut into batches (``drop_last`` drops the short tail);
    with fewer, passes are concatenated so indices repeat (sampling with replacement across
    passes, every item equally often).  ``draw`` counts items globally.
    """

    def __init__(self, n: int, batch_size: int, seed: int, drop_last: bool = True):
        if n < 1:
            raise DataError("cannot draw batches from an empty dataset")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        draw, p, pending = 0, 0, []
        while True:
            perm = np.random.default_rng((self.seed, p)).permutation(self.n).tolist()
            p += 1
            if self.n >= self.batch_size:
                for s in range(0, self.n, self.batch_size):
                    chunk = perm[s : s + self.batch_size]
                    if len(chunk) < self.batch_size and self.drop_last:
                        break
                    yield [(i, draw + k) for k, i in enumerate(chunk)]
                    draw += len(chunk)
            else:
                pending.extend(perm)
                while len(pending) >= self.batch_size:
                    chunk, pending = pending[: self.batch_size], pending[self.batch_size :]
                    yield [(i, draw + k) for k, i in enumerate(chunk)]
                    draw += len(chunk)

    def __len__(self) -> int:  # DataLoader asks; the sampler is endless
        return 2**62


def infinite_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield collated batches forever, reshuffled each pass, identical for a seed whatever
    ``num_workers`` is.  Datasets smaller than ``batch_size`` repeat items within a batch."""
    sampler = _InfiniteBatchSampler(len(dataset), batch_size, seed, drop_last)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory
    )
    yield from loader


def load_test_set(
    samples: Sequence[Sample], size: int, cfg_or_params: Any = None
) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """``(name, image float32 (C, size, size), label int64 (size, size) or None)`` per sample;
    the image LANCZOS-resized, the label nearest-resized to ``size`` (evaluation at P x P)."""
    out = []
    for s in samples:
        img, lab = load_sample_arrays(s, cfg_or_params)
        img, lab = resize_pair(img, lab, size)
        out.append((s.name, img, lab))
    return out


def warn_problems(problems: Sequence[str], what: str) -> None:
    """Emit one ``UserWarning`` summarising skipped files (if any)."""
    if problems:
        head = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        warnings.warn(f"{what}: skipped {len(problems)} file(s): {head}{more}", stacklevel=3)
