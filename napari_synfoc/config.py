"""One place for every default: the SynFoC configuration and the named compute profiles.

Faithful to the official SynFoC code by default; each fix of a known upstream quirk sits behind
a named switch (:data:`FIXES` turns them all on).  No module reads a magic number of the method
from anywhere else: they take a :class:`SynFoCConfig`.

Each field carries metadata, the one table every front end reads (the CLI's argparse options,
the dock's Advanced form, validation): ``choices`` (allowed values, a tuple), ``range``
(``(lo, hi)``, inclusive, ``None`` for an open side), ``step`` and ``ui_range`` (the form's
spin box), ``arch`` (the field describes the model's architecture: a warm start keeps the
checkpoint's value) and ``help``.  :func:`resolve_config` is the one way a profile, a device, a
foundation model and user overrides become a config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FOUNDATIONS = ("litemedsam", "medsam-vitb", "sam-vitb", "tiny")
VITB_FOUNDATIONS = ("medsam-vitb", "sam-vitb")  # need a checkpoint file; LoRA, no cache
ALPHA_MODES = ("smc", "self", "mutual", "constant", "linear")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENCODER_RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")  # issue 22, frozen_encoder.py
# A profile's torch.compile is kept only for runs at least this long: compiling takes about a
# minute and pays off after several hundred iterations (the dock's short rounds do not).
COMPILE_MIN_ITERATIONS = 1000
# Issue 21: proposals from the models stop at the labelled slices that lack the class beyond
# its outermost labelled slices (a structure spanning one run of slices, as an aorta or a
# vertebra; switch off for structures that come and go, as lesions)
PROPOSALS_WITHIN_LABELLED_EXTENT = True
# Issue 21: proposals from the models leave out the 3-D parts (26-connected, with the labels)
# smaller than this fraction of the class's largest part and holding no labelled voxel: the
# specks a person would erase one slice at a time (0: keep every part).  Replayed on the CT's
# loop states (benchmarks/correction_study.py, docs/results/effort_cpu/correction_study): the
# final sweep's strokes fell by 14-32 at 0.02-0.5 (a plateau), by 11-16 at 0.005-0.01
PROPOSALS_MIN_3D_PART = 0.05
# Issue 21: proposals from the models fill each slice between two labelled slices that both
# hold the class with the interpolation of their masks (core/slice_interpolation.py), and use
# the models' masks on the other slices.  Replayed on the CT's three loop states before their
# final sweep: the sweep's strokes on the proposed slices fell from 73/65/83 to 52/50/50 (the
# models' masks lost in every gap size up to 16 slices); in the loop, 3 seeds: 129.3 -> 99.7
# interactions (docs/results/effort_cpu/fill_between).  It assumes a volume: switch it off for
# a stack of separate images
PROPOSALS_FILL_BETWEEN = True
# Issue 21: on a volume the ranking also weighs each slice by its distance in z to the nearest
# labelled slice (core.review.z_spread_weights): the fill between labelled slices
# (core.slice_interpolation) is best from evenly spread anchors.  Replayed on the CT's first
# runs (benchmarks/ranking_replay.py, three seeds, 20 picks): 96.7 -> 69.3 interactions; in
# the loop, 3 seeds (docs/results/effort_cpu/z_spread): 99.7 -> 90.7, 13.4 % fewer than random
# picks (4.8 % before).  Only for volumes, since a stack's order means nothing: the dock
# follows the Prompt panel's "fill between labelled slices" box
RANK_Z_SPREAD = True


def _f(
    default: Any,
    help: str = "",
    *,
    choices: tuple | None = None,
    range: tuple | None = None,
    step: float | None = None,
    ui_range: tuple | None = None,
    arch: bool = False,
) -> Any:
    """A dataclass field with its table row (see the module docstring)."""
    meta = {"help": help, "choices": choices, "range": range, "step": step, "arch": arch}
    meta["ui_range"] = ui_range
    return field(default=default, metadata=meta)


@dataclass
class SynFoCConfig:
    """Every setting of one SynFoC training run.

    Sizes: ``unet_size`` is P (U-Net input), ``fm_size`` is S (foundation input); the foundation
    logit size R follows from the model (S/4 for SAM ViT-B, S for LiteMedSAM).
    """

    # task
    num_classes: int = _f(2, "K, background included", range=(2, None), arch=True)
    in_channels: int = _f(1, "U-Net input channels (3 for RGB data)", range=(1, None), arch=True)
    phi_classes: str = _f(
        "plain",
        '"plain": classes 1..K-1; "fundus": cup = 1, disc = label > 0',
        choices=("plain", "fundus"),
    )
    # models
    foundation: str = _f("litemedsam", "foundation model", choices=FOUNDATIONS, arch=True)
    checkpoint: str | None = _f(None, "weights file for medsam-vitb / sam-vitb", arch=True)
    fm_size: int = _f(
        256, "foundation input size S", range=(16, None), step=32, ui_range=(32, 1024), arch=True
    )
    unet_size: int = _f(
        256, "U-Net input size P", range=(16, None), step=32, ui_range=(32, 1024), arch=True
    )
    eval_size: int = _f(0, "metrics resolution; 0 = unet_size (the paper's P×P)", range=(0, None))
    unet_downsample: str = _f(
        "nearest",
        'image resize to P: "nearest" (upstream, aliases) | "area"',
        choices=("nearest", "area"),
    )
    unet_features: tuple[int, ...] = _f(
        (64, 128, 256, 512, 1024), "U-Net widths per level", arch=True
    )
    lora_rank: int = _f(4, "LoRA rank", range=(1, None), step=1, ui_range=(1, 64), arch=True)
    lora_targets: str = _f(
        "qv", "LoRA on q, v (paper), q, k, v, or none", choices=("qv", "qkv", "none"), arch=True
    )
    freeze_encoder: bool = _f(
        False, "no LoRA, encoder frozen; embeddings may be cached", arch=True
    )
    cache_embeddings: bool = _f(False, "reuse per-slice encoder outputs (needs freeze_encoder)")
    fm_head_init: str = _f("random", 'class heads: "random" (paper) | "pretrained" (SAM token 0; background its negation)', choices=("random", "pretrained"))  # fmt: skip  # noqa: E501
    # schedule
    iterations: int = _f(30000, "training iterations", range=(1, None))
    batch_labeled: int = _f(4, "labelled batch size", range=(1, None), step=1, ui_range=(1, 64))
    batch_unlabeled: int = _f(4, "unlabelled batch size", range=(1, None), step=1,
                              ui_range=(1, 64))  # fmt: skip
    seed: int = _f(1337, "random seed", range=(0, 2**32 - 1), step=1, ui_range=(0, 2**31 - 1))
    # optimisers (train.py:439-447)
    unet_lr: float = _f(0.03, "U-Net SGD learning rate", range=(0.0, None), step=0.001,
                        ui_range=(1e-5, 1.0))  # fmt: skip
    unet_momentum: float = _f(0.9, "U-Net SGD momentum", range=(0.0, 1.0))
    unet_weight_decay: float = _f(1e-4, "U-Net weight decay", range=(0.0, None))
    fm_lr: float = _f(1.2e-4, "foundation AdamW learning rate", range=(0.0, None), step=1e-5,
                      ui_range=(1e-7, 0.1))  # fmt: skip
    fm_head_lr: float = _f(0.0, "learning rate of the foundation's class heads (mask tokens, hypernetwork MLPs); 0: fm_lr", range=(0.0, None))  # fmt: skip  # noqa: E501
    fm_betas: tuple[float, float] = _f((0.9, 0.999), "foundation AdamW betas")
    fm_weight_decay: float = _f(0.1, "foundation weight decay", range=(0.0, None))
    # method
    tau: float = _f(0.95, "confidence threshold", range=(0.0, 1.0), step=0.01, ui_range=(0.5, 1.0))
    ema_decay: float = _f(0.99, "teacher EMA decay", range=(0.0, 1.0), step=0.001,
                          ui_range=(0.9, 0.9999))  # fmt: skip
    consistency: float = _f(1.0, "lambda_max", range=(0.0, None), step=0.1, ui_range=(0.0, 10.0))
    ramp_steps: int = _f(
        200, "lambda is quantised into this many steps over the run", range=(0, None), step=10,
        ui_range=(1, 100000),
    )  # fmt: skip
    ramp_length: int = _f(0, "iterations over which lambda ramps up (0: the whole run, as the paper)", range=(0, None))  # fmt: skip  # noqa: E501
    warmup_steps: int = _f(0, "supervised steps of both students on the labelled slices before iteration 0, teachers copied after (0: none, as the paper)", range=(0, None))  # fmt: skip  # noqa: E501
    display_teachers: bool = _f(False, "overlays, Predict and export show the EMA teachers instead of the students (SynFoC only; the paper evaluates the students)")  # fmt: skip  # noqa: E501
    warmup_unet_steps: int = _f(0, "further U-Net-only warm-up steps (cheap: the U-Net learns from scratch, the foundation does not)", range=(0, None))  # fmt: skip  # noqa: E501
    alpha_mode: str = _f("smc", "how the two teachers' predictions are mixed", choices=ALPHA_MODES)
    alpha_constant: float = _f(0.5, "alpha without SMC", range=(0.0, 1.0), step=0.05)
    use_smc: bool = _f(True, "False: ensemble with alpha_constant (CDCR-only ablation)")
    use_cdcr: bool = _f(True, "False: no L_c / L_d (SMC-only ablation)")
    suponly: bool = _f(False, "labelled-only baseline: supervised loss only, same schedule")
    strategy: str = _f(
        "synfoc",
        "training method (core/strategies): synfoc, or SemiSAM+/IFL/UnCoL (frozen prompted "
        "foundation, U-Net trained)",
        choices=("synfoc", "semisam+", "ifl", "uncol"),
    )
    box_area: tuple[float, float] = _f((0.02, 0.40), "copy-paste box area fraction")
    box_ratio: float = _f(0.3, "aspect ratio ~ U(r, 1/r)", range=(0.0, 1.0))
    # weak augmentation (custom_transforms.py)
    aug_scale_p: float = _f(0.5, range=(0.0, 1.0))
    aug_scale_range: tuple[float, float] = _f((1.0, 1.5))
    aug_rotate_p: float = _f(0.5, range=(0.0, 1.0))
    aug_rotate_deg: int = _f(20, range=(0, 180))
    aug_flip_p: float = _f(0.5, range=(0.0, 1.0))
    aug_elastic_p: float = _f(0.5, range=(0.0, 1.0))
    aug_elastic_sigma_frac: float = _f(0.08, range=(0.0, None))
    aug_elastic_alpha_frac: float = _f(2.0, range=(0.0, None))
    # strong augmentation
    strong_brightness: tuple[float, float] = _f((0.1, 2.0))
    strong_contrast: tuple[float, float] = _f((0.1, 2.0))
    strong_blur_sigma: tuple[float, float] = _f((0.1, 2.0))
    strong_blur_kernel_frac: float = _f(0.1, range=(0.0, None))
    # switches for fixes of upstream quirks (faithful values first; docs/method.md)
    lr_schedule: str = _f(
        "none", '"poly": linear warm-up then poly decay', choices=("none", "poly")
    )
    warmup_iterations: int = _f(250, "warm-up length of the poly schedule", range=(0, None))
    teacher_bn: str = _f("train", "teachers' BatchNorm mode", choices=("train", "eval"))
    dice_bg_masked: bool = _f(False, "mask the background Dice term (faithful: unmasked)")
    ce_norm: str = _f(
        "all",
        "masked CE divided by all pixels or the confident ones",
        choices=("all", "confident"),
    )
    model_selection: str = _f(
        "final", "keep the final state or the best on held-out labels", choices=("final", "val")
    )
    val_fraction: float = _f(0.2, 'with model_selection="val": labelled images held out',
                             range=(0.0, 1.0))  # fmt: skip
    val_every: int = _f(0, 'with model_selection="val": validate every N iterations (0: T/10)',
                        range=(0, None))  # fmt: skip
    empty_gt_hd95: str = _f(
        "error", "HD95 on an empty ground truth: error (upstream crashes) or a rule",
        choices=("error", "rule"),
    )  # fmt: skip
    # compute
    device: str = _f("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    precision: str = _f("auto", "autocast precision", choices=PRECISIONS)
    channels_last: bool = _f(False, "channels-last U-Net")
    fused_attention: bool = _f(False, "SAM ViT attention through scaled_dot_product_attention")
    compile: bool = _f(False, "torch.compile both students and both teachers (CUDA)")
    compile_mode: str = _f(
        "default", '"reduce-overhead" uses CUDA graphs',
        choices=("default", "reduce-overhead", "max-autotune-no-cudagraphs"),
    )  # fmt: skip
    frozen_lowp: bool = _f(False, "bf16 on CUDA: keep the frozen encoder's weights in bf16")
    # issue 22: the frozen encoder's CPU runtime (core/foundation/frozen_encoder.py); "auto"
    # probes torch, ONNX Runtime and OpenVINO once per machine and keeps the fastest
    encoder_runtime: str = _f(
        "torch", "frozen encoder on the CPU: torch, onnxruntime, openvino or auto (measured)",
        choices=ENCODER_RUNTIMES,
    )  # fmt: skip
    num_workers: int = _f(0, "DataLoader workers", range=(0, None))
    predict_every: int = _f(0, "0: only at the end", range=(0, None))
    first_predict_at: int = _f(5, "an early overlay after this many iterations", range=(0, None))
    checkpoint_every: int = _f(0, "0: only at the end", range=(0, None), step=50,
                              ui_range=(0, 1000000))  # fmt: skip
    # issue 22, the U-Net everywhere first (core/encoding_schedule.py): view-first cached runs
    unet_first: bool = _f(False, "view-first runs: right after the warm-up the U-Net predicts every slice, nearest the view first; the foundation model's prediction (ensemble, consensus, M_d) follows each slice as the encoder reaches it")  # fmt: skip  # noqa: E501
    encode_schedule: str = _f("interleave", "view-first runs: encode a few slices per iteration (interleave) or every slice before iteration 0 (encode_first)", choices=("interleave", "encode_first"))  # fmt: skip  # noqa: E501

    def replace(self, **changes: Any) -> SynFoCConfig:
        """A copy with ``changes`` applied (unknown keys raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> SynFoCConfig:
        """Raise ``ValueError`` with a readable message for inconsistent settings."""
        if self.foundation not in FOUNDATIONS:
            raise ValueError(
                f"unknown foundation model {self.foundation!r}; choose from {FOUNDATIONS}"
            )
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
        if self.foundation in VITB_FOUNDATIONS and not self.checkpoint:
            raise ValueError(
                f"{self.foundation} needs a checkpoint file (its weights, e.g. "
                "medsam_vit_b.pth), which cannot be downloaded here: choose the file as the "
                "foundation model's weights"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = f.metadata.get("choices")
            if allowed is not None and value not in allowed:
                raise ValueError(f"{f.name} must be one of {allowed}, not {value!r}")
            bounds = f.metadata.get("range")
            if bounds is not None:
                lo, hi = bounds
                if (lo is not None and value < lo) or (hi is not None and value > hi):
                    raise ValueError(
                        f"{f.name} must lie in [{lo}, {'∞' if hi is None else hi}], not {value!r}"
                    )
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


# ----------------------------------------------------------------------------- the table
_FIELDS = {f.name: f for f in fields(SynFoCConfig)}


def field_meta(name: str) -> dict[str, Any]:
    """The metadata row of config field ``name`` (``KeyError`` names the unknown field)."""
    if name not in _FIELDS:
        raise KeyError(f"SynFoCConfig has no field {name!r}")
    return dict(_FIELDS[name].metadata)


def choices(name: str) -> tuple:
    """The allowed values of a choice field (``ValueError`` if ``name`` has none)."""
    allowed = field_meta(name)["choices"]
    if allowed is None:
        raise ValueError(f"config field {name!r} is not a choice field")
    return allowed


def arch_fields() -> tuple[str, ...]:
    """Fields that describe the architecture: a warm start keeps the checkpoint's values."""
    return tuple(f.name for f in fields(SynFoCConfig) if f.metadata.get("arch"))


# The dock's Advanced form, in its order; each row's widget comes from :func:`form_spec`.
ADVANCED_FIELDS = (
    "use_smc", "use_cdcr", "suponly", "alpha_mode", "alpha_constant", "tau", "ema_decay",
    "consistency", "ramp_steps", "lora_rank", "lora_targets", "freeze_encoder",
    "cache_embeddings", "batch_labeled", "batch_unlabeled", "unet_lr", "fm_lr", "fm_size",
    "unet_size", "precision", "lr_schedule", "teacher_bn", "dice_bg_masked", "ce_norm",
    "model_selection", "seed", "checkpoint_every",
)  # fmt: skip


def form_spec(name: str) -> tuple | None:
    """How a form shows field ``name``: None (a check box for a bool), the choices (a combo
    box), or ``(min, max, step)`` for a spin box."""
    meta = field_meta(name)
    if meta["choices"] is not None:
        return meta["choices"]
    if _FIELDS[name].type in ("bool", bool):
        return None
    lo, hi = meta["ui_range"] or meta["range"] or (None, None)
    if lo is None or hi is None or meta["step"] is None:
        raise ValueError(f"config field {name!r} has no finite form range and step")
    return (lo, hi, meta["step"])


# The fixes of upstream quirks (docs/method.md), flipped to their fixed values in one go.
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
    # the dock's and the interactive benchmark's run length on this profile
    run_iterations: int = 300
    # a Retrain's run length (a warm restart); None: the same as run_iterations
    retrain_iterations: int | None = None
    # (measured seconds per iteration, on what), bench figures for the dock's time estimate
    typical: tuple[float, str] | None = None

    def apply(self, cfg: SynFoCConfig) -> SynFoCConfig:
        return cfg.replace(**self.overrides)


PROFILES: dict[str, Profile] = {
    "faithful": Profile(
        "faithful",
        "The paper's settings: LoRA (q, v) foundation (MedSAM ViT-B at 512 when chosen; "
        "LiteMedSAM is fixed at 256), U-Net 64..1024, batch 4+4, fp16 autocast with a grad "
        "scaler, eager, 2 loader workers. A GPU job.",
        {
            "unet_features": (64, 128, 256, 512, 1024),
            "batch_labeled": 4,
            "batch_unlabeled": 4,
            "precision": "fp16",
            "num_workers": 2,  # upstream's DataLoaders (train.py)
        },
        run_iterations=30000,  # the paper's T; typical: docs/results/bench_gpu_h100 (ViT-B)
        typical=(0.218, "an H100"),
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
        run_iterations=3000,  # about 5 minutes on an H100 (docs/results/bench_gpu_h100)
        typical=(0.099, "an H100"),
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
            "unet_first": True,  # issue 22: U-Net predictions on every slice after the warm-up
            "encode_schedule": "encode_first",  # issue 22: docs/results/encode_schedule_cpu
            "precision": "auto",
            "fm_head_init": "pretrained",  # measured: bench/levers.py, docs/results/levers_cpu
            "warmup_steps": 20,  # measured: docs/results/levers_cpu/warmup (ens. 0.54 at it 5)
            "warmup_unet_steps": 40,  # + U-Net alone: ens. 0.74 at it 5 (warmup/unet40)
            "display_teachers": True,  # steadier overlays (levers_cpu/teachers: SD 0.013 vs 0.06)
            "encoder_runtime": "auto",  # issue 22: docs/results/encoder_runtime_cpu
        },
        run_iterations=300,  # about 4 minutes (docs/results/foreign_load_cpu, idle, 2 threads)
        retrain_iterations=100,  # issue 21: the effort loop's Retrain (docs/results/effort_cpu)
        typical=(0.76, "a 2-core CPU"),
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
        run_iterations=20,
    ),
}


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda', then 'mps', then 'cpu' (imports torch); anything else unchanged."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_config(
    profile: str | None = "auto",
    device: str = "auto",
    foundation: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> SynFoCConfig:
    """The ONE way a profile, a device, a foundation model and user overrides become a config.

    The CLI, the dock, the benchmarks and sessions all call it, so the same choices give the same
    config.  In order:

    1. ``profile`` ("auto" or None: ``gpu-fast`` on CUDA, else ``cpu-interactive``) over the
       defaults; ``device`` is stored as given (``"auto"`` stays ``"auto"``).
    2. ``foundation`` (None: the profile's).  The ``tiny`` test profile keeps its tiny random
       model: asking it for another foundation is an error.  A ViT-B foundation (medsam-vitb,
       sam-vitb) trains with q/v LoRA and no embedding cache, at 512 px in the GPU profiles
       (faithful, gpu-fast) and 256 px otherwise.
    3. A strategy other than ``synfoc`` (SemiSAM+, IFL, UnCoL: a frozen, prompted foundation)
       sets ``freeze_encoder``, ``cache_embeddings`` and ``lora_targets="none"``.
    4. ``overrides`` (config field -> value; None values are ignored) win over 1 to 3.
    5. A profile's ``compile`` stays on only for runs of at least ``COMPILE_MIN_ITERATIONS``
       iterations (compiling takes about a minute); an explicit ``compile`` override wins.

    Returns the validated config; ``ValueError`` explains a bad choice.
    """
    name = profile or "auto"
    if name == "auto":
        name = default_profile_for(resolve_device(device))
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(over) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown config setting(s) {unknown}; see SynFoCConfig")
    prof = PROFILES[name].overrides
    changes: dict[str, Any] = {"device": device}
    if foundation is not None:
        if prof.get("foundation") == "tiny" and foundation != "tiny":
            raise ValueError(
                f"the tiny test profile uses its tiny random model, not {foundation!r}: "
                "choose another profile for a real foundation model"
            )
        changes["foundation"] = foundation
    fm = over.get("foundation", changes.get("foundation", prof.get("foundation", "litemedsam")))
    if fm in VITB_FOUNDATIONS:
        changes.update(freeze_encoder=False, cache_embeddings=False, lora_targets="qv")
        changes["fm_size"] = 512 if name in ("faithful", "gpu-fast") else 256
    if over.get("strategy", prof.get("strategy", "synfoc")) != "synfoc":
        # the prompted strategies train no foundation weights: frozen encoder, cached embeddings
        changes.update(freeze_encoder=True, cache_embeddings=True, lora_targets="none")
    changes.update(over)
    cfg = PROFILES[name].apply(SynFoCConfig()).replace(**changes)
    if cfg.compile and "compile" not in over and cfg.iterations < COMPILE_MIN_ITERATIONS:
        cfg = cfg.replace(compile=False)
    return cfg.validate()


def make_config(profile: str | None = None, **overrides: Any) -> SynFoCConfig:
    """A validated config: defaults, then ``profile``'s settings, then ``overrides``.

    The plain composition for tests and internals; front ends use :func:`resolve_config`.
    """
    cfg = SynFoCConfig()
    if profile is not None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
        cfg = PROFILES[profile].apply(cfg)
    return cfg.replace(**overrides).validate()


def run_iterations(profile: str, device: str = "auto") -> int:
    """The dock's default run length for ``profile`` ("auto": the device's profile).

    Sized so that a run takes minutes on the hardware the profile is made for (the faithful
    profile keeps the paper's T).  No torch import: ``device="auto"`` counts as a CPU unless
    the caller resolved it.
    """
    return _profile(profile, device).run_iterations


def _profile(profile: str, device: str) -> Profile:
    """The :class:`Profile` of ``profile`` ("auto": the device's); ``ValueError`` names the
    choices."""
    name = default_profile_for(device) if profile in ("auto", None) else profile
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}")
    return PROFILES[name]


def retrain_iterations(profile: str, device: str = "auto") -> int:
    """The dock's default Retrain length for ``profile``: a warm restart needs fewer iterations
    than a first run (measured on the CT with the effort loop: 100 after 300 on cpu-interactive,
    docs/results/effort_cpu)."""
    p = _profile(profile, device)
    return p.run_iterations if p.retrain_iterations is None else p.retrain_iterations


def run_estimate(profile: str, iterations: int, s_per_iteration: float | None = None) -> str:
    """A short "about N min" text for ``iterations`` of ``profile``.

    ``s_per_iteration`` is a rate measured on this machine (the last run); without it the
    profile's typical figure is used and the text says where it was measured.  Empty when the
    profile has no figure.
    """
    rate, where = s_per_iteration, "measured here"
    if rate is None:
        typical = PROFILES[profile].typical
        if typical is None:
            return ""
        rate, where = typical[0], f"typical on {typical[1]}"
    total = rate * int(iterations)
    span = f"{total:.0f} s" if total < 90 else f"{total / 60:.0f} min"
    if total >= 5400:
        span = f"{total / 3600:.1f} h"
    return f"about {span} ({rate:.2f} s/iteration, {where})"


def default_profile_for(device: str) -> str:
    """The profile a user gets without choosing: interactive on a CPU, fast on a GPU."""
    return "gpu-fast" if device.startswith("cuda") else "cpu-interactive"
