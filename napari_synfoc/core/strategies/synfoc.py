"""SynFoC (CVPR 2025): the U-Net and the foundation model train each other as two Mean-Teacher
pairs.  One iteration, in three parts:

1. :func:`pseudo_labels`: both teachers on the weak unlabelled view, the SMC alpha per image
   (or ``alpha_constant``), and the confidence-masked ensemble pseudo-labels of each student.
2. :func:`mix`: a copy-paste box from the labelled batch into the strong unlabelled view, for
   the U-Net at P and the foundation model (at S, or in embedding space when cached), with the
   targets mixed the same way.
3. :func:`losses`: ONE call per student module (labelled and mixed batch inside it, as separate
   forward passes so BatchNorm sees them apart as upstream does, and DDP can wrap the students);
   supervised CE + Dice, plus λ(t)·(masked unsupervised terms + CDCR).

The trainer does the rest (learning rate, modes, batch preparation, backward, both optimisers,
both EMA updates, the iteration count); see :class:`~.base.Strategy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import StepBatch, StepResult, Strategy, TrainerView


@dataclass
class PseudoLabels:
    """The teachers' verdict on a weak unlabelled batch."""

    alpha: Tensor  # per-image SMC weight of the U-Net teacher (float64)
    ens: dict[str, Tensor]  # pl_unet, w_unet, pl_fm, w_fm (ensemble_pseudo_labels)


@dataclass
class Mixed:
    """The copy-paste mixed inputs of both students and their targets/weights."""

    x_unet: Tensor  # at P
    x_fm: Tensor  # at S, or embeddings when cached
    target_unet: Tensor
    weight_unet: Tensor
    target_fm: Tensor  # at R
    weight_fm: Tensor


@torch.no_grad()
def _teacher_probs(tr: TrainerView, b: StepBatch) -> tuple[Tensor, Tensor, Tensor]:
    """(U-Net teacher probs, foundation teacher probs, the U-Net student's argmax) on the weak
    view.  The student's pass runs in train mode: it updates BN statistics as upstream's
    grad-enabled pass does; only its argmax is used."""
    from ..device import autocast

    with autocast(tr.device, tr.precision):
        p_ut = torch.softmax(tr.unet_teacher_fn(b.xw_p).float(), dim=1)
        # a cached run's teacher decodes the embeddings (its pass is not compiled then)
        emb = b.emb_w
        fm_out = tr.fm_teacher.decode(emb) if emb is not None else tr.fm_teacher_fn(b.xw_s)
        p_ms = torch.softmax(fm_out.float(), dim=1)
        q_u = tr.unet_weak_fn(b.xw_p).max(1).indices  # max(): ~15x faster than argmax on CPU
    return p_ut, p_ms, q_u


def pseudo_labels(tr: TrainerView, b: StepBatch) -> PseudoLabels:
    """Both teachers, the SMC alpha (``use_smc``; else ``alpha_constant``) and the ensemble."""
    from ..smc import ensemble_pseudo_labels, smc_alpha_tensor

    cfg = tr.cfg
    p_ut, p_ms, q_u = _teacher_probs(tr, b)
    q_ut, q_ms = p_ut.max(1).indices, p_ms.max(1).indices
    if cfg.use_smc:
        alpha = smc_alpha_tensor(
            q_u, q_ut, q_ms, cfg.num_classes, cfg.phi_classes, cfg.alpha_mode,
            cfg.alpha_constant, progress=b.t / max(cfg.iterations, 1),
        )  # fmt: skip
    else:
        n = b.xw_p.shape[0]
        alpha = torch.full((n,), cfg.alpha_constant, dtype=torch.float64, device=tr.device)
    return PseudoLabels(alpha, ensemble_pseudo_labels(p_ut, p_ms, alpha, cfg.tau))


def mix(tr: TrainerView, b: StepBatch, pl: PseudoLabels) -> Mixed:
    """Copy-paste a random box (``tr.rng``) of the labelled batch into the strong view."""
    from ..mixing import box_masks, copy_paste, mix_targets, resize_mask

    cfg, P = tr.cfg, tr.P
    m_p = box_masks(b.xw_p.shape[0], P, tr.rng, cfg.box_area, cfg.box_ratio).to(tr.device)
    m_s = resize_mask(m_p, tr.S)
    m_r = resize_mask(m_p, tr.R)
    x_unet = copy_paste(b.xs_p, b.xl_p, m_p)
    t_u, w_u = mix_targets(pl.ens["pl_unet"], pl.ens["w_unet"], b.gt_p, m_p)
    t_f, w_f = mix_targets(pl.ens["pl_fm"], pl.ens["w_fm"], b.gt_r, m_r)
    if tr.cached:
        # The frozen encoder saw the unlabelled image without its strong (photometric) view;
        # the box is pasted in embedding space.
        m_e = resize_mask(m_p, b.emb_w.shape[-1])[:, None]
        x_fm = b.emb_w * (1 - m_e) + b.emb_l * m_e
    else:
        x_fm = copy_paste(b.xs_s, b.xl_s, m_s)
    if cfg.channels_last:
        x_unet = x_unet.contiguous(memory_format=torch.channels_last)
    return Mixed(x_unet, x_fm, t_u, w_u, t_f, w_f)


def losses(
    tr: TrainerView, b: StepBatch, mixed: Mixed | None, lam: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Both students' forward passes and the loss: supervised terms, plus (with ``mixed``)
    λ·(unsupervised U-Net + unsupervised foundation + L_c + L_d).  Returns (loss, terms)."""
    from ..device import autocast
    from ..losses import cdcr_losses, supervised_loss, unsupervised_loss

    cfg = tr.cfg
    terms: dict[str, Tensor] = {}
    with autocast(tr.device, tr.precision):
        out_ul, out_um = tr.unet_pair(b.xl_p, mixed.x_unet if mixed else None)
        out_fl, out_fm = tr.fm_pair(
            b.emb_l if tr.cached else b.xl_s, mixed.x_fm if mixed else None
        )
        sup_u, parts_u = supervised_loss(out_ul.float(), b.gt_p)
        sup_f, parts_f = supervised_loss(out_fl.float(), b.gt_r)
        loss = sup_u + sup_f
        terms.update(sup_unet=sup_u, sup_fm=sup_f, ce_unet=parts_u["ce"])
        terms.update(dice_unet=parts_u["dice"], ce_fm=parts_f["ce"], dice_fm=parts_f["dice"])
        if mixed is not None:
            out_um, out_fm = out_um.float(), out_fm.float()
            m = mixed
            uns_u = unsupervised_loss(out_um, m.target_unet, m.weight_unet, cfg.dice_bg_masked,
                                      cfg.ce_norm)  # fmt: skip
            uns_f = unsupervised_loss(out_fm, m.target_fm, m.weight_fm, cfg.dice_bg_masked,
                                      cfg.ce_norm)  # fmt: skip
            if cfg.use_cdcr:
                l_c, l_d, m_c = cdcr_losses(torch.softmax(out_fm, 1), torch.softmax(out_um, 1))
            else:
                l_c = l_d = torch.zeros((), device=tr.device)
                m_c = None
            loss = loss + lam * (uns_u + uns_f + l_c + l_d)
            terms.update(unsup_unet=uns_u, unsup_fm=uns_f, l_c=l_c, l_d=l_d)
            if m_c is not None:
                terms["consensus_fraction"] = m_c.float().mean()
    return loss, terms


class SynFoCStrategy(Strategy):
    """SynFoC: both Mean-Teacher pairs, SMC-weighted ensemble pseudo-labels, copy-paste
    mixing, CDCR."""

    name = "synfoc"
    trains_foundation = True
    supervised_warm_up = True
    teacher_display = True
    trains = "U-Net and foundation model (LoRA/decoder), both as Mean-Teacher pairs"

    def step(self, trainer: TrainerView, batch: StepBatch) -> StepResult:
        from ..ramps import consistency_weight

        cfg = trainer.cfg
        ramp = cfg.ramp_length or cfg.iterations  # the ramp's length (0: the whole run)
        lam = consistency_weight(batch.t, ramp, cfg.consistency, cfg.ramp_steps)
        pl = mixed = None
        if batch.semi:
            pl = pseudo_labels(trainer, batch)
            mixed = mix(trainer, batch, pl)
        loss, terms = losses(trainer, batch, mixed, lam)
        if pl is not None:
            # keep the logged order: the mixed-batch terms, then these, then the consensus
            consensus = terms.pop("consensus_fraction", None)
            terms["confident_fraction"] = pl.ens["w_unet"].float().mean()
            terms["alpha"] = pl.alpha.mean()
            if consensus is not None:
                terms["consensus_fraction"] = consensus
            if batch.gt_u is not None:
                # pseudo-label quality against the (never trained-on) unlabelled ground truth
                terms["pseudo_label_acc"] = (pl.ens["pl_unet"] == batch.gt_u).float().mean()
        terms["loss"] = loss
        return StepResult(loss, terms, {"lambda": lam})
