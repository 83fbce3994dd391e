"""Paired weak / strong augmentation on numpy arrays (spec §4.2).

Arrays: images are float32 ``(C, H, W)`` in [0, 1]; labels are integer ``(H, W)`` class indices
with background 0 (every dataset is decoded to indices on load, so the fill value of rotations
and elastic borders is 0 for all of them).  Every random number comes from the
``np.random.Generator`` passed in, and every method constant from :class:`SynFoCConfig`.

Interpolation choices (documented deviations from upstream's 8-bit PIL pipeline):

- :func:`resize_pair` resizes float images with PIL's LANCZOS filter on 32-bit float ("F")
  images, then clips to [0, 1]: the same antialiased filter upstream applied to 8-bit images, but
  without the 8-bit quantisation.  Labels use nearest neighbour (PIL's centre rule).
- The weak geometric ops use PIL's bilinear/nearest on "F"/"I" images for scale and rotation (as
  upstream), so image and label see the exact same geometry; elastic uses
  ``scipy.ndimage.map_coordinates`` (order 1 / order 0) with a zero (background) fill outside.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage, signal

GEOMETRIC_MODES = ("full", "flip", "none")

# The luma weights PIL uses for ``convert("L")`` (ITU-R 601-2); the grey level of PIL contrast.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _resize_image(image: np.ndarray, hw: tuple[int, int], resample: int) -> np.ndarray:
    """Resize each channel of a float32 (C, H, W) image with a PIL filter (no clipping)."""
    h, w = hw
    out = np.empty((image.shape[0], h, w), dtype=np.float32)
    for c in range(image.shape[0]):
        pil = Image.fromarray(np.ascontiguousarray(image[c], dtype=np.float32), mode="F")
        out[c] = np.asarray(pil.resize((w, h), resample))
    return out


def resize_label(label: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer (H, W) label (PIL's pixel-centre rule)."""
    h, w = _size2(size)
    ih, iw = label.shape
    if (ih, iw) == (h, w):
        return label.copy()
    rows = np.minimum(((np.arange(h) + 0.5) * (ih / h)).astype(np.int64), ih - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (iw / w)).astype(np.int64), iw - 1)
    return label[rows[:, None], cols[None, :]]


def resize_pair(
    image: np.ndarray, label: np.ndarray | None, size: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an image (C, H, W) and its label (H, W) to ``size`` (int or (H, W)).

    The image is LANCZOS-filtered in float32 and clipped to [0, 1]; the label is nearest.  No
    aspect preservation (as upstream, which squashes everything to 512x512).
    """
    hw = _size2(size)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    if label is not None and label.shape != image.shape[1:]:
        raise ValueError(f"label shape {label.shape} differs from image shape {image.shape[1:]}")
    if image.shape[1:] == hw:
        img = image.astype(np.float32, copy=True)
    else:
        img = _resize_image(image.astype(np.float32, copy=False), hw, Image.LANCZOS)
        np.clip(img, 0.0, 1.0, out=img)
    lab = None if label is None else resize_label(label, hw)
    return img, lab


def _label_image(label: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(label, dtype=np.int32), mode="I")


def _scale_crop(image, label, rng, cfg):
    """Scale H and W independently by U(lo, hi), then random-crop back to the input size."""
    _, h, w = image.shape
    lo, hi = cfg.aug_scale_range
    sx, sy = rng.uniform(lo, hi), rng.uniform(lo, hi)
    nw, nh = max(w, int(w * sx)), max(h, int(h * sy))
    top = int(rng.integers(0, nh - h + 1))
    left = int(rng.integers(0, nw - w + 1))
    big = _resize_image(image, (nh, nw), Image.BILINEAR)
    image = big[:, top : top + h, left : left + w]
    if label is not None:
        big_l = np.asarray(_label_image(label).resize((nw, nh), Image.NEAREST))
        label = big_l[top : top + h, left : left + w].astype(label.dtype)
    return image, label, (float(sy), float(sx)), (top, left)


def _rotate(image, label, angle):
    """Rotate about the centre by ``angle`` degrees (counter-clockwise), zero fill."""
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        pil = Image.fromarray(np.ascontiguousarray(image[c]), mode="F")
        out[c] = np.asarray(pil.rotate(angle, Image.BILINEAR, fillcolor=0.0))
    if label is not None:
        rot = _label_image(label).rotate(angle, Image.NEAREST, fillcolor=0)
        label = np.asarray(rot).astype(label.dtype)
    return out, label


def smooth_constant(fields: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing of the last two axes with zero padding, via separable FFT convolution.

    Equal (to float error) to ``scipy.ndimage.gaussian_filter(..., mode="constant", cval=0)``
    with the same truncation, and about 7x faster at 512 px for the wide sigma of the elastic
    deformation (0.08·512 = 41 px).
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    lead = (1,) * (fields.ndim - 2)
    out = signal.fftconvolve(fields, k.reshape(*lead, 1, -1), mode="same", axes=fields.ndim - 1)
    out = signal.fftconvolve(out, k.reshape(*lead, -1, 1), mode="same", axes=fields.ndim - 2)
    return out.astype(np.float32, copy=False)


def elastic_fields(shape: tuple[int, int], cfg, rng: np.random.Generator):
    """Displacement fields (dy, dx): U(-1, 1) noise, Gaussian-smoothed, scaled by alpha.

    sigma = ``aug_elastic_sigma_frac``·size and alpha = ``aug_elastic_alpha_frac``·size, with
    size = max(H, W); the smoothing treats outside as 0 (scipy ``mode="constant"``).
    """
    size = max(shape)
    sigma = cfg.aug_elastic_sigma_frac * size
    alpha = cfg.aug_elastic_alpha_frac * size
    noise = rng.uniform(-1.0, 1.0, size=(2, *shape)).astype(np.float32)
    smooth = smooth_constant(noise, sigma) * np.float32(alpha)
    dy, dx = smooth[0], smooth[1]
    return dy, dx


def _elastic(image, label, dy, dx):
    h, w = dy.shape
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij"
    )
    coords = np.stack([yy + dy, xx + dx])
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        out[c] = ndimage.map_coordinates(image[c], coords, order=1, mode="constant", cval=0.0)
    if label is not None:
        label = ndimage.map_coordinates(label, coords, order=0, mode="constant", cval=0)
    return out, label


def weak_augment(
    image: np.ndarray,
    label: np.ndarray | None,
    cfg,
    rng: np.random.Generator,
    geometric: str = "full",
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Upstream's weak augmentation, image and label moved together.

    ``geometric="full"``: in order, scale+crop (p ``aug_scale_p``), rotation by an integer angle
    in [-``aug_rotate_deg``, ``aug_rotate_deg``] (p ``aug_rotate_p``), horizontal flip (p
    ``aug_flip_p``), elastic deformation (p ``aug_elastic_p``).  ``"flip"``: only the horizontal
    flip (for cached per-slice encoder embeddings).  ``"none"``: unchanged copies.  Returns
    ``(image, label, params)``; ``params`` holds ``flip`` (bool), ``scale`` ((sy, sx) or None),
    ``crop`` ((top, left) or None), ``angle`` (int or None) and ``elastic`` (bool).
    """
    if geometric not in GEOMETRIC_MODES:
        raise ValueError(f"geometric must be one of {GEOMETRIC_MODES}, not {geometric!r}")
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    if label is not None and label.shape != image.shape[1:]:
        raise ValueError(f"label shape {label.shape} differs from image shape {image.shape[1:]}")
    image = image.astype(np.float32, copy=True)
    label = None if label is None else label.copy()
    params: dict[str, Any] = {
        "flip": False,
        "scale": None,
        "crop": None,
        "angle": None,
        "elastic": False,
    }
    if geometric == "none":
        return image, label, params
    full = geometric == "full"
    if full and rng.random() < cfg.aug_scale_p:
        image, label, params["scale"], params["crop"] = _scale_crop(image, label, rng, cfg)
    if full and rng.random() < cfg.aug_rotate_p:
        deg = int(cfg.aug_rotate_deg)
        angle = int(rng.integers(-deg, deg + 1))
        params["angle"] = angle
        if angle != 0:
            image, label = _rotate(image, label, angle)
    if rng.random() < cfg.aug_flip_p:
        params["flip"] = True
        image = image[:, :, ::-1]
        label = None if label is None else label[:, ::-1]
    if full and rng.random() < cfg.aug_elastic_p:
        dy, dx = elastic_fields(image.shape[1:], cfg, rng)
        image, label = _elastic(image, label, dy, dx)
        params["elastic"] = True
    image = np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)
    label = None if label is None else np.ascontiguousarray(label)
    return image, label, params


def blur_kernel_size(size: int, cfg) -> int:
    """Blur kernel: ``int(strong_blur_kernel_frac * size)``, made odd (+1 if even), at least 1."""
    k = max(1, int(cfg.strong_blur_kernel_frac * size))
    return k + 1 if k % 2 == 0 else k


def gaussian_kernel1d(ksize: int, sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of ``ksize`` taps (odd)."""
    half = (ksize - 1) / 2.0
    x = np.arange(ksize, dtype=np.float64) - half
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(image: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (C, H, W) with reflection padding (edge not repeated)."""
    if ksize <= 1:
        return image.copy()
    k = gaussian_kernel1d(ksize, sigma)
    # scipy "mirror" = numpy/torch "reflect": d c b | a b c d | c b a
    out = ndimage.correlate1d(image, k, axis=-1, mode="mirror")
    return ndimage.correlate1d(out, k, axis=-2, mode="mirror", output=out)


def strong_augment(image: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    """Photometric strong view of an (already weakly augmented) image; geometry unchanged.

    1. brightness: ``img * f``, f ~ U(``strong_brightness``), clipped to [0, 1];
    2. contrast (PIL): ``m + f * (img - m)``, m = mean grey level (PIL luma for RGB),
       f ~ U(``strong_contrast``), clipped to [0, 1];
    3. separable Gaussian blur, reflect padding, kernel :func:`blur_kernel_size` of the image
       side, sigma ~ U(``strong_blur_sigma``).
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
    fb = rng.uniform(*cfg.strong_brightness)
    fc = rng.uniform(*cfg.strong_contrast)
    sigma = rng.uniform(*cfg.strong_blur_sigma)
    out = image.astype(np.float32) * np.float32(fb)
    np.clip(out, 0.0, 1.0, out=out)
    if out.shape[0] == 3:
        mean = float(np.tensordot(_LUMA, out, axes=(0, 0)).mean())
    else:
        mean = float(out.mean())
    out -= mean
    out *= np.float32(fc)
    out += mean
    np.clip(out, 0.0, 1.0, out=out)
    ksize = blur_kernel_size(max(image.shape[1:]), cfg)
    out = gaussian_blur(out, ksize, sigma)
    np.clip(out, 0.0, 1.0, out=out)
    return out
