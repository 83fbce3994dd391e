"""UnCoL, uncertainty-informed collaborative learning (Lu et al., IEEE TMI 2026), in 2D.

Two teachers supervise the student U-Net on the unlabelled images: a frozen, prompt-conditioned
foundation model (LiteMedSAM, prompted with the boxes of the EMA teacher's prediction) and the
EMA teacher of the student (decay ``cfg.ema_decay``).  Per pixel, each teacher's normalised
entropy u ∈ [0, 1] gives the weight exp(−u), normalised over the two teachers; the pseudo-label
is the argmax of the weighted mean.  Where only one teacher is confident (u ≤ ``U_THRESHOLD``)
that teacher alone is used; where neither is, the pixel is masked out of the loss.  Mixing is
BCP-style (bidirectional copy-paste, :mod:`napari_synfoc.core.mixing`): the labelled box is pasted
into the unlabelled image and the unlabelled box into the labelled image, with GT and
pseudo-labels mixed the same way; the loss is the project's masked CE + Dice, weighted by the
consistency ramp λ(t).

Left out / assumed, said plainly: stage 1's feature distillation from the foundation model is
left out (optional in the paper); how the foundation model gets its prompts for unlabelled images
is not confirmed by the public text (we use boxes from the EMA teacher's prediction); the
threshold value is ours (the code is not public); the student sees the strong view as in SynFoC.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import StepBatch, TrainerView, UNetStrategy
from .prompted import normalised_entropy, resize_probs

U_THRESHOLD = 0.5  # normalised entropy at or below which a teacher counts as confident


def fuse_two_teachers(
    p_a: Tensor, p_b: Tensor, threshold: float = U_THRESHOLD
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Uncertainty-weighted fusion of two teachers' B×K×H×W probabilities.

    Returns ``(fused probs, mask B×H×W float, parts)``: both confident → (e^{−u_a} p_a +
    e^{−u_b} p_b)/(e^{−u_a} + e^{−u_b}); only one confident → that teacher; neither → mask 0.
    ``parts``: ``u_a``, ``u_b``, ``w_a`` (the normalised weight of teacher a).
    """
    if p_a.shape != p_b.shape:
        raise ValueError(f"fuse_two_teachers: shapes differ: {p_a.shape} vs {p_b.shape}")
    u_a, u_b = normalised_entropy(p_a), normalised_entropy(p_b)
    e_a, e_b = torch.exp(-u_a), torch.exp(-u_b)
    w_a = e_a / (e_a + e_b)
    both = w_a[:, None] * p_a + (1 - w_a)[:, None] * p_b
    conf_a, conf_b = u_a <= threshold, u_b <= threshold
    fused = torch.where(
        (conf_a & ~conf_b)[:, None], p_a, torch.where((conf_b & ~conf_a)[:, None], p_b, both)
    )
    mask = (conf_a | conf_b).float()
    return fused, mask, {"u_a": u_a, "u_b": u_b, "w_a": w_a}


def bcp_mix(
    x_l: Tensor, x_u: Tensor, gt: Tensor, pl: Tensor, w: Tensor, m: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """BCP bidirectional copy-paste with a B×H×W box mask ``m``.

    Returns ``(images 2B×C×H×W, targets 2B×H×W, weights 2B×H×W)``: first the unlabelled image
    with the labelled box pasted in (GT in the box, pseudo-label outside), then the labelled image
    with the unlabelled box pasted in (pseudo-label in the box, GT outside); GT pixels weigh 1.
    """
    from ..mixing import copy_paste, mix_targets

    inward = copy_paste(x_u, x_l, m)
    outward = copy_paste(x_l, x_u, m)
    t_in, w_in = mix_targets(pl, w, gt, m)
    t_out, w_out = mix_targets(pl, w, gt, 1 - m)
    # mix_targets(…, 1 − m) puts GT outside the box; inside it keeps pl with weight w
    return torch.cat([inward, outward]), torch.cat([t_in, t_out]), torch.cat([w_in, w_out])


class UnCoL(UNetStrategy):
    """UnCoL: student U-Net taught by a frozen prompted foundation model and its EMA teacher."""

    name = "uncol"
    trains = (
        "U-Net student (EMA teacher); foundation frozen, prompted with boxes from the EMA teacher"
    )

    def unlabeled(self, trainer: TrainerView, inp: StepBatch):
        from ..losses import unsupervised_loss
        from ..mixing import box_masks
        from ..ramps import consistency_weight

        cfg, dev = trainer.cfg, trainer.device
        if inp.xw_p is None:
            return None, None, {}
        P = inp.xw_p.shape[-1]
        lam = consistency_weight(inp.t, cfg.iterations, cfg.consistency, cfg.ramp_steps)
        with torch.no_grad():
            p_ema = torch.softmax(trainer.unet_teacher(inp.xw_p).float(), 1)
            p_fm, present = self.prompted.class_probs(
                inp.emb_w, p_ema.max(1).indices, cfg.num_classes, P
            )
            p_fm = resize_probs(p_fm, P)
            fused, mask, parts = fuse_two_teachers(p_fm, p_ema)
            pl = fused.max(1).indices
            m = box_masks(inp.xw_p.shape[0], P, trainer.rng, cfg.box_area, cfg.box_ratio).to(dev)
            x_mix, t_mix, w_mix = bcp_mix(inp.xl_p, inp.xs_p, inp.gt_p, pl, mask, m)
        extra = {
            "lambda": torch.tensor(lam),
            "confident_fraction": mask.mean(),
            "fm_weight": (parts["w_a"] * mask).sum() / mask.sum().clamp_min(1.0),
        }
        if inp.gt_u is not None:
            extra["pseudo_label_acc"] = (pl == inp.gt_u).float().mean()

        def loss_fn(logits: Tensor):
            # masked-out pixels leave the loss entirely (background Dice masked too)
            uns = unsupervised_loss(logits, t_mix, w_mix, True, cfg.ce_norm)
            return lam * uns, {"unsup_unet": uns}

        return x_mix, loss_fn, extra
