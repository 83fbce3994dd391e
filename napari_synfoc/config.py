"""One place for every default: the SynFoC configuration and the named compute profiles.

Faithful to the official code by default (see ``docs/synfoc_spec.md`` of the shared docs); each
fix the spec lists sits behind a named switch.  No module reads a magic number of the method from
anywhere else: they take a :class:`SynFoCConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FOUNDATIONS = ("litemedsam", "medsam-vitb", "sam-vitb", "tiny")
ALPHA_MODES = ("smc", "self", "mutual", "constant", "linear")


@dataclass
class SynFoCConfig:
    """Every setting of one SynFoC training run.

    Sizes: ``unet_size`` is P (U-Net input), ``fm_size`` is S (foundation input); the foundation
    logit size R follows from the model (S/4 for SAM ViT-B, S for LiteMedSAM).
    """

    # task
    num_classes: int = 2  # K, background included
    in_channels: int = 1  # U-Net input channels (3 for RGB data)
    phi_classes: str = "plain"  # "plain": classes 1..K-1; "fundus": cup = 1, disc = label > 0
    # models
    foundation: str = "litemedsam"
    checkpoint: str | None = None  # for medsam-vitb / sam-vitb
    fm_size: int = 256
    unet_size: int = 256
    eval_size: int = 0  # metrics resolution; 0 = unet_size (the spec's P×P)
    unet_downsample: str = "nearest"  # image resize to P: "nearest" (upstream, aliases) | "area"
    unet_features: tuple[int, ...] = (64, 128, 256, 512, 1024)
    lora_rank: int = 4
    lora_targets: str = "qv"  # "qv" (paper), "qkv", or "none"
    freeze_encoder: bool = False  # True: no LoRA, encoder frozen; embeddings may be cached
    cache_embeddings: bool = False  # reuse per-slice encoder outputs (needs freeze_encoder)
    # schedule
    iterations: int = 30000
    batch_labeled: int = 4
    batch_unlabeled: int = 4
    seed: int = 1337
    # optimisers (train.py:439-447)
    unet_lr: float = 0.03
    unet_momentum: float = 0.9
    unet_weight_decay: float = 1e-4
    fm_lr: float = 1.2e-4
    fm_betas: tuple[float, float] = (0.9, 0.999)
    fm_weight_decay: float = 0.1
    # method
    tau: float = 0.95
    ema_decay: float = 0.99
    consistency: float = 1.0  # lambda_max
    ramp_steps: int = 200  # lambda is quantised into this many steps over the run
    alpha_mode: str = "smc"
    alpha_constant: float = 0.5
    use_smc: bool = True  # False: ensemble with alpha_constant (CDCR-only ablation)
    use_cdcr: bool = True  # False: no L_c / L_d (SMC-only ablation)
    suponly: bool = False  # labelled-only baseline: supervised loss only, same schedule
    box_area: tuple[float, float] = (0.02, 0.40)
    box_ratio: float = 0.3  # aspect ratio ~ U(r, 1/r)
    # weak augmentation (custom_transforms.py)
    aug_scale_p: float = 0.5
    aug_scale_range: tuple[float, float] = (1.0, 1.5)
    aug_rotate_p: float = 0.5
    aug_rotate_deg: int = 20
    aug_flip_p: float = 0.5
    aug_elastic_p: float = 0.5
    aug_elastic_sigma_frac: float = 0.08
    aug_elastic_alpha_frac: float = 2.0
    # strong augmentation
    strong_brightness: tuple[float, float] = (0.1, 2.0)
    strong_contrast: tuple[float, float] = (0.1, 2.0)
    strong_blur_sigma: tuple[float, float] = (0.1, 2.0)
    strong_blur_kernel_frac: float = 0.1
    # switches for the spec's fixes (faithful values first)
    lr_schedule: str = "none"  # "none" | "poly" (linear warm-up then poly decay)
    warmup_iterations: int = 250
    teacher_bn: str = "train"  # "train" | "eval"
    dice_bg_masked: bool = False  # faithful: background Dice term unmasked
    ce_norm: str = "all"  # "all" | "confident"
    model_selection: str = "final"  # "final" | "val" (never test)
    val_fraction: float = 0.2  # with model_selection="val": labelled images held out
    val_every: int = 0  # with model_selection="val": validate every N iterations (0: T/10)
    empty_gt_hd95: str = "error"  # "error" (upstream crashes) | "rule"
    # compute
    device: str = "auto"
    precision: str = "auto"  # "auto" | "fp32" | "bf16" | "fp16"
    channels_last: bool = False
    fused_attention: bool = False  # SAM ViT attention through scaled_dot_product_attention
    compile: bool = False  # torch.compile both students and both teachers (CUDA)
    compile_mode: str = (
        "default"  # torch.compile mode: "default" | "reduce-overhead" (CUDA graphs)
    )
    frozen_lowp: bool = (
        False  # bf16 on CUDA: keep the frozen encoder's Linear/Conv weights in bf16
    )
    num_workers: int = 0
    predict_every: int = 0  # 0: only at the end
    first_predict_at: int = 5  # an early overlay after this many iterations (when predicting)
    checkpoint_every: int = 0  # 0: only at the end

    def replace(self, **changes: Any) -> SynFoCConfig:
        """A copy with ``changes`` applied (unknown keys raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> SynFoCConfig:
        """Raise ``ValueError`` with a readable message for inconsistent settings."""
        if self.foundation not in FOUNDATIONS:
            raise ValueError(
                f"unknown foundation model {self.foundation!r}; choose from {FOUNDATIONS}"
            )
        if self.alpha_mode not in ALPHA_MODES:
            raise ValueError(f"unknown alpha mode {self.alpha_mode!r}; choose from {ALPHA_MODES}")
        if self.num_classes < 2:
            raise ValueError("num_classes counts the background and must be at least 2")
        if self.batch_labeled < 1 or self.batch_unlabeled < 1:
            raise ValueError("batch sizes must be at least 1")
        if not self.suponly and self.batch_labeled != self.batch_unlabeled:
            raise ValueError(
                "copy-paste mixing pairs labelled and unlabelled images by index: "
                f"batch_labeled ({self.batch_labeled}) must equal batch_unlabeled "
                f"({self.batch_unlabeled})"
            )
        if self.iterations < 1:
            raise ValueError("iterations must be at least 1")
        if self.cache_embeddings and not self.freeze_encoder:
            raise ValueError("cache_embeddings needs freeze_encoder (a LoRA encoder changes)")
        if self.foundation == "litemedsam" and self.fm_size != 256:
            raise ValueError(
                f"LiteMedSAM takes 256×256 inputs (its TinyViT is built for a 64×64 embedding "
                f"grid); fm_size={self.fm_size} works only with medsam-vitb / sam-vitb"
            )
        if self.foundation in ("medsam-vitb", "sam-vitb") and not self.checkpoint:
            raise ValueError(
                f"{self.foundation} needs a checkpoint file: pass --checkpoint PATH "
                "(e.g. medsam_vit_b.pth); it cannot be downloaded here"
            )
        for name in (
            "lr_schedule",
            "teacher_bn",
            "ce_norm",
            "model_selection",
            "empty_gt_hd95",
            "compile_mode",
        ):
            allowed = {
                "compile_mode": ("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
                "lr_schedule": ("none", "poly"),
                "teacher_bn": ("train", "eval"),
                "ce_norm": ("all", "confident"),
                "model_selection": ("final", "val"),
                "empty_gt_hd95": ("error", "rule"),
            }[name]
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynFoCConfig:
        """Build from a dict (e.g. a checkpoint), ignoring keys this version does not know."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for k, v in data.items():
            if k in known:
                if isinstance(v, list):
                    v = tuple(v)
                kwargs[k] = v
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# The spec's switches, flipped to their fixed values in one go.
FIXES: dict[str, Any] = {
    "lr_schedule": "poly",
    "teacher_bn": "eval",
    "dice_bg_masked": True,
    "ce_norm": "confident",
    "model_selection": "val",
    "empty_gt_hd95": "rule",
}


@dataclass(frozen=True)
class Profile:
    """A named bundle of compute settings applied on top of a task's config."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def apply(self, cfg: SynFoCConfig) -> SynFoCConfig:
        return cfg.replace(**self.overrides)


PROFILES: dict[str, Profile] = {
    "faithful": Profile(
        "faithful",
        "The paper's settings: LoRA (q, v) foundation (MedSAM ViT-B at 512 when chosen; "
        "LiteMedSAM is fixed at 256), U-Net 64..1024, batch 4+4, fp16 autocast with a grad scaler, "
        "eager, 2 loader workers. A GPU job.",
        {
            "unet_features": (64, 128, 256, 512, 1024),
            "batch_labeled": 4,
            "batch_unlabeled": 4,
            "precision": "fp16",
            "num_workers": 2,  # upstream's DataLoaders (spec §4.4)
        },
    ),
    "gpu-fast": Profile(
        "gpu-fast",
        "The faithful settings made fast: bf16 autocast, fused attention, channels-last U-Net, "
        "the frozen ViT weights held in bf16, torch.compile with CUDA graphs (the first steps "
        "compile, about a minute), DataLoader workers with pinned memory.",
        {
            "unet_features": (64, 128, 256, 512, 1024),
            "batch_labeled": 4,
            "batch_unlabeled": 4,
            "precision": "bf16",
            "channels_last": True,
            "fused_attention": True,
            "frozen_lowp": True,
            "compile": True,
            "compile_mode": "reduce-overhead",
            "num_workers": 4,
        },
    ),
    "cpu-interactive": Profile(
        "cpu-interactive",
        "A laptop CPU: frozen LiteMedSAM encoder with per-slice embeddings computed once and "
        "reused, mask decoder trained, a narrow U-Net (16..256) at 128 px, batch 2+2; metrics "
        "at 256 px. Still SynFoC (both models, SMC, CDCR).",
        {
            "foundation": "litemedsam",
            "fm_size": 256,
            "unet_size": 128,
            "eval_size": 256,
            "unet_downsample": "area",
            "unet_features": (16, 32, 64, 128, 256),
            "batch_labeled": 2,
            "batch_unlabeled": 2,
            "freeze_encoder": True,
            "cache_embeddings": True,
            "lora_targets": "none",
            "precision": "auto",
        },
    ),
    "tiny": Profile(
        "tiny",
        "Tests: a tiny random SAM-shaped model and a tiny U-Net at 64 px.",
        {
            "foundation": "tiny",
            "fm_size": 64,
            "unet_size": 64,
            "unet_features": (4, 8, 16, 32, 64),
            "batch_labeled": 2,
            "batch_unlabeled": 2,
            "precision": "fp32",
        },
    ),
}


def make_config(profile: str | None = None, **overrides: Any) -> SynFoCConfig:
    """A validated config: defaults, then ``profile``'s settings, then ``overrides``."""
    cfg = SynFoCConfig()
    if profile is not None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
        cfg = PROFILES[profile].apply(cfg)
    return cfg.replace(**overrides).validate()


def default_profile_for(device: str) -> str:
    """The profile a user gets without choosing: interactive on a CPU, fast on a GPU."""
    return "gpu-fast" if device.startswith("cuda") else "cpu-interactive"
