"""Evaluation of both students on per-domain test sets (spec §7.3: 2D, per image, at P×P).

Predictions come from :func:`~napari_synfoc.core.inference.predict_labels` (upstream's test
protocol, :data:`~napari_synfoc.core.inference.PROTOCOL_RESIZE`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..config import SynFoCConfig
from .embeddings import EmbeddingDiskCache
from .inference import predict_labels, resize_labels


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
                gt_p = resize_labels(torch.from_numpy(np.asarray(gt))[None], size)[0].numpy()
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
