"""One interface for the training strategies, the typed view of the trainer they see, and the
shared U-Net step of the prompted ones.

The trainer (:class:`~napari_synfoc.core.trainer.SynFoCTrainer`) builds the models, data,
embedding bank, checkpoints, events and cancel flag for every strategy, prepares each
iteration's batch (:class:`StepBatch`), sets the learning rate and the modules' modes, and does
the backward pass, the optimiser steps, the EMA updates and the iteration count.  A strategy
decides what one iteration computes (:meth:`Strategy.step`: the loss and its logged terms) and
where the foundation-model prediction comes from (``foundation_probabilities``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..inference import resize_images, resize_labels

if TYPE_CHECKING:
    from ...config import SynFoCConfig
    from ..embeddings import EmbeddingBank

LossFn = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]


class PredictView(Protocol):
    """What a strategy's prediction side reads (a trainer, or a saved run's models)."""

    cfg: SynFoCConfig
    device: torch.device
    precision: str
    S: int  # foundation input size
    bank: EmbeddingBank | None
    fm_student: Any


class TrainerView(PredictView, Protocol):
    """What a strategy's step reads from the trainer (it changes none of it but ``rng``'s
    state and the modules through their own forward passes)."""

    P: int  # U-Net input size
    R: int  # foundation logit size
    cached: bool  # frozen encoder with cached embeddings: the foundation decodes embeddings
    iteration: int
    rng: np.random.Generator
    unet: nn.Module
    unet_teacher: nn.Module
    fm_teacher: Any
    unet_pair: nn.Module  # one call: (labelled batch, mixed batch or None) -> two outputs
    fm_pair: nn.Module
    unet_teacher_fn: Callable[[Tensor], Tensor]
    fm_teacher_fn: Callable[[Tensor], Tensor]
    unet_weak_fn: Callable[[Tensor], Tensor]
    labeled_ds: Any
    unlabeled_ds: Any
    lab_keys: list[str]  # embedding-bank key of each labelled sample
    unl_keys: list[str]


@dataclass
class StepBatch:
    """One iteration's tensors on the device, resized for the U-Net (P), the foundation
    input (S) and its logits (R).  Unlabelled fields are None without an unlabelled batch;
    the foundation fields are None for strategies that do not train the foundation model."""

    t: int
    xl_p: Tensor
    gt_p: Tensor
    xl_s: Tensor | None = None
    gt_r: Tensor | None = None
    emb_l: Tensor | None = None  # cached embeddings of the labelled batch (flip applied)
    xw_p: Tensor | None = None  # weak unlabelled view at P
    xs_p: Tensor | None = None  # strong view of it at P
    xw_s: Tensor | None = None
    xs_s: Tensor | None = None
    emb_w: Tensor | None = None  # frozen-encoder embeddings of the weak view (flip applied)
    index_u: Tensor | None = None
    flip_u: Tensor | None = None
    gt_u: Tensor | None = None  # unlabelled ground truth at P (logging only), or None

    @property
    def semi(self) -> bool:
        """True when the batch has an unlabelled part."""
        return self.xw_p is not None


@dataclass
class StepResult:
    """What a strategy's step returns: the loss to back-propagate, its logged terms (tensors,
    sent to the host in one transfer; ``loss`` included) and plain floats logged as they are."""

    loss: Tensor
    tensors: dict[str, Tensor]
    floats: dict[str, float] = field(default_factory=dict)


class Strategy:
    """What one training iteration does.  Subclasses set the class attributes.

    - ``name``: the ``strategy`` config value.
    - ``uses_prompted_foundation``: needs a frozen, promptable foundation model.
    - ``trains_foundation``: the foundation student is optimised (and EMA'd) too.
    - ``uses_ema``: the U-Net teacher follows the student by EMA.
    - ``supervised_warm_up``: the ``warmup_steps`` / ``warmup_unet_steps`` run before
      iteration 0 (a fresh run).
    - ``trains``: one line for users (what is trained).
    - ``teacher_display``: ``display_teachers`` may show its EMA teachers (measured for SynFoC;
      the other strategies show their students, as their benchmarks did).
    """

    name = ""
    uses_prompted_foundation = False
    trains_foundation = False
    uses_ema = True
    supervised_warm_up = False
    teacher_display = False
    trains = ""

    def check(self, cfg) -> None:
        """Raise ``ValueError`` (a readable message) when ``cfg`` cannot run this strategy."""

    def build(self, trainer: TrainerView) -> None:
        """Create what the strategy needs once the trainer's models and bank exist."""

    def step(self, trainer: TrainerView, batch: StepBatch) -> StepResult:
        """One iteration's forward passes: the loss and its logged terms."""
        raise NotImplementedError

    def foundation_probabilities(
        self, trainer: PredictView, images: Sequence[np.ndarray], keys: Sequence[str] | None,
        unet_probs,
    ) -> np.ndarray | None:  # fmt: skip
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


class UNetStrategy(Strategy):
    """Base of the strategies that train the U-Net only, next to a frozen prompted foundation.

    Each iteration: supervised CE + Dice on the labelled batch, plus the strategy's unlabelled
    terms (:meth:`unlabeled`); SGD on the U-Net; EMA teacher update when ``uses_ema``.  One
    call of the trainer's U-Net module per iteration (DDP-ready).  The foundation prediction is
    the frozen model prompted with boxes from the U-Net's prediction.
    """

    uses_prompted_foundation = True
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

    def build(self, trainer: TrainerView) -> None:
        from .prompted import PromptedFoundation

        self.prompted = PromptedFoundation(trainer.cfg, trainer.device)

    # -- the step ------------------------------------------------------------------------
    def unlabeled(
        self, trainer: TrainerView, inp: StepBatch
    ) -> tuple[Tensor | None, LossFn | None, dict[str, Tensor]]:
        """(student input for the unlabelled part or None, loss function of the student's
        logits on it -> (weighted loss, log tensors), extra logs).  Override."""
        raise NotImplementedError

    def step(self, trainer: TrainerView, batch: StepBatch) -> StepResult:
        """Supervised CE + Dice on the labelled batch plus :meth:`unlabeled`'s terms, in one
        call of the U-Net student module."""
        from ..device import autocast
        from ..losses import supervised_loss

        student_in, loss_fn, extra = self.unlabeled(trainer, batch)
        with autocast(trainer.device, trainer.precision):
            out_l, out_u = trainer.unet_pair(batch.xl_p, student_in)
            sup, parts = supervised_loss(out_l.float(), batch.gt_p)
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
        return StepResult(loss, tlogs)

    # -- prediction ----------------------------------------------------------------------
    @torch.no_grad()
    def foundation_probabilities(
        self, trainer: PredictView, images: Sequence[np.ndarray], keys: Sequence[str] | None,
        unet_probs,
    ) -> np.ndarray:  # fmt: skip
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
