"""The prediction path of both students, with its two resize policies named.

Overlays and metrics differ on purpose, and only in how pixels are resized:

* :data:`OVERLAY_RESIZE` (:func:`predict_probabilities`: overlays, review maps, validation-based
  model selection): the image goes to the U-Net at P (``cfg.unet_downsample`` when shrinking,
  bilinear when enlarging) and bilinearly to the foundation model at S; both models' logits go
  bilinearly back to the image's own size before the softmax.  Smooth maps at display size.
* :data:`PROTOCOL_RESIZE` (:func:`predict_labels`: the reported metrics, spec §7.3): upstream's
  test path.  The image goes to P with ``cfg.unet_downsample`` and to S with nearest; the
  foundation logits go bilinearly to S, argmax, then nearest to E (``cfg.eval_size`` or P); the
  U-Net logits bilinearly to E, then argmax.  Metrics stay comparable with the paper's numbers.

Everything else (normalisation, the models' forward, the frozen-encoder embeddings) is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SynFoCConfig
from .device import autocast
from .embeddings import EmbeddingBank, EmbeddingDiskCache


@dataclass(frozen=True)
class ResizePolicy:
    """How images reach the two models and how their outputs come back."""

    name: str
    unet_upsample: str | None  # mode when the image is smaller than P (None: unet_downsample)
    fm_input: str  # mode to the foundation input size S
    output: str  # "probabilities at the image size" | "labels at E"


OVERLAY_RESIZE = ResizePolicy("overlay", "bilinear", "bilinear", "probabilities at the image size")
PROTOCOL_RESIZE = ResizePolicy("protocol", None, "nearest", "labels at E")


def resize_images(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize a B×C×H×W float tensor to size×size with ``mode`` (``nearest``, ``area`` or
    ``bilinear``, the last without corner alignment); a no-op when already that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode in ("nearest", "area"):  # (these modes take no align_corners)
        return F.interpolate(x, size=(size, size), mode=mode)
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False)


def resize_labels(y: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-resize a B×H×W integer label tensor."""
    if y.shape[-1] == size and y.shape[-2] == size:
        return y
    return F.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def _unet_input(x: torch.Tensor, size: int, downsample: str, policy: ResizePolicy) -> torch.Tensor:
    if x.shape[-1] > size or policy.unet_upsample is None:
        return resize_images(x, size, downsample)
    return resize_images(x, size, policy.unet_upsample)


def _logits(
    unet,
    fm,
    x: torch.Tensor,
    unet_size: int,
    unet_downsample: str,
    policy: ResizePolicy,
    device,
    precision: str,
    embed: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw float32 logits (U-Net at P, foundation at its logit size) of a batch on ``device``."""
    xs = resize_images(x, fm.input_size, policy.fm_input)
    with autocast(device, precision):
        lu = unet(_unet_input(x, unet_size, unet_downsample, policy)).float()
        lf = fm.decode(embed(xs)).float() if embed is not None else fm(xs).float()
    return lu, lf


@torch.no_grad()
def predict_probabilities(
    unet,
    fm,
    images: Sequence[np.ndarray],
    unet_size: int,
    device,
    precision: str,
    bank: EmbeddingBank | None = None,
    bank_keys: Sequence[str] | None = None,
    batch: int = 4,
    unet_downsample: str = "nearest",
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of the foundation model and the U-Net (:data:`OVERLAY_RESIZE`).

    ``images`` are (C, H, W) arrays sharing H, W; returns two float32 arrays (N, K, H, W) at
    that size.  With ``bank`` and ``bank_keys``, the frozen encoder's embeddings come from the
    bank (key ``bank_keys[i]``, not mirrored).
    """
    was = (unet.training, fm.training)
    unet.eval()
    fm.eval()
    try:
        fm_out, un_out = [], []
        for start in range(0, len(images), batch):
            chunk = [
                np.ascontiguousarray(a, dtype=np.float32) for a in images[start : start + batch]
            ]
            h, w = chunk[0].shape[-2:]
            x = torch.from_numpy(np.stack(chunk)).to(device)
            embed = None
            if bank is not None:
                keys = [(bank_keys[start + i], False) for i in range(len(chunk))]

                def embed(xs, keys=keys):
                    return bank.batch(keys, xs.cpu())

            lu, lf = _logits(
                unet, fm, x, unet_size, unet_downsample, OVERLAY_RESIZE, device, precision, embed
            )
            lu = F.interpolate(lu, size=(h, w), mode="bilinear", align_corners=False)
            lf = F.interpolate(lf, size=(h, w), mode="bilinear", align_corners=False)
            un_out.append(torch.softmax(lu, 1).cpu().numpy())
            fm_out.append(torch.softmax(lf, 1).cpu().numpy())
        return np.concatenate(fm_out).astype(np.float32), np.concatenate(un_out).astype(np.float32)
    finally:
        unet.train(was[0])
        fm.train(was[1])


@torch.no_grad()
def predict_unet_probabilities(
    unet,
    images: Sequence[np.ndarray],
    unet_size: int,
    device,
    precision: str,
    batch: int = 8,
    unet_downsample: str = "nearest",
) -> np.ndarray:
    """The U-Net's half of :func:`predict_probabilities` (:data:`OVERLAY_RESIZE`), without the
    foundation model or its encoder: float32 (N, K, H, W) at the images' size."""
    was = unet.training
    unet.eval()
    try:
        out = []
        for start in range(0, len(images), batch):
            chunk = [
                np.ascontiguousarray(a, dtype=np.float32) for a in images[start : start + batch]
            ]
            h, w = chunk[0].shape[-2:]
            x = torch.from_numpy(np.stack(chunk)).to(device)
            with autocast(device, precision):
                lu = unet(_unet_input(x, unet_size, unet_downsample, OVERLAY_RESIZE)).float()
            lu = F.interpolate(lu, size=(h, w), mode="bilinear", align_corners=False)
            out.append(torch.softmax(lu, 1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)
    finally:
        unet.train(was)


@torch.no_grad()
def predict_labels(
    unet,
    fm,
    images: torch.Tensor,
    cfg: SynFoCConfig,
    device,
    precision: str,
    cache: EmbeddingDiskCache | None = None,
    raw: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax label maps (B, E, E) of the U-Net and the foundation model (:data:`PROTOCOL_RESIZE`).

    ``images`` is a B×C×H×W batch; E = ``cfg.eval_size`` or P.  With ``cache`` and ``raw`` (the
    batch's source arrays, the cache keys), the frozen encoder's embeddings come from the disk.
    """
    P, S = cfg.unet_size, fm.input_size
    E = cfg.eval_size or P
    x = images.to(device)
    embed = None
    if cache is not None and raw is not None:

        def embed(xs):
            embs = []
            for i in range(xs.shape[0]):

                def encode(i=i):
                    return fm.encode(fm.normalize(xs[i : i + 1]))[0].float().cpu().numpy()

                e = cache.fetch(raw[i], encode)
                embs.append(torch.from_numpy(np.asarray(e, dtype=np.float32)))
            return torch.stack(embs).to(device)

    lu, lf = _logits(
        unet, fm, x, P, cfg.unet_downsample, PROTOCOL_RESIZE, device, precision, embed
    )
    if lf.shape[-1] != S:
        lf = F.interpolate(lf, size=(S, S), mode="bilinear", align_corners=False)
    qf = lf.max(1, keepdim=True).indices.float()
    if S != E:
        qf = F.interpolate(qf, size=(E, E), mode="nearest")
    if P != E:
        lu = F.interpolate(lu, size=(E, E), mode="bilinear", align_corners=False)
    return lu.max(1).indices.cpu().numpy(), qf[:, 0].long().cpu().numpy()
