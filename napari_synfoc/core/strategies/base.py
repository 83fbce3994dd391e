"""One interface for the training strategies, and the shared U-Net step of the prompted ones.

The trainer (:class:`~napari_synfoc.core.trainer.SynFoCTrainer`) builds the models, data,
embedding bank, checkpoints, events and cancel flag for every strategy.  A strategy decides what
one iteration trains (``train_step``) and where the foundation-model prediction comes from
(``foundation_probabilities``).  :class:`SynFoCStrategy` changes nothing: the trainer runs its own
SynFoC step, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]


class Strategy:
    """What one training iteration does.  Subclasses set the class attributes.

    - ``name``: the ``strategy`` config value.
    - ``uses_prompted_foundation``: needs a frozen, promptable foundation model.
    - ``replaces_step``: False = the trainer's own SynFoC step runs.
    - ``trains``: one line for users (what is trained).
    - ``teacher_display``: ``display_teachers`` may show its EMA teachers (measured for SynFoC;
      the other strategies show their students, as their benchmarks did).
    """

    name = "synfoc"
    uses_prompted_foundation = False
    replaces_step = False
    teacher_display = True
    trains = "U-Net and foundation model (LoRA/decoder), both as Mean-Teacher pairs"

    def check(self, cfg) -> None:
        """Raise ``ValueError`` (a readable message) when ``cfg`` cannot run this strategy."""

    def build(self, trainer) -> None:
        """Create what the strategy needs once the trainer's models and bank exist."""

    def train_step(self, trainer, lab: dict, unl: dict | None) -> dict[str, float]:
        raise NotImplementedError("the SynFoC strategy runs the trainer's own step")

    def foundation_probabilities(
        self, trainer, images: Sequence[np.ndarray], keys: Sequence[str] | None, unet_probs
    ) -> np.ndarray | None:
        """The foundation side of a prediction (N×K×H×W), or None for the trained student's."""
        return None

    def shows_teachers(self, cfg) -> bool:
        """True when overlays and Predict show the EMA teachers (``cfg.display_teachers`` and a
        strategy that allows it)."""
        return bool(cfg.display_teachers and self.teacher_display)

    def fingerprint(self) -> dict:
        """JSON-able summary of the strategy's own state (e.g. IFL's pseudo-labels), so DDP
        ranks can be checked to agree; empty when the models are its only state."""
        return {}


class SynFoCStrategy(Strategy):
    """SynFoC (CVPR 2025): the trainer's own step, unchanged."""


def resize_images(x: Tensor, size: int, mode: str = "bilinear") -> Tensor:
    """B×C×H×W to size×size (``nearest``/``area``/``bilinear``; no-op at that size)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    if mode in ("nearest", "area"):
        return F.interpolate(x, size=(size, size), mode=mode)
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False)


def resize_labels(y: Tensor, size: int) -> Tensor:
    """Nearest resize of B×H×W integer labels."""
    if tuple(y.shape[-2:]) == (size, size):
        return y
    return F.interpolate(y[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def unflip(x: Tensor, flips) -> Tensor:
    """Undo per-image horizontal flips (the bank embeds the canonical image and flips itself)."""
    out = x.clone()
    for i, f in enumerate(flips):
        if bool(f):
            out[i] = torch.flip(out[i], dims=[-1])
    return out


@dataclass
class StepInputs:
    """One iteration's tensors, resized for the U-Net (P) and the foundation model (S)."""

    t: int
    xl_p: Tensor
    gt_p: Tensor
    xw_p: Tensor | None = None  # weak unlabelled view at P
    xs_p: Tensor | None = None  # strong view of it at P
    emb_w: Tensor | None = None  # frozen-encoder embeddings of the weak view (flip applied)
    index_u: Tensor | None = None
    flip_u: Tensor | None = None
    gt_u: Tensor | None = None  # unlabelled ground truth at P (logging only), or None


class UNetStrategy(Strategy):
    """Base of the strategies that train the U-Net only, next to a frozen prompted foundation.

    Each iteration: supervised CE + Dice on the labelled batch, plus the strategy's unlabelled
    terms (:meth:`unlabeled`); SGD on the U-Net; EMA teacher update when ``uses_ema``.  One
    call of the trainer's U-Net module per iteration (DDP-ready).  The foundation prediction is
    the frozen model prompted with boxes from the U-Net's prediction.
    """

    uses_prompted_foundation = True
    replaces_step = True
    uses_ema = True
    teacher_display = False  # IFL keeps no EMA teacher; the others were measured on students

    def check(self, cfg) -> None:
        from .prompted import PROMPTABLE

        if cfg.foundation not in PROMPTABLE:
            raise ValueError(
                f"strategy {self.name!r} prompts a frozen pretrained foundation model, and only "
                f"{PROMPTABLE[0]!r} has a prompted path here (foundation {cfg.foundation!r} "
                "cannot be prompted): choose foundation litemedsam, or strategy synfoc"
            )
        if not (cfg.freeze_encoder and cfg.cache_embeddings and cfg.lora_targets == "none"):
            raise ValueError(
                f"strategy {self.name!r} trains no foundation weights and prompts the frozen "
                "encoder's cached embeddings: set freeze_encoder=True, cache_embeddings=True, "
                "lora_targets='none' (the cpu-interactive profile does)"
            )
        if cfg.suponly:
            raise ValueError(
                f"suponly is the labelled-only baseline; it cannot be combined with strategy "
                f"{self.name!r}"
            )
        if cfg.model_selection != "final":
            raise ValueError(
                f"strategy {self.name!r} supports model_selection='final' only (validation "
                "selection keeps a trained foundation student, which this strategy has not)"
            )

    def build(self, trainer) -> None:
        from ..ema import param_pairs
        from .prompted import PromptedFoundation

        self.prompted = PromptedFoundation(trainer.cfg, trainer.device)
        self.lab_keys = [f"{s.domain}/{s.name}" for s in trainer.labeled_ds.samples]
        ds = trainer.unlabeled_ds
        self.unl_keys = [f"{s.domain}/{s.name}" for s in ds.samples] if ds is not None else []
        self.ema_pairs = param_pairs(trainer.unet_teacher, trainer.unet)
        self.modes_ready = False

    # -- the step ------------------------------------------------------------------------
    def unlabeled(self, trainer, inp: StepInputs) -> tuple[Tensor | None, LossFn, dict]:
        """(student input for the unlabelled part or None, loss function of the student's
        logits on it -> (weighted loss, log tensors), extra logs).  Override."""
        raise NotImplementedError

    def embeddings(self, trainer, keys, images_s: Tensor, flips) -> Tensor:
        """Cached frozen-encoder embeddings of a batch (flip applied by the bank)."""
        k = [(keys[i], bool(f)) for i, f in zip(range(len(keys)), flips, strict=True)]
        return trainer.bank.batch(k, unflip(images_s, flips))

    def train_step(self, trainer, lab: dict, unl: dict | None) -> dict[str, float]:
        from ..device import autocast
        from ..ema import ema_update
        from ..losses import supervised_loss
        from ..ramps import lr_factor
        from ..steps import backward_and_step, step_logs

        cfg, dev, t = trainer.cfg, trainer.device, trainer.iteration
        P, S = trainer.P, trainer.S
        if not self.modes_ready:
            trainer.unet.train()
            trainer.unet_teacher.train(cfg.teacher_bn == "train")
            self.modes_ready = True
        f = lr_factor(t, cfg.iterations, cfg.lr_schedule, cfg.warmup_iterations)
        for g in trainer.opt_unet.param_groups:
            g["lr"] = cfg.unet_lr * f
        img_l = lab["image"].to(dev)
        inp = StepInputs(
            t=t,
            xl_p=resize_images(img_l, P, cfg.unet_downsample),
            gt_p=resize_labels(lab["label"].to(dev), P),
        )
        if unl is not None:
            xw = unl["image"].to(dev)
            inp.xw_p = resize_images(xw, P, cfg.unet_downsample)
            inp.xs_p = resize_images(unl["strong"].to(dev), P, cfg.unet_downsample)
            keys = [self.unl_keys[int(i)] for i in unl["index"]]
            inp.emb_w = self.embeddings(
                trainer, keys, resize_images(xw, S, "nearest"), unl["flip"]
            )
            inp.index_u, inp.flip_u = unl["index"], unl["flip"]
            if "label" in unl and bool((unl["label"] >= 0).all()):
                inp.gt_u = resize_labels(unl["label"].to(dev), P)
        student_in, loss_fn, extra = self.unlabeled(trainer, inp)
        with autocast(dev, trainer.precision):
            out_l, out_u = trainer.unet_pair(inp.xl_p, student_in)
            sup, parts = supervised_loss(out_l.float(), inp.gt_p)
            loss = sup
            tlogs: dict[str, Tensor] = {
                "sup_unet": sup,
                "ce_unet": parts["ce"],
                "dice_unet": parts["dice"],
            }
            if out_u is not None:
                weighted, terms = loss_fn(out_u.float())
                loss = loss + weighted
                tlogs.update(terms)
        tlogs.update(extra)
        tlogs["loss"] = loss
        logs = step_logs(tlogs, dev, t, self.name)  # one transfer; TrainingError on a NaN loss
        trainer.opt_unet.zero_grad(set_to_none=True)
        backward_and_step(loss, trainer.scaler, trainer.opt_unet)
        if self.uses_ema:
            ema_update(*self.ema_pairs, t, cfg.ema_decay)
        logs.setdefault("lambda", float("nan"))
        trainer.iteration += 1
        return logs

    # -- prediction ----------------------------------------------------------------------
    @torch.no_grad()
    def foundation_probabilities(
        self, trainer, images: Sequence[np.ndarray], keys: Sequence[str] | None, unet_probs
    ) -> np.ndarray:
        """The frozen foundation prompted with boxes of the U-Net's prediction, per image."""
        from ..device import autocast

        cfg, dev, S = trainer.cfg, trainer.device, trainer.S
        out = []
        for start in range(0, len(images), 8):
            chunk = np.stack([np.asarray(a, dtype=np.float32) for a in images[start : start + 8]])
            h, w = chunk.shape[-2:]
            x_s = resize_images(torch.from_numpy(chunk), S, "bilinear")
            if keys is not None:
                emb = trainer.bank.batch([(keys[start + i], False) for i in range(len(x_s))], x_s)
            else:  # images outside the bank (e.g. a test set): one encoder pass each
                fm = trainer.fm_student
                with autocast(dev, trainer.precision):
                    emb = fm.encode(fm.normalize(x_s.to(dev))).float()
            lab = torch.from_numpy(np.asarray(unet_probs[start : start + 8]).argmax(1)).to(dev)
            lab = resize_labels(lab, S)  # boxes on the foundation's square input grid
            probs, _ = self.prompted.class_probs(emb, lab, cfg.num_classes, max(h, w))
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
            out.append(probs.cpu().numpy().astype(np.float32))
        return np.concatenate(out)
