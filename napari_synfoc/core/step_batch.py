"""Batch preparation for every strategy's step: the infinite loaders, and their batches on the
device, resized for the U-Net (P), the foundation input (S) and its logits (R), with the frozen
encoder's cached embeddings from the bank."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .inference import resize_images, resize_labels
from .steps import unflip
from .strategies.base import StepBatch, TrainerView


def training_loaders(labeled_ds, unlabeled_ds, cfg, rank: int, pin_memory: bool):
    """Infinite labelled and unlabelled loaders (the second None without unlabelled training):
    each rank draws its own batches (different seeds), DDP averages the gradients."""
    from .data import infinite_loader

    seed = cfg.seed + 101 * rank
    lab = infinite_loader(
        labeled_ds, cfg.batch_labeled, seed, cfg.num_workers, pin_memory=pin_memory
    )
    if unlabeled_ds is None or cfg.suponly:
        return lab, None
    unl = infinite_loader(
        unlabeled_ds, cfg.batch_unlabeled, seed + 7, cfg.num_workers, pin_memory=pin_memory
    )
    return lab, unl


def bank_embeddings(tr: TrainerView, keys: Sequence[str], batch: dict, images_s: torch.Tensor):
    """Cached frozen-encoder embeddings of a batch (the bank applies each item's flip)."""
    flips = batch["flip"]
    k = [(keys[int(i)], bool(f)) for i, f in zip(batch["index"], flips, strict=True)]
    return tr.bank.batch(k, unflip(images_s, flips))


def prepare_batch(tr: TrainerView, lab: dict, unl: dict | None, foundation: bool) -> StepBatch:
    """The :class:`StepBatch` of a labelled and an (optional) unlabelled batch; the foundation
    fields (S, R, labelled embeddings) only when ``foundation`` (the strategy trains it)."""
    cfg, dev, P = tr.cfg, tr.device, tr.P
    img_l = lab["image"].to(dev, non_blocking=True)
    gt_l = lab["label"].to(dev, non_blocking=True)
    b = StepBatch(
        tr.iteration, resize_images(img_l, P, cfg.unet_downsample), resize_labels(gt_l, P)
    )
    if foundation:
        b.xl_s, b.gt_r = resize_images(img_l, tr.S, "nearest"), resize_labels(gt_l, tr.R)
        if tr.cached:
            b.emb_l = bank_embeddings(tr, tr.lab_keys, lab, b.xl_s)
    if cfg.channels_last:
        b.xl_p = b.xl_p.contiguous(memory_format=torch.channels_last)
    if unl is not None and not cfg.suponly:
        _add_unlabeled(tr, b, unl, foundation)
    return b


def _add_unlabeled(tr: TrainerView, b: StepBatch, unl: dict, foundation: bool) -> None:
    cfg, dev, P, S = tr.cfg, tr.device, tr.P, tr.S
    xw = unl["image"].to(dev, non_blocking=True)
    xs = unl["strong"].to(dev, non_blocking=True)
    b.xw_p, b.xw_s = resize_images(xw, P, cfg.unet_downsample), resize_images(xw, S, "nearest")
    if cfg.channels_last:
        b.xw_p = b.xw_p.contiguous(memory_format=torch.channels_last)
    b.xs_p = resize_images(xs, P, cfg.unet_downsample)
    if foundation and not tr.cached:
        b.xs_s = resize_images(xs, S, "nearest")
    if tr.cached:
        b.emb_w = bank_embeddings(tr, tr.unl_keys, unl, b.xw_s)
    b.index_u, b.flip_u = unl["index"], unl["flip"]
    if "label" in unl and bool((unl["label"] >= 0).all()):
        b.gt_u = resize_labels(unl["label"].to(dev), P)
