"""IFL, iterative foundation-dedicated learning (Yin et al., MICCAI 2025; no public code), in 2D.

Rounds, not steps.  The run's iterations are split into ``ROUNDS`` equal rounds.  Round 0 trains
the U-Net on the labelled slices only.  At the start of every later round, the U-Net predicts
every unlabelled slice; the bounding box of each predicted class prompts the frozen foundation
model, whose masks become the slices' pseudo-labels; the U-Net then keeps training on the
labelled slices plus the pseudo-labelled **key slices**, and the cycle repeats.

Key slices (uncertainty-aware selection with cues from earlier rounds): a slice's score is the
mean normalised entropy of the U-Net's prediction plus, from round 2 on, how much its
pseudo-label changed since the previous round (1 − Dice); the ``KEEP_FRACTION`` lowest-scoring
slices are used.

Differences from the paper, said plainly: the paper propagates with SAM2's memory across slices
(and a class-split semantic memory bank); here LiteMedSAM segments each slice on its own from its
box (one cached-embedding decoder pass per slice and class).  The number of rounds is fixed
(the paper repeats until the pseudo-labels stop changing; we log the change).  "Retrain"
continues training the same U-Net (no re-initialisation between rounds).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..inference import resize_images
from ..steps import from_rank0
from .base import StepBatch, TrainerView, UNetStrategy
from .prompted import normalised_entropy

ROUNDS = 3
KEEP_FRACTION = 0.5
_CHUNK = 8


def round_starts(max_iter: int, rounds: int) -> list[int]:
    """First iteration of every round: ``⌊r·T/R⌋`` for r = 0..R−1 (duplicates removed)."""
    if rounds < 1:
        raise ValueError("IFL needs at least one round")
    return sorted({r * max_iter // rounds for r in range(rounds)})


def label_change(new: Tensor, old: Tensor, num_classes: int) -> Tensor:
    """Per-slice 1 − Dice between two N×H×W label maps, averaged over foreground classes
    (a class empty in both counts as unchanged)."""
    out = torch.zeros(new.shape[0])
    for c in range(1, num_classes):
        a, b = (new == c).flatten(1).float(), (old == c).flatten(1).float()
        inter, tot = (a * b).sum(1), a.sum(1) + b.sum(1)
        dice = torch.where(tot > 0, 2 * inter / tot.clamp_min(1), torch.ones_like(tot))
        out += 1 - dice.cpu()
    return out / max(1, num_classes - 1)


def key_slice_scores(mean_entropy: Tensor, change: Tensor | None) -> Tensor:
    """Uncertainty score per slice: mean normalised entropy (+ label change from the last
    round when there was one).  Lower is more certain."""
    return mean_entropy if change is None else mean_entropy + change


def select_key_slices(scores: Tensor, fraction: float) -> Tensor:
    """Bool mask of the ``ceil(fraction·N)`` (at least 1) lowest scores; ties by index."""
    n = scores.shape[0]
    k = max(1, int(np.ceil(fraction * n)))
    order = np.lexsort((np.arange(n), scores.cpu().numpy()))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.from_numpy(order[:k].copy())] = True
    return keep


class IFL(UNetStrategy):
    """IFL: U-Net rounds with pseudo-labels from the frozen foundation prompted by the U-Net."""

    name = "ifl"
    uses_ema = False
    trains = "U-Net only, in rounds; foundation frozen, prompted once per slice per round"

    def __init__(self, rounds: int = ROUNDS, keep_fraction: float = KEEP_FRACTION):
        self.rounds, self.keep_fraction = rounds, keep_fraction

    def build(self, trainer: TrainerView) -> None:
        super().build(trainer)
        self.starts = round_starts(trainer.cfg.iterations, self.rounds)
        self.pseudo: Tensor | None = None  # N×P×P int64, canonical orientation
        self.keep: Tensor | None = None  # N bool
        self.scores: Tensor | None = None  # N key-slice scores (lower: more certain)
        self.history: list[dict] = []

    @torch.no_grad()
    def pseudo_label_round(self, trainer: TrainerView) -> dict[str, float]:
        """Prompt the frozen foundation with the U-Net's boxes on every unlabelled slice."""
        from ..device import autocast

        cfg, dev, P, S = trainer.cfg, trainer.device, trainer.P, trainer.S
        ds = trainer.unlabeled_ds
        unet = trainer.unet
        unet.eval()
        labels, ents = [], []
        try:
            for start in range(0, len(ds), _CHUNK):
                img = torch.from_numpy(ds.images[start : start + _CHUNK]).to(dev)
                x_p = resize_images(img, P, cfg.unet_downsample)
                with autocast(dev, trainer.precision):
                    p_u = torch.softmax(unet(x_p).float(), 1)
                ents.append(normalised_entropy(p_u).mean((1, 2)).cpu())
                keys = [(trainer.unl_keys[i], False) for i in range(start, start + len(img))]
                emb = trainer.bank.batch(keys, resize_images(img, S, "nearest").cpu())
                probs, _ = self.prompted.class_probs(emb, p_u.max(1).indices, cfg.num_classes, P)
                labels.append(probs.max(1).indices.cpu())
        finally:
            unet.train()
        # Under DDP every rank keeps rank 0's labels and entropies: the U-Net's BatchNorm
        # running statistics (used here in eval mode) differ per rank, and the rounds' key
        # slices must not.
        new = from_rank0(torch.cat(labels), dev)
        entropy = from_rank0(torch.cat(ents), dev)
        change = None if self.pseudo is None else label_change(new, self.pseudo, cfg.num_classes)
        self.scores = key_slice_scores(entropy, change)
        self.keep = select_key_slices(self.scores, self.keep_fraction)
        self.pseudo = new
        info = {
            "round": float(len(self.history) + 1),
            "key_slices": float(self.keep.sum()),
            "label_change": float(change.mean()) if change is not None else float("nan"),
        }
        self.history.append(info)
        return info

    def fingerprint(self) -> dict:
        """Rounds run; SHA-256 of the current pseudo-labels and key-slice scores; key slices."""
        import hashlib

        out: dict = {"rounds": len(self.history)}
        if self.pseudo is not None:
            out["pseudo_sha256"] = hashlib.sha256(self.pseudo.numpy().tobytes()).hexdigest()
            out["key_slices"] = self.keep.nonzero().flatten().tolist()
            out["scores_sha256"] = hashlib.sha256(self.scores.numpy().tobytes()).hexdigest()
        return out

    def unlabeled(self, trainer: TrainerView, inp: StepBatch):
        from ..losses import unsupervised_loss

        dev = trainer.device
        extra: dict = {}
        if inp.t in self.starts[1:]:
            info = self.pseudo_label_round(trainer)
            extra["label_change"] = torch.tensor(info["label_change"])
        if self.pseudo is None or inp.xw_p is None:
            extra["lambda"] = torch.tensor(0.0)
            return None, None, extra
        idx = inp.index_u.long().cpu()
        pl = self.pseudo[idx].clone()
        for i, f in enumerate(inp.flip_u):
            if bool(f):
                pl[i] = torch.flip(pl[i], dims=[-1])
        pl = pl.to(dev)
        w = self.keep[idx].float()[:, None, None].expand_as(pl).to(dev)
        extra["lambda"] = torch.tensor(1.0)
        extra["confident_fraction"] = w.mean()
        if inp.gt_u is not None:
            extra["pseudo_label_acc"] = (pl == inp.gt_u).float().mean()

        def loss_fn(logits: Tensor):
            # non-key slices are out of the loss entirely (background Dice masked too)
            uns = unsupervised_loss(logits, pl, w, True, "confident")
            return uns, {"unsup_unet": uns}

        return inp.xw_p, loss_fn, extra
