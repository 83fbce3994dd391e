"""Evaluation of both students on per-domain test sets (spec §7.3: 2D, per image, at P×P)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SynFoCConfig
from .device import autocast


class EmbeddingDiskCache:
    """Frozen-encoder embeddings of files, stored as fp16 ``.npy`` keyed by content and model.

    Only valid for a frozen encoder (the cpu-interactive profile): a LoRA encoder changes.
    """

    def __init__(self, folder: str | Path, model_id: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id

    def key(self, image: np.ndarray) -> str:
        h = hashlib.sha1(self.model_id.encode())
        h.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
        return h.hexdigest()

    def get(self, image: np.ndarray) -> np.ndarray | None:
        p = self.folder / f"{self.key(image)}.npy"
        if p.is_file():
            try:
                return np.load(p)
            except (OSError, ValueError):
                p.unlink(missing_ok=True)
        return None

    def fetch(self, image: np.ndarray, encode: Callable[[], np.ndarray]) -> np.ndarray:
        """The stored embedding of ``image``, or ``encode()`` stored now."""
        emb = self.get(image)
        if emb is None:
            emb = encode()
            self.put(image, emb)
        return emb

    def put(self, image: np.ndarray, emb: np.ndarray) -> None:
        p = self.folder / f"{self.key(image)}.npy"
        tmp = p.with_suffix(".tmp.npy")
        np.save(tmp, emb.astype(np.float16))
        tmp.replace(p)


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
    """Argmax label maps (B, E, E) of the U-Net and the foundation model for a B×C×H×W batch.

    E = ``cfg.eval_size`` or P. U-Net logits are bilinearly resized from P to E; foundation
    logits go bilinearly to S, then argmax, then nearest to E (upstream's test path).
    """
    P, S = cfg.unet_size, fm.input_size
    E = cfg.eval_size or P
    x = images.to(device)
    xp = F.interpolate(x, size=(P, P), mode=cfg.unet_downsample) if x.shape[-1] != P else x
    xs = F.interpolate(x, size=(S, S), mode="nearest") if x.shape[-1] != S else x
    with autocast(device, precision):
        lu = unet(xp).float()
        if cache is not None and raw is not None:
            embs = []
            for i in range(x.shape[0]):

                def encode(i=i):
                    return fm.encode(fm.normalize(xs[i : i + 1]))[0].float().cpu().numpy()

                e = cache.fetch(raw[i], encode)
                embs.append(torch.from_numpy(np.asarray(e, dtype=np.float32)))
            lf = fm.decode(torch.stack(embs).to(device)).float()
        else:
            lf = fm(xs).float()
    # Foundation logits: bilinear up to S, argmax, nearest to P (as upstream's test path).
    if lf.shape[-1] != S:
        lf = F.interpolate(lf, size=(S, S), mode="bilinear", align_corners=False)
    qf = lf.max(1, keepdim=True).indices.float()
    if S != E:
        qf = F.interpolate(qf, size=(E, E), mode="nearest")
    if P != E:
        lu = F.interpolate(lu, size=(E, E), mode="bilinear", align_corners=False)
    return lu.max(1).indices.cpu().numpy(), qf[:, 0].long().cpu().numpy()


def evaluate(
    unet,
    fm,
    test: dict[str, Sequence[Any]],
    cfg: SynFoCConfig,
    device,
    precision: str,
    *,
    cache: EmbeddingDiskCache | None = None,
    batch: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Dice, Jaccard, HD95, ASD per domain and the unweighted domain average, for both students.

    ``test`` maps a domain name to its test samples. Returns ``{"per_domain": {d: {"unet": m,
    "foundation": m}}, "average": {"unet": m, "foundation": m}, "n_images": {d: n}}``.
    """
    from .data import load_test_set
    from .metrics import aggregate, domain_average, image_metrics
    from .trainer import _resize_labels

    unet.eval()
    fm.eval()
    base = max(cfg.unet_size, fm.input_size, cfg.eval_size)
    total = sum(len(v) for v in test.values())
    done = 0
    per_domain: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for domain, samples in test.items():
        items = load_test_set(list(samples), base)
        res_u, res_f = [], []
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            raw = [it[1] for it in chunk]
            x = torch.from_numpy(np.stack(raw).astype(np.float32))
            q_u, q_f = predict_labels(unet, fm, x, cfg, device, precision, cache, raw)
            for i, it in enumerate(chunk):
                gt = it[2]
                size = cfg.eval_size or cfg.unet_size
                gt_p = _resize_labels(torch.from_numpy(np.asarray(gt))[None], size)[0].numpy()
                kw = dict(
                    num_classes=cfg.num_classes,
                    phi_classes=cfg.phi_classes,
                    empty_gt=cfg.empty_gt_hd95,
                )
                res_u.append(image_metrics(q_u[i], gt_p, **kw))
                res_f.append(image_metrics(q_f[i], gt_p, **kw))
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        per_domain[domain] = {"unet": aggregate(res_u), "foundation": aggregate(res_f)}
        counts[domain] = len(items)
    average = {
        "unet": domain_average({d: v["unet"] for d, v in per_domain.items()}),
        "foundation": domain_average({d: v["foundation"] for d, v in per_domain.items()}),
    }
    return {"per_domain": per_domain, "average": average, "n_images": counts}
