"""Self/mutual confidence (SMC), α and the ensemble pseudo-labels (spec §3).

Hard Dice and α are computed in float64: with numpy on the CPU as upstream (:func:`smc_alpha`), or
with the same arithmetic in torch on the labels' device (:func:`smc_alpha_tensor`, used by the
trainer so a GPU step never waits on a host copy); the ensemble runs in torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from napari_synfoc.config import ALPHA_MODES

PHI_CLASSES = ("plain", "fundus")


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def class_names(num_classes: int, phi_classes: str = "plain") -> list[str]:
    """Names of the foreground classes scored by Φ and the metrics."""
    if phi_classes == "fundus":
        return ["cup", "disc"]
    if phi_classes == "plain":
        return [f"class_{c}" for c in range(1, num_classes)]
    raise ValueError(f"phi_classes must be one of {PHI_CLASSES}, not {phi_classes!r}")


def foreground_masks(
    labels: np.ndarray, num_classes: int, phi_classes: str = "plain"
) -> list[np.ndarray]:
    """Boolean masks of the foreground classes of a label map (any shape).

    ``"plain"``: ``labels == c`` for c in 1..K−1; ``"fundus"``: cup = ``labels == 1``,
    disc = ``labels > 0`` (cup ∪ rim), as upstream's ``to_2d``.
    """
    return _class_masks(_to_numpy(labels), num_classes, phi_classes)


def _class_masks(labels, num_classes: int, phi_classes: str) -> list:
    """The class rule of :func:`foreground_masks` on numpy arrays or torch tensors alike."""
    if phi_classes == "fundus":
        return [labels == 1, labels > 0]
    if phi_classes == "plain":
        if num_classes < 2:
            raise ValueError("num_classes counts the background and must be at least 2")
        return [labels == c for c in range(1, num_classes)]
    raise ValueError(f"phi_classes must be one of {PHI_CLASSES}, not {phi_classes!r}")


def hard_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Smoothed hard Dice (2|A∩B|+1)/(|A|+|B|+1.001); 1.0 when both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"hard_dice: mask shapes differ: {a.shape} vs {b.shape}")
    sa, sb = float(a.sum()), float(b.sum())
    if sa == 0 and sb == 0:
        return 1.0
    inter = float(np.logical_and(a, b).sum())
    return (2.0 * inter + 1.0) / (sa + sb + 1.001)


def phi(
    q1: np.ndarray, q2: np.ndarray, num_classes: int, phi_classes: str = "plain"
) -> np.ndarray:
    """Per-image hard Dice between two B×H×W label maps, averaged over foreground classes."""
    q1, q2 = _to_numpy(q1), _to_numpy(q2)
    if q1.shape != q2.shape or q1.ndim != 3:
        raise ValueError(
            f"phi: expected two B×H×W label maps of equal shape, got {q1.shape} and {q2.shape}"
        )
    m1 = foreground_masks(q1, num_classes, phi_classes)
    m2 = foreground_masks(q2, num_classes, phi_classes)
    out = np.empty(q1.shape[0], dtype=np.float64)
    for i in range(q1.shape[0]):
        out[i] = np.mean([hard_dice(a[i], b[i]) for a, b in zip(m1, m2)])
    return out


def _resize_labels(q: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of B×H×W labels with torch's ``nearest`` rule (as upstream)."""
    if tuple(q.shape[-2:]) == tuple(size):
        return q
    t = torch.from_numpy(np.ascontiguousarray(q)).float()[None]
    return F.interpolate(t, size=size, mode="nearest")[0].long().numpy()


def confidences(
    q_unet_student, q_unet_teacher, q_fm_teacher, num_classes: int, phi_classes: str = "plain"
) -> tuple[np.ndarray, np.ndarray]:
    """(Φ_self, Φ_mut), each float64 [B].

    Φ_self compares the U-Net student and teacher at the U-Net resolution; Φ_mut compares the
    U-Net teacher, nearest-resized to the foundation teacher's resolution, with that teacher.
    """
    qs, qt, qf = _to_numpy(q_unet_student), _to_numpy(q_unet_teacher), _to_numpy(q_fm_teacher)
    if qf.ndim != 3 or qf.shape[0] != qt.shape[0]:
        raise ValueError(
            f"confidences: foundation labels {qf.shape} do not match U-Net labels {qt.shape}"
        )
    phi_self = phi(qs, qt, num_classes, phi_classes)
    phi_mut = phi(_resize_labels(qt, qf.shape[-2:]), qf, num_classes, phi_classes)
    return phi_self, phi_mut


def smc_alpha(
    q_unet_student,
    q_unet_teacher,
    q_fm_teacher,
    num_classes: int,
    phi_classes: str = "plain",
    mode: str = "smc",
    constant: float = 0.5,
    progress: float = 0.0,
) -> np.ndarray:
    """Per-image ensemble weight α of the U-Net teacher, float64 [B] (spec §3, Table 8 modes).

    ``"smc"``: Φ_self·Φ_mut; ``"self"``; ``"mutual"``; ``"constant"``; ``"linear"``
    (= progress t/T).
    """
    if mode not in ALPHA_MODES:
        raise ValueError(f"smc_alpha: mode must be one of {ALPHA_MODES}, not {mode!r}")
    batch = _to_numpy(q_unet_teacher).shape[0]
    if mode == "constant":
        return np.full(batch, float(constant), dtype=np.float64)
    if mode == "linear":
        return np.full(batch, float(progress), dtype=np.float64)
    phi_self, phi_mut = confidences(
        q_unet_student, q_unet_teacher, q_fm_teacher, num_classes, phi_classes
    )
    if mode == "self":
        return phi_self
    if mode == "mutual":
        return phi_mut
    return phi_self * phi_mut


def _phi_tensor(q1: Tensor, q2: Tensor, num_classes: int, phi_classes: str) -> Tensor:
    """:func:`phi` in torch on the labels' device, float64 [B] (counts are exact in float64)."""
    if q1.shape != q2.shape or q1.ndim != 3:
        raise ValueError(
            "phi: expected two B×H×W label maps of equal shape, got "
            f"{tuple(q1.shape)} and {tuple(q2.shape)}"
        )
    dices = []
    for a, b in zip(
        _class_masks(q1, num_classes, phi_classes),
        _class_masks(q2, num_classes, phi_classes),
        strict=True,
    ):
        sa = a.sum(dim=(1, 2), dtype=torch.float64)
        sb = b.sum(dim=(1, 2), dtype=torch.float64)
        inter = (a & b).sum(dim=(1, 2), dtype=torch.float64)
        d = (2.0 * inter + 1.0) / (sa + sb + 1.001)
        dices.append(torch.where((sa + sb) == 0, torch.ones_like(d), d))
    return torch.stack(dices).mean(dim=0)


def smc_alpha_tensor(
    q_unet_student: Tensor,
    q_unet_teacher: Tensor,
    q_fm_teacher: Tensor,
    num_classes: int,
    phi_classes: str = "plain",
    mode: str = "smc",
    constant: float = 0.5,
    progress: float = 0.0,
) -> Tensor:
    """:func:`smc_alpha` computed in torch on the labels' device (float64 [B], same values).

    On a GPU this keeps the three label maps where they are: no device-to-host copy and no
    synchronisation in the middle of a training step.
    """
    if mode not in ALPHA_MODES:
        raise ValueError(f"smc_alpha: mode must be one of {ALPHA_MODES}, not {mode!r}")
    batch, dev = q_unet_teacher.shape[0], q_unet_teacher.device
    if mode == "constant":
        return torch.full((batch,), float(constant), dtype=torch.float64, device=dev)
    if mode == "linear":
        return torch.full((batch,), float(progress), dtype=torch.float64, device=dev)
    if q_fm_teacher.ndim != 3 or q_fm_teacher.shape[0] != batch:
        raise ValueError(
            f"confidences: foundation labels {tuple(q_fm_teacher.shape)} do not match "
            "U-Net labels "
            f"{tuple(q_unet_teacher.shape)}"
        )
    phi_self = _phi_tensor(q_unet_student, q_unet_teacher, num_classes, phi_classes)
    qt = q_unet_teacher
    if tuple(qt.shape[-2:]) != tuple(q_fm_teacher.shape[-2:]):
        qt = F.interpolate(qt[None].float(), size=tuple(q_fm_teacher.shape[-2:]), mode="nearest")[
            0
        ].long()
    phi_mut = _phi_tensor(qt, q_fm_teacher, num_classes, phi_classes)
    if mode == "self":
        return phi_self
    if mode == "mutual":
        return phi_mut
    return phi_self * phi_mut


def ensemble_pseudo_labels(
    p_unet_teacher: Tensor, p_fm_teacher: Tensor, alpha, tau: float
) -> dict[str, Tensor]:
    """Fuse the teachers and threshold (spec §3.7–3.8).

    ``P_EN = α·P_UT + (1−α)·bilinear(P_MS → P)``; at P: argmax and ``max > τ`` (strict); at R:
    bilinear-resize P_EN to R, then argmax and ``max > τ``.  Keys: ``p_en`` (B×K×P×P), ``pl_unet``,
    ``w_unet`` (B×P×P), ``pl_fm``, ``w_fm`` (B×R×R); labels long, weights float.
    """
    if (
        p_unet_teacher.ndim != 4
        or p_fm_teacher.ndim != 4
        or p_unet_teacher.shape[:2] != p_fm_teacher.shape[:2]
    ):
        raise ValueError(
            "ensemble_pseudo_labels: expected B×K×P×P and B×K×R×R probabilities, got "
            f"{tuple(p_unet_teacher.shape)} and {tuple(p_fm_teacher.shape)}"
        )
    p_ut = p_unet_teacher.float()
    p_ms = p_fm_teacher.float().to(p_ut.device)
    batch = p_ut.shape[0]
    a = torch.as_tensor(_to_numpy(alpha) if not isinstance(alpha, Tensor) else alpha)
    a = a.to(device=p_ut.device, dtype=p_ut.dtype).reshape(-1)
    if a.numel() != batch:
        raise ValueError(
            f"ensemble_pseudo_labels: alpha has {a.numel()} values for a batch of {batch}"
        )
    a = a.view(batch, 1, 1, 1)
    size_p = tuple(p_ut.shape[-2:])
    size_r = tuple(p_ms.shape[-2:])
    p_ms_up = (
        p_ms
        if size_r == size_p
        else F.interpolate(p_ms, size=size_p, mode="bilinear", align_corners=False)
    )
    p_en = a * p_ut + (1.0 - a) * p_ms_up
    conf_p, pl_p = p_en.max(dim=1)
    p_en_r = (
        p_en
        if size_r == size_p
        else F.interpolate(p_en, size=size_r, mode="bilinear", align_corners=False)
    )
    conf_r, pl_r = p_en_r.max(dim=1)
    return {
        "p_en": p_en,
        "pl_unet": pl_p.long(),
        "w_unet": (conf_p > tau).float(),
        "pl_fm": pl_r.long(),
        "w_fm": (conf_r > tau).float(),
    }
