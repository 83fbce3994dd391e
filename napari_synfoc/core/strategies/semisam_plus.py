"""SemiSAM+ (Zhang et al., MedIA 2025; code YichiZhang98/SemiSAM ``code_semisam+``), in 2D.

A trainable specialist (our U-Net, with its Mean-Teacher consistency as the SSL backbone) and a
frozen promptable generalist (LiteMedSAM).  Each iteration the specialist predicts on the
unlabelled batch; the bounding box of each predicted class prompts the generalist, whose mask
supervises the specialist through an MSE term with a **decaying** weight:

    loss = sup + w_c(t)·MSE(student, EMA teacher) + 0.1·w_sam(t)·L_sam

with w_c(t) = 0.1·λ̂(t) and w_sam(t) = 0.1·λ̂(T − t), λ̂ the project's Gaussian ramp spanning the
run (upstream: steps of 150 iterations over 30k).  Mode ``"unc"`` (upstream's default) weights the
per-pixel squared error d by the generalist's uncertainty u, the variance across repeated prompted
outputs: ``L_sam = mean(d·u)/(mean(u)+1e-8) + mean(u)``; mode ``"box"`` is the plain MSE.

Differences from upstream, on purpose: box prompts (upstream: 10 simulated clicks, or a mask
prompt; LiteMedSAM is box-prompted), the repeated outputs of ``"unc"`` come from the box grown and
shrunk by 10% (upstream: the 10 click rounds), the EMA teacher sees the weak view plus clamped
Gaussian noise as upstream; upstream's final ``x/(x+1e-16)`` rescaling of the SAM term (which
leaves it almost without gradient) is left out; the supervised loss is the project's CE + Dice
(upstream halves it).  No pseudo-label fusion and no foundation training, as in the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import StepBatch, TrainerView, UNetStrategy
from .prompted import boxes_from_labels, class_probs_from_foreground, resize_probs, scale_boxes

SSL_WEIGHT = 0.1  # upstream --consistency
SAM_WEIGHT = 0.1  # upstream's fixed factor in front of w_sam
NOISE_STD, NOISE_CLAMP = 0.1, 0.2  # the EMA teacher's input noise (upstream)
BOX_JITTER = (1.1, 0.9)  # "unc" mode: extra prompts with the box scaled about its centre


def semisam_weights(t: int, max_iter: int, steps: int) -> tuple[float, float]:
    """(w_c, w_sam·0.1) at iteration t: the SSL weight ramps up, the generalist's decays.

    w_c = 0.1·λ̂(t), w_sam_total = 0.1·0.1·λ̂(T − t), λ̂(t) = exp(−5(1 − s/steps)²) with
    s = ⌊t·steps/T⌋ capped at ``steps`` (:func:`~napari_synfoc.core.ramps.consistency_weight`).
    """
    from ..ramps import consistency_weight

    w_c = consistency_weight(t, max_iter, SSL_WEIGHT, steps)
    w_sam = consistency_weight(max_iter - t, max_iter, SSL_WEIGHT, steps)
    return w_c, SAM_WEIGHT * w_sam


def sam_consistency(p_student: Tensor, p_generalist: Tensor, unc: Tensor | None = None) -> Tensor:
    """MSE between the specialist's and the generalist's B×K×H×W probabilities.

    With ``unc`` (B×1×H×W or B×K×H×W, no gradient): ``mean(d·u)/(mean(u)+1e-8) + mean(u)``.
    """
    d = (p_student - p_generalist) ** 2
    if unc is None:
        return d.mean()
    u = unc.detach().to(d.dtype)
    return (d * u).mean() / (u.mean() + 1e-8) + u.mean()


def repeated_output_variance(outputs: list[Tensor]) -> Tensor:
    """Per-pixel (unbiased) variance across repeated outputs of equal shape."""
    return torch.var(torch.stack(outputs), dim=0)


def scale_box_about_centre(boxes: Tensor, factor: float, size: int) -> Tensor:
    """(x0, y0, x1, y1) boxes scaled by ``factor`` about their centres, clipped to [0, size]."""
    c = torch.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)
    half = torch.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], -1) / 2
    half = half * factor
    out = torch.cat([c - half, c + half], -1)
    return out.clamp(0, size)


class SemiSAMPlus(UNetStrategy):
    """SemiSAM+: U-Net (Mean Teacher) + frozen prompted generalist with a decaying MSE term."""

    name = "semisam+"
    trains = "U-Net (Mean Teacher); foundation frozen, prompted with boxes from the U-Net"

    def __init__(self, mode: str = "unc"):
        if mode not in ("unc", "box"):
            raise ValueError(f"SemiSAM+ mode must be 'unc' or 'box', not {mode!r}")
        self.mode = mode

    def generalist(self, trainer: TrainerView, emb: Tensor, student_labels: Tensor, size: int):
        """(K-way generalist probs at ``size``, uncertainty B×1×size×size or None, prompted
        fraction): boxes from the specialist's labels (B×P×P)."""
        k = trainer.cfg.num_classes
        pf = self.prompted
        probs, present = pf.class_probs(emb, student_labels, k, size)
        if self.mode == "box":
            return probs, None, present.float().mean()
        # "unc": the specialist's own foreground plus the generalist prompted with the box,
        # a grown and a shrunk box; u = variance across them (per class, max over classes)
        boxes, present = boxes_from_labels(student_labels, k)
        boxes = scale_boxes(boxes, student_labels.shape[-1], pf.input_size)
        outs = [probs[:, 1:]]
        b, k1 = present.shape
        idx = present.reshape(-1).nonzero().flatten()
        for factor in BOX_JITTER:
            fg = torch.zeros_like(probs[:, 1:])
            if idx.numel():
                jb = scale_box_about_centre(boxes, factor, pf.input_size).reshape(-1, 4)[idx]
                e = emb.repeat_interleave(k1, dim=0)[idx.to(emb.device)]
                lg = resize_probs(pf.foreground_logits(e, jb).float(), size)
                fg.reshape(b * k1, size, size)[idx.to(fg.device)] = torch.sigmoid(lg[:, 0])
            outs.append(class_probs_from_foreground(fg)[:, 1:])
        unc = repeated_output_variance(outs).amax(1, keepdim=True)
        return probs, unc, present.float().mean()

    def unlabeled(self, trainer: TrainerView, inp: StepBatch):
        cfg = trainer.cfg
        if inp.xw_p is None:
            return None, None, {}
        w_c, w_sam = semisam_weights(inp.t, cfg.iterations, cfg.ramp_steps)
        with torch.no_grad():
            noise = torch.clamp(torch.randn_like(inp.xw_p) * NOISE_STD, -NOISE_CLAMP, NOISE_CLAMP)
            p_teacher = torch.softmax(trainer.unet_teacher(inp.xw_p + noise).float(), 1)

        def loss_fn(logits_u: Tensor):
            p_s = torch.softmax(logits_u, 1)
            l_ssl = ((p_s - p_teacher) ** 2).mean()
            with torch.no_grad():
                labels = p_s.detach().max(1).indices
                p_g, unc, prompted = self.generalist(trainer, inp.emb_w, labels, p_s.shape[-1])
            l_sam = sam_consistency(p_s, p_g, unc)
            terms = {"unsup_unet": l_ssl, "l_sam": l_sam, "w_sam": torch.tensor(w_sam)}
            terms["confident_fraction"] = prompted  # fraction of (image, class) prompts
            if inp.gt_u is not None:
                terms["pseudo_label_acc"] = (p_g.max(1).indices == inp.gt_u).float().mean()
            return w_c * l_ssl + w_sam * l_sam, terms

        return inp.xw_p, loss_fn, {"lambda": torch.tensor(w_c)}
