"""The SynFoC training loop as a generator of typed events (Qt-free).

``SynFoCTrainer(cfg, labeled, unlabeled).run(should_stop)`` yields :mod:`.events` objects: a
``Step`` every iteration with every loss term, alpha and the confident-pixel fraction,
``Predictions`` every ``predict_every`` iterations when prediction images are given,
``CheckpointSaved``, and exactly one final ``Done`` / ``Cancelled`` / ``Failed``.
The cancel flag is checked before every iteration.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import SynFoCConfig
from . import checkpoint as ckpt
from .device import (
    autocast,
    is_oom,
    make_grad_scaler,
    memory_mb,
    pick_device,
    release_memory,
    resolve_precision,
)
from .embeddings import EmbeddingBank, EmbeddingDiskCache, frozen_encoder_id
from .events import (
    Cancelled,
    CheckpointSaved,
    Done,
    Encoding,
    Event,
    Failed,
    Predictions,
    Progress,
    Started,
    Step,
)
from .inference import predict_probabilities
from .inference import resize_images as _resize
from .inference import resize_labels as _resize_labels
from .steps import TrainingError, backward_and_step, step_logs


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch for a reproducible run."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Pair(torch.nn.Module):
    """Runs a student on a labelled and (optionally) a mixed batch in one module call.

    One call per iteration is what DistributedDataParallel needs; the two forward passes stay
    separate inside it (BatchNorm statistics as upstream). ``decode``: inputs are cached
    foundation embeddings, so only the mask decoder runs.
    """

    def __init__(self, net: torch.nn.Module, decode: bool = False, concat: bool = False):
        super().__init__()
        self.net = net
        self.decode = decode
        # concat: one batched pass (exact when no BatchNorm runs in train mode, as in the
        # foundation model: SAM's decoder has LayerNorms, its frozen encoder's BN is in eval)
        self.concat = concat

    def _one(self, x):
        return self.net.decode(x) if self.decode else self.net(x)

    def forward(self, a, b=None):
        if b is None:
            return self._one(a), None
        if self.concat:
            out = self._one(torch.cat([a, b]))
            return out[: a.shape[0]], out[a.shape[0] :]
        return self._one(a), self._one(b)


def distributed_context() -> tuple[int, int]:
    """(rank, world size), initialising torch.distributed when launched by torchrun."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


class SynFoCTrainer:
    """Two Mean-Teacher pairs (foundation model, U-Net) trained together as SynFoC does.

    Parameters
    ----------
    cfg : SynFoCConfig
        The run's settings (validated here).
    labeled, unlabeled : list of data.Sample
        Training samples; unlabelled ones may carry labels, used for logging only.
    out_dir : path, optional
        Where checkpoints go (a temp dir when None).
    init_checkpoint : path, optional
        Warm start: load both students, teachers and optimisers from this checkpoint.
    predict_images : list of (C, H, W) float32 arrays, optional
        Slices to predict every ``cfg.predict_every`` iterations and at the end.
    """

    # View-first mode: at each partial refresh, this many already shown slices (the stalest,
    # nearest the view first) are predicted again with the newly encoded ones.
    REFRESH_STALE = 12

    def __init__(
        self,
        cfg: SynFoCConfig,
        labeled: Sequence[Any],
        unlabeled: Sequence[Any],
        *,
        out_dir: str | Path | None = None,
        init_checkpoint: str | Path | None = None,
        predict_images: Sequence[np.ndarray] | None = None,
        predict_keys: Sequence[str] | None = None,
        embed_cache_dir: str | Path | None = None,
        view_slice: int | None = None,
        encode_per_step: int = 4,
    ):
        from .data import LabeledDataset, UnlabeledDataset

        self.cfg = cfg.validate()
        from .strategies import strategy_for

        self.strategy = strategy_for(self.cfg)  # cfg.strategy; "synfoc" = train_step below
        if len(labeled) == 0:
            raise TrainingError(
                "no labelled images: label at least one slice (or pass --n-labeled >= 1)"
            )
        self.val_samples: list[Any] = []
        if cfg.model_selection == "val":
            # The spec's fix for test-set selection: hold out part of the labelled set and keep
            # each student's best validation state.
            if len(labeled) < 2:
                raise TrainingError(
                    "validation-based model selection needs at least 2 labelled images"
                )
            n_val = min(len(labeled) - 1, max(1, round(cfg.val_fraction * len(labeled))))
            labeled, self.val_samples = list(labeled)[:-n_val], list(labeled)[-n_val:]
        if not cfg.suponly and len(unlabeled) == 0:
            raise TrainingError(
                "SynFoC needs unlabelled images next to the labelled ones; none were given "
                "(add slices/images, or run the labelled-only baseline)"
            )
        self.rank, self.world_size = distributed_context()
        self.loaded = False  # set by load(): a warm start or resume skips the warm-up
        self.device = pick_device(cfg.device)
        if self.world_size > 1 and self.device.type == "cuda":
            import os

            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="synfoc-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.labeled_names = [s.name for s in labeled]
        self.predict_images = list(predict_images) if predict_images is not None else None
        if self.predict_images is not None and self.rank != 0:
            self.predict_images = None
        # Embedding-bank keys: a sample's identity, so a slice that is both trained on and
        # predicted is embedded once.
        self._lab_keys = [f"{s.domain}/{s.name}" for s in labeled]
        self._unl_keys = [f"{s.domain}/{s.name}" for s in unlabeled]
        if self.predict_images is not None:
            self.predict_keys = (
                list(predict_keys)
                if predict_keys
                else [f"predict/{i}" for i in range(len(self.predict_images))]
            )
        # View-first mode (cached runs with a slice in view): see _prime_near_view
        self.view_slice = view_slice
        self.encode_per_step = max(1, int(encode_per_step))
        seed_everything(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's)
        self.rng = np.random.default_rng(cfg.seed + 1 + 1000 * self.rank)

        self.cached = bool(cfg.freeze_encoder and cfg.cache_embeddings)
        self._build_models()
        self.P = cfg.unet_size
        self.S = self.fm_student.input_size
        self.R = self.fm_student.logit_size
        self.base = max(self.P, self.S)
        geometric = "flip" if self.cached else "full"
        self.labeled_ds = LabeledDataset(list(labeled), cfg, self.base, geometric=geometric)
        self.unlabeled_ds = (
            UnlabeledDataset(list(unlabeled), cfg, self.base, geometric=geometric)
            if len(unlabeled)
            else None
        )
        self.n_labeled = len(labeled)
        self.n_unlabeled = len(unlabeled)
        self.iteration = 0
        self.bank = None
        if self.cached:
            disk = None
            if embed_cache_dir is not None:
                disk = EmbeddingDiskCache(embed_cache_dir, frozen_encoder_id(self.fm_student, cfg))
            self.bank = EmbeddingBank(self.fm_student, self.device, self.precision, disk)
        self.last_checkpoint: Path | None = None
        self.collect_garbage = True  # False in a GUI process (see device.release_memory)
        self._modes_ready = False
        self.strategy.build(self)
        if init_checkpoint is not None:
            self.load(init_checkpoint, warm_start=True)

    # ------------------------------------------------------------------ models
    def _build_models(self) -> None:
        from .ema import param_pairs
        from .foundation import build_foundation
        from .unet import UNet

        cfg = self.cfg
        self.unet = UNet(cfg.in_channels, cfg.num_classes, tuple(cfg.unet_features)).to(
            self.device
        )
        if cfg.channels_last:
            self.unet = self.unet.to(memory_format=torch.channels_last)
        self.unet_teacher = copy.deepcopy(self.unet)
        for p in self.unet_teacher.parameters():
            p.requires_grad_(False)
        self.fm_student = build_foundation(cfg).to(self.device)
        if cfg.frozen_lowp and self.precision == "bf16" and self.device.type == "cuda":
            from .foundation.base import cast_frozen_matmul_weights

            cast_frozen_matmul_weights(self.fm_student.image_encoder, torch.bfloat16)
        self.fm_teacher = copy.deepcopy(self.fm_student)
        for p in self.fm_teacher.parameters():
            p.requires_grad_(False)
        self.fm_names = {n for n, _ in self.fm_student.trainable_named_parameters()}
        # EMA over all U-Net parameters (not BN buffers, as upstream) and the foundation's
        # trainable ones
        self._ema_unet = param_pairs(self.unet_teacher, self.unet)
        self._ema_fm = param_pairs(self.fm_teacher, self.fm_student, self.fm_names)
        self.opt_unet = torch.optim.SGD(
            self.unet.parameters(),
            lr=cfg.unet_lr,
            momentum=cfg.unet_momentum,
            weight_decay=cfg.unet_weight_decay,
            foreach=True,
        )
        self.opt_fm = torch.optim.AdamW(
            fm_param_groups(self.fm_student, cfg),
            lr=cfg.fm_lr,
            betas=tuple(cfg.fm_betas),
            weight_decay=cfg.fm_weight_decay,
            foreach=True,
        )
        self.scaler = make_grad_scaler(self.device, self.precision)
        self.unet_pair = _Pair(self.unet)
        self.fm_pair = _Pair(
            self.fm_student,
            decode=self.cached,
            concat=not any(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                and any(p.requires_grad for p in m.parameters())
                for m in self.fm_student.modules()
            ),
        )
        # what the teacher/weak-view passes call (compiled wrappers share the modules' tensors)
        self._unet_teacher_fn, self._fm_teacher_fn, self._unet_weak_fn = (
            self.unet_teacher,
            self.fm_teacher,
            self.unet,
        )
        if cfg.compile:
            # both students' passes and the teachers' (CUDA recommended; the first steps compile)
            mode = cfg.compile_mode
            self.unet_pair = torch.compile(self.unet_pair, mode=mode)
            self.fm_pair = torch.compile(self.fm_pair, mode=mode)
            self._unet_teacher_fn = torch.compile(self.unet_teacher, mode=mode)
            self._unet_weak_fn = torch.compile(self.unet, mode=mode)
            if not self.cached:
                self._fm_teacher_fn = torch.compile(self.fm_teacher, mode=mode)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.unet_pair = DDP(self.unet_pair, device_ids=ids)
            # the prompt encoder's point/mask embeddings and the IoU head get no gradient
            self.fm_pair = DDP(self.fm_pair, device_ids=ids, find_unused_parameters=True)

    def _set_modes(self) -> None:
        """Students in train mode, teachers per ``teacher_bn``."""
        self.unet.train()
        self.fm_student.train()
        teacher_train = self.cfg.teacher_bn == "train"
        self.unet_teacher.train(teacher_train)
        # (FoundationSegmenter.train keeps its frozen encoder, and TinyViT's BatchNorms, in eval.)
        self.fm_teacher.train(teacher_train)

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _fm_logits(model, x_s: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Foundation logits from a cached embedding when given, else from the image."""
        return model.decode(emb) if emb is not None else model(x_s)

    def _set_lr(self, t: int) -> None:
        from .ramps import lr_factor

        f = lr_factor(t, self.cfg.iterations, self.cfg.lr_schedule, self.cfg.warmup_iterations)
        for g in self.opt_unet.param_groups:
            g["lr"] = self.cfg.unet_lr * f
        for g in self.opt_fm.param_groups:
            g["lr"] = g.get("base_lr", self.cfg.fm_lr) * f

    def train_step(self, lab: dict, unl: dict | None, advance: bool = True) -> dict[str, float]:
        """One SynFoC iteration on a labelled and an unlabelled batch; returns logged values.

        ``advance=False`` (the supervised warm-up, ``unl`` None): a step at iteration 0's
        learning rate that leaves the iteration count alone; its EMA update at t = 0 copies
        each student into its teacher.  Order: teachers and pseudo-labels first (no grad),
        then ONE call per student module (labelled and mixed batch inside it, as separate
        forward passes so BatchNorm sees them apart as upstream does), so the students can be
        wrapped in DistributedDataParallel.
        """
        if self.strategy.replaces_step:  # SemiSAM+, IFL, UnCoL (core/strategies)
            return self.strategy.train_step(self, lab, unl)
        from .ema import ema_update
        from .losses import cdcr_losses, supervised_loss, unsupervised_loss
        from .mixing import box_masks, copy_paste, mix_targets, resize_mask
        from .ramps import consistency_weight
        from .smc import ensemble_pseudo_labels, smc_alpha_tensor

        cfg, dev, t = self.cfg, self.device, self.iteration
        P, S, R = self.P, self.S, self.R
        if not self._modes_ready:
            # Once: module.train() is not free (TinyViT rebuilds attention-bias tables on
            # every call); prediction restores the students' modes itself.
            self._set_modes()
            self._modes_ready = True
        self._set_lr(t)
        if cfg.compile and cfg.compile_mode == "reduce-overhead" and dev.type == "cuda":
            # a new step: last step's graph outputs are free
            torch.compiler.cudagraph_mark_step_begin()
        ramp = cfg.ramp_length or cfg.iterations  # the ramp's length (0: the whole run)
        lam = consistency_weight(t, ramp, cfg.consistency, cfg.ramp_steps)

        img_l = lab["image"].to(dev, non_blocking=True)
        gt_l = lab["label"].to(dev, non_blocking=True)
        xl_p = _resize(img_l, P, cfg.unet_downsample)
        gt_p = _resize_labels(gt_l, P)
        xl_s = _resize(img_l, S)
        gt_r = _resize_labels(gt_l, R)
        emb_l = None
        if self.cached:
            keys_l = [
                (self._lab_keys[int(i)], bool(f))
                for i, f in zip(lab["index"], lab["flip"], strict=True)
            ]
            emb_l = self.bank.batch(keys_l, self._unflipped(xl_s, lab["flip"]))
        if cfg.channels_last:
            xl_p = xl_p.contiguous(memory_format=torch.channels_last)

        mixed_p = mixed_fm = None
        semi = not cfg.suponly and unl is not None
        if semi:
            xw = unl["image"].to(dev, non_blocking=True)
            xs = unl["strong"].to(dev, non_blocking=True)
            xw_p, xw_s = _resize(xw, P, cfg.unet_downsample), _resize(xw, S)
            if cfg.channels_last:
                xw_p = xw_p.contiguous(memory_format=torch.channels_last)
            xs_p, xs_s = _resize(xs, P, cfg.unet_downsample), _resize(xs, S)
            emb_w = None
            if self.cached:
                keys_u = [
                    (self._unl_keys[int(i)], bool(f))
                    for i, f in zip(unl["index"], unl["flip"], strict=True)
                ]
                emb_w = self.bank.batch(keys_u, self._unflipped(xw_s, unl["flip"]))
            with torch.no_grad(), autocast(dev, self.precision):
                p_ut = torch.softmax(self._unet_teacher_fn(xw_p).float(), dim=1)
                p_ms = torch.softmax(
                    self._fm_logits(self._fm_teacher_fn, xw_s, emb=emb_w).float(), dim=1
                )
                # The student's view of the weak batch (train mode: updates BN statistics as
                # upstream's grad-enabled pass does; only its argmax is used).
                q_u = (
                    self._unet_weak_fn(xw_p).max(1).indices
                )  # max(): ~15x faster than argmax on CPU
            q_ut, q_ms = p_ut.max(1).indices, p_ms.max(1).indices
            if cfg.use_smc:
                alpha = smc_alpha_tensor(
                    q_u,
                    q_ut,
                    q_ms,
                    cfg.num_classes,
                    cfg.phi_classes,
                    cfg.alpha_mode,
                    cfg.alpha_constant,
                    progress=t / max(cfg.iterations, 1),
                )
            else:
                alpha = torch.full(
                    (xw.shape[0],), cfg.alpha_constant, dtype=torch.float64, device=dev
                )
            ens = ensemble_pseudo_labels(p_ut, p_ms, alpha, cfg.tau)
            m_p = box_masks(xw.shape[0], P, self.rng, cfg.box_area, cfg.box_ratio).to(dev)
            m_s = resize_mask(m_p, S)
            m_r = resize_mask(m_p, R)
            mixed_p = copy_paste(xs_p, xl_p, m_p)
            pl_p, w_p = mix_targets(ens["pl_unet"], ens["w_unet"], gt_p, m_p)
            pl_r, w_r = mix_targets(ens["pl_fm"], ens["w_fm"], gt_r, m_r)
            if self.cached:
                # The frozen encoder saw the unlabelled image without its strong (photometric)
                # view; the box is pasted in embedding space.
                m_e = resize_mask(m_p, emb_w.shape[-1])[:, None]
                mixed_fm = emb_w * (1 - m_e) + emb_l * m_e
            else:
                mixed_fm = copy_paste(xs_s, xl_s, m_s)
            if cfg.channels_last:
                mixed_p = mixed_p.contiguous(memory_format=torch.channels_last)

        with autocast(dev, self.precision):
            out_ul, out_um = self.unet_pair(xl_p, mixed_p)
            out_fl, out_fm = self.fm_pair(emb_l if self.cached else xl_s, mixed_fm)
            sup_u, parts_u = supervised_loss(out_ul.float(), gt_p)
            sup_f, parts_f = supervised_loss(out_fl.float(), gt_r)
            loss = sup_u + sup_f
            if semi:
                out_um, out_fm = out_um.float(), out_fm.float()
                uns_u = unsupervised_loss(out_um, pl_p, w_p, cfg.dice_bg_masked, cfg.ce_norm)
                uns_f = unsupervised_loss(out_fm, pl_r, w_r, cfg.dice_bg_masked, cfg.ce_norm)
                if cfg.use_cdcr:
                    l_c, l_d, m_c = cdcr_losses(torch.softmax(out_fm, 1), torch.softmax(out_um, 1))
                else:
                    l_c = l_d = torch.zeros((), device=dev)
                    m_c = None
                loss = loss + lam * (uns_u + uns_f + l_c + l_d)
        # Every logged value leaves the device in ONE transfer (one GPU sync per step, not 15).
        tlogs: dict[str, torch.Tensor] = {
            "sup_unet": sup_u,
            "sup_fm": sup_f,
            "ce_unet": parts_u["ce"],
            "dice_unet": parts_u["dice"],
            "ce_fm": parts_f["ce"],
            "dice_fm": parts_f["dice"],
        }
        if semi:
            tlogs.update(
                unsup_unet=uns_u,
                unsup_fm=uns_f,
                l_c=l_c,
                l_d=l_d,
                confident_fraction=ens["w_unet"].float().mean(),
                alpha=alpha.mean(),
            )
            if m_c is not None:
                tlogs["consensus_fraction"] = m_c.float().mean()
            if "label" in unl and bool((unl["label"] >= 0).all()):
                # Pseudo-label quality against the (never trained-on) unlabelled ground truth.
                gt_u = _resize_labels(unl["label"].to(dev), P)
                tlogs["pseudo_label_acc"] = (ens["pl_unet"] == gt_u).float().mean()
        tlogs["loss"] = loss
        logs = step_logs(tlogs, dev, t)  # one transfer; TrainingError on a NaN loss
        self.opt_unet.zero_grad(set_to_none=True)
        self.opt_fm.zero_grad(set_to_none=True)
        backward_and_step(loss, self.scaler, self.opt_unet, self.opt_fm)
        ema_update(*self._ema_unet, t, cfg.ema_decay)
        ema_update(*self._ema_fm, t, cfg.ema_decay)
        logs["lambda"] = lam
        if advance:
            self.iteration += 1
        return logs

    @staticmethod
    def _unflipped(x: torch.Tensor, flips) -> torch.Tensor:
        """Undo the dataset's horizontal flip, so the bank flips the canonical image itself."""
        out = x.clone()
        for i, f in enumerate(flips):
            if bool(f):
                out[i] = torch.flip(out[i], dims=[-1])
        return out

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self, images: Sequence[np.ndarray], batch: int = 4
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of both students for (C, H, W) images: (N, K, H, W) each."""
        keys = self.predict_keys if self.cached and images is self.predict_images else None
        return self._predict_with_keys(images, keys, batch)

    def _predict_with_keys(
        self, images: Sequence[np.ndarray], keys: Sequence[str] | None, batch: int = 4
    ) -> tuple[np.ndarray, np.ndarray]:
        """Both students (the EMA teachers with ``display_teachers``) on ``images``; embeddings
        from the bank under ``keys`` (None: encode)."""
        teachers = self.strategy.shows_teachers(self.cfg)
        fm_p, un_p = predict_probabilities(
            self.unet_teacher if teachers else self.unet,
            self.fm_teacher if teachers else self.fm_student,
            images,
            self.P,
            self.device,
            self.precision,
            bank=self.bank if keys is not None else None,
            bank_keys=keys,
            batch=batch,
            unet_downsample=self.cfg.unet_downsample,
        )
        # a prompted strategy's foundation side: the frozen model prompted by the U-Net
        fm_prompted = self.strategy.foundation_probabilities(self, images, keys, un_p)
        return (fm_p if fm_prompted is None else fm_prompted), un_p

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "iteration": self.iteration,
            "unet_student": self.unet.state_dict(),
            "unet_teacher": self.unet_teacher.state_dict(),
            "fm_student": self.fm_student.state_for_checkpoint(),
            "fm_teacher": self.fm_teacher.state_for_checkpoint(),
            "opt_unet": self.opt_unet.state_dict(),
            "opt_fm": self.opt_fm.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "labeled": list(self.labeled_names),
            "validation": getattr(self, "val_history", []),
            "best_iteration": {k: v[2] for k, v in getattr(self, "best", {}).items()},
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "precision": self.precision,
            "device": str(self.device),
        }

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.out_dir / "synfoc_checkpoint.pt"
        if self.rank != 0:  # under torchrun, rank 0 writes the (identical) models
            return path
        ckpt.save_checkpoint(path, self.state_dict())
        self.last_checkpoint = path
        return path

    def load(self, path: str | Path, warm_start: bool = True) -> None:
        """Load models (and optimisers, iteration) from a checkpoint of a compatible config."""
        state = ckpt.load_checkpoint(path, map_location=self.device)
        old = SynFoCConfig.from_dict(state["config"])
        for key in (
            "num_classes",
            "in_channels",
            "foundation",
            "fm_size",
            "unet_features",
            "lora_targets",
            "lora_rank",
        ):
            if getattr(old, key) != getattr(self.cfg, key):
                raise ckpt.CheckpointError(
                    f"checkpoint '{path}' was trained with {key}={getattr(old, key)!r}, "
                    f"but this run uses {key}={getattr(self.cfg, key)!r}"
                )
        self.unet.load_state_dict(state["unet_student"])
        self.unet_teacher.load_state_dict(state["unet_teacher"])
        self.fm_student.load_checkpoint_state(state["fm_student"])
        self.fm_teacher.load_checkpoint_state(state["fm_teacher"])
        try:
            self.opt_unet.load_state_dict(state["opt_unet"])
            self.opt_fm.load_state_dict(state["opt_fm"])
        except (ValueError, KeyError):
            pass  # optimiser layout changed (e.g. another profile): start them fresh
        # A warm start (retrain with corrections) begins a new schedule from the loaded models;
        # otherwise the run resumes at the saved iteration.
        self.iteration = 0 if warm_start else int(state["iteration"])
        self.loaded = True  # no supervised warm-up: the students are trained already

    # ------------------------------------------------------------------ the loop
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
        """Train ``cfg.iterations`` iterations, yielding events; never raises for training
        errors."""
        from .data import infinite_loader

        cfg = self.cfg
        t_start = time.perf_counter()
        yield Started(
            device=str(self.device),
            precision=self.precision,
            n_labeled=self.n_labeled,
            n_unlabeled=self.n_unlabeled,
            iterations=cfg.iterations,
            start_iteration=self.iteration,
            config=cfg.to_dict(),
        )
        try:
            progressive = self._progressive()
            if progressive:
                yield from self._prime_near_view()
            elif self.cached and self.predict_images is not None:
                yield from self._prime_prediction_bank()
            # each rank draws its own batches (different seeds), DDP averages the gradients
            lab_iter = infinite_loader(
                self.labeled_ds,
                cfg.batch_labeled,
                cfg.seed + 101 * self.rank,
                cfg.num_workers,
                pin_memory=self.device.type == "cuda",
            )
            unl_iter = (
                infinite_loader(
                    self.unlabeled_ds,
                    cfg.batch_unlabeled,
                    cfg.seed + 7 + 101 * self.rank,
                    cfg.num_workers,
                    pin_memory=self.device.type == "cuda",
                )
                if self.unlabeled_ds is not None and not cfg.suponly
                else None
            )
            warm = cfg.warmup_steps + cfg.warmup_unet_steps
            if warm and not self.loaded and not self.strategy.replaces_step:
                yield from self._warm_up(lab_iter, progressive, should_stop)
                if progressive and not should_stop():
                    # show the warmed-up models on the slices encoded so far at once
                    yield from self._progressive_refresh(0, full=True)
            while self.iteration < cfg.iterations:
                if should_stop():
                    path = self.save()
                    yield CheckpointSaved(path, self.iteration)
                    yield Cancelled(self.iteration, path)
                    return
                t0 = time.perf_counter()
                lab = next(lab_iter)
                if progressive:
                    lab = self._unmirror_unready(lab, self._lab_keys)
                if unl_iter is None:
                    unl = None
                else:
                    unl = self._ready_unlabeled_batch() if progressive else next(unl_iter)
                logs = self.train_step(lab, unl)
                dt = time.perf_counter() - t0
                yield Step(
                    iteration=self.iteration - 1,
                    total=cfg.iterations,
                    losses={
                        k: v
                        for k, v in logs.items()
                        if k not in ("alpha", "confident_fraction", "lambda")
                    },
                    alpha=logs["alpha"],
                    confident_fraction=logs["confident_fraction"],
                    lam=logs["lambda"],
                    seconds=dt,
                    memory_mb=memory_mb(self.device),
                )
                it = self.iteration
                if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < cfg.iterations:
                    yield CheckpointSaved(self.save(), it)
                if self.val_samples and (it % self._val_every() == 0 or it == cfg.iterations):
                    self._validate_and_keep_best()
                if progressive:
                    yield from self._progressive_refresh(it)
                elif (
                    self.predict_images is not None
                    and cfg.predict_every
                    and it < cfg.iterations
                    and (it % cfg.predict_every == 0 or it == cfg.first_predict_at)
                ):
                    fm_p, un_p = self.predict(self.predict_images)
                    yield Predictions(it, fm_p, un_p)
            if self.val_samples:
                self._restore_best()
            path = self.save()
            yield CheckpointSaved(path, self.iteration)
            if self.predict_images is not None:
                if progressive:
                    yield from self._encode_pending(len(self._pending))
                fm_p, un_p = self.predict(self.predict_images)
                yield Predictions(self.iteration, fm_p, un_p)
            yield Done(self.iteration, path, time.perf_counter() - t_start)
        except TrainingError as exc:
            yield Failed(str(exc), self.iteration, self.last_checkpoint, exc)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never swallowed silently
            if is_oom(exc):
                msg = (
                    f"out of memory at iteration {self.iteration} on {self.device}: use a lighter "
                    "setting (the cpu-interactive profile, batch 2+2, a smaller --size, or a "
                    "narrower U-Net)"
                )
            else:
                msg = f"training failed at iteration {self.iteration}: {type(exc).__name__}: {exc}"
            yield Failed(msg, self.iteration, self.last_checkpoint, exc)
        finally:
            self.close()

    def _warm_up(self, lab_iter, progressive: bool, should_stop) -> Iterator[Event]:
        """``cfg.warmup_steps`` supervised steps of both students on labelled batches, then
        ``cfg.warmup_unet_steps`` of the U-Net alone, before iteration 0 (a fresh run only):
        the students learn the labelled slices before the first overlay, and each step's EMA
        update at t = 0 copies them into the teachers that make the pseudo-labels.  A departure
        of the interactive profile; the faithful default is 0 steps."""
        both, n = (
            int(self.cfg.warmup_steps),
            int(self.cfg.warmup_steps + self.cfg.warmup_unet_steps),
        )
        for k in range(n):
            if should_stop():
                return  # the main loop saves and reports the cancel
            lab = next(lab_iter)
            if progressive:
                lab = self._unmirror_unready(lab, self._lab_keys)
            if k < both:
                self.train_step(lab, None, advance=False)
            else:  # ``warmup_unet_steps``: the U-Net alone (a fifth of a step's cost)
                self._unet_warm_step(lab)
            yield Progress("Warming up on the labelled slices", k + 1, n)
        self._copy_buffers_to_teachers()

    @torch.no_grad()
    def _copy_buffers_to_teachers(self) -> None:
        """The students' BatchNorm statistics into the teachers (the EMA copies parameters
        only), so a teacher shown or used in eval mode right after the warm-up is the student."""
        for teacher, student in (
            (self.unet_teacher, self.unet),
            (self.fm_teacher, self.fm_student),
        ):
            src = dict(student.named_buffers())
            for name, buf in teacher.named_buffers():
                if name in src and src[name].shape == buf.shape:
                    buf.copy_(src[name])

    def _unet_warm_step(self, lab: dict) -> None:
        """One supervised step of the U-Net student alone at iteration 0's learning rate; the
        EMA update at t = 0 copies it into its teacher."""
        from .ema import ema_update
        from .losses import supervised_loss

        cfg, dev = self.cfg, self.device
        self._set_lr(0)
        x = _resize(lab["image"].to(dev), self.P, cfg.unet_downsample)
        gt = _resize_labels(lab["label"].to(dev), self.P)
        with autocast(dev, self.precision):
            out, _ = self.unet_pair(x, None)
            loss, _ = supervised_loss(out.float(), gt)
        step_logs({"loss": loss}, dev, 0)  # TrainingError on a NaN loss
        self.opt_unet.zero_grad(set_to_none=True)
        backward_and_step(loss, self.scaler, self.opt_unet)
        ema_update(*self._ema_unet, 0, cfg.ema_decay)

    # ------------------------------------------------------------------ validation selection
    def _val_every(self) -> int:
        return self.cfg.val_every or max(1, self.cfg.iterations // 10)

    def _validate_and_keep_best(self) -> dict[str, float]:
        """Mean foreground Dice of both students on the held-out labelled images; keeps each
        student's best state (copied to the CPU)."""
        from .data import load_test_set
        from .metrics import image_metrics

        if not hasattr(self, "_val_items"):
            self._val_items = load_test_set(self.val_samples, self.base, self.cfg)
            self.best = {"unet": (-1.0, None, -1), "fm": (-1.0, None, -1)}
        imgs = [it[1] for it in self._val_items]
        fm_p, un_p = predict_probabilities(
            self.unet,
            self.fm_student,
            imgs,
            self.P,
            self.device,
            self.precision,
            unet_downsample=self.cfg.unet_downsample,
        )
        scores = {}
        for key, prob in (("unet", un_p), ("fm", fm_p)):
            dices = [
                image_metrics(
                    prob[i].argmax(0),
                    it[2],
                    self.cfg.num_classes,
                    self.cfg.phi_classes,
                    empty_gt="rule",
                )["mean"]["dice"]
                for i, it in enumerate(self._val_items)
            ]
            scores[key] = float(np.mean(dices))
            if scores[key] > self.best[key][0]:
                module = self.unet if key == "unet" else self.fm_student
                state = module.state_dict() if key == "unet" else module.state_for_checkpoint()
                state = {
                    k: (
                        v.detach().cpu().clone()
                        if isinstance(v, torch.Tensor)
                        else copy.deepcopy(v)
                    )
                    for k, v in state.items()
                }
                self.best[key] = (scores[key], state, self.iteration)
        self.val_history = getattr(self, "val_history", []) + [
            {"iteration": self.iteration, **scores}
        ]
        return scores

    def _restore_best(self) -> None:
        """Load each student's best validation state (the model this run reports)."""
        for key in ("unet", "fm"):
            score, state, it = self.best[key]
            if state is None:
                continue
            if key == "unet":
                self.unet.load_state_dict(state)
            else:
                self.fm_student.load_checkpoint_state(state)

    # ------------------------------------------------------------------ view-first encoding
    def _progressive(self) -> bool:
        """View-first mode: a cached run that predicts a stack whose slice in view is known.

        Only the labelled slices, the slice in view and one unlabelled batch near it are encoded
        before training; the rest is encoded ``encode_per_step`` slices per iteration, nearest to
        the view first, while unlabelled batches are drawn from the encoded slices (unmirrored).
        Predictions then come as partial events (``Predictions.slices``) as slices get encoded.
        """
        view = self.view_slice is not None
        return bool(self.cached and self.predict_images is not None and view)

    def _queue_item(self, kind: str, i: int) -> tuple[tuple[str, bool], torch.Tensor]:
        """Bank key and S×S image of a queue item: stack slice ``i`` ("slice"), unlabelled
        sample ``i`` ("unl") or the mirrored view of labelled sample ``i`` ("lab_flip")."""
        if kind == "slice":
            img = torch.from_numpy(np.ascontiguousarray(self.predict_images[i]))[None].float()
            return (self.predict_keys[i], False), _resize(img, self.S, "bilinear")[0]
        if kind == "unl":
            img = torch.from_numpy(np.asarray(self.unlabeled_ds.images[i]))[None].float()
            return (self._unl_keys[i], False), _resize(img, self.S)[0]
        img = torch.from_numpy(np.asarray(self.labeled_ds.images[i]))[None].float()
        return (self._lab_keys[i], True), _resize(img, self.S)[0]

    def _prime_near_view(self) -> Iterator[Event]:
        n = len(self.predict_images)
        view = min(max(int(self.view_slice), 0), n - 1)
        lab, pred = set(self._lab_keys), set(self.predict_keys)
        by_view = sorted(range(n), key=lambda i: (abs(i - view), i))
        queue = [("slice", i) for i in by_view] + [
            ("unl", j) for j, k in enumerate(self._unl_keys) if k not in pred
        ]
        first = [("slice", i) for i in range(n) if self.predict_keys[i] in lab]
        need = self.cfg.batch_unlabeled if not self.cfg.suponly else 0
        unl_keys = set(self._unl_keys)
        if self.predict_keys[view] in unl_keys:
            need -= 1
        first.append(("slice", view))
        for kind, i in queue:  # one unlabelled batch's worth, nearest to the view
            if need <= 0:
                break
            key = self.predict_keys[i] if kind == "slice" else self._unl_keys[i]
            if key in unl_keys and (kind, i) not in first:
                first.append((kind, i))
                need -= 1
        first = list(dict.fromkeys(first))
        chosen = set(first)
        # mirrored labelled views after the stack's slices (until then labelled draws are
        # unmirrored), unlabelled samples from other images last
        lab_flips = [("lab_flip", j) for j in range(len(self._lab_keys))]
        self._pending = [q for q in queue if q not in chosen]
        n_stack = sum(1 for q in self._pending if q[0] == "slice")
        self._pending[n_stack:n_stack] = lab_flips
        self._encode_total = len(first) + len(self._pending)
        self._encode_done = 0
        self._fresh: list[int] = []  # encoded stack slices without a prediction yet
        self._covered: set[int] = set()
        self._predicted_at: dict[int, int] = {}  # stack slice -> iteration of its prediction
        self._pool_rng = np.random.default_rng(self.cfg.seed + 7)
        self._pool_draw = 0
        yield Encoding(0, self._encode_total)
        yield from self._encode(first)

    def _encode(self, items, batch: int = 4) -> Iterator[Event]:
        """Encode queue items, ``batch`` per encoder call; an Encoding event after each call."""
        for s in range(0, len(items), batch):
            chunk = items[s : s + batch]
            keys, images = zip(*(self._queue_item(k, i) for k, i in chunk), strict=True)
            self.bank.compute_many(keys, images)
            self._fresh.extend(i for k, i in chunk if k == "slice")
            self._encode_done += len(chunk)
            yield Encoding(self._encode_done, self._encode_total)

    def _unmirror_unready(self, batch: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
        """Undo the mirror of batch items whose mirrored embedding is not encoded yet."""
        for b, (i, f) in enumerate(zip(batch["index"], batch["flip"], strict=True)):
            if bool(f) and (keys[int(i)], True) not in self.bank.store:
                for name in ("image", "strong", "label"):
                    if name in batch:
                        batch[name][b] = torch.flip(batch[name][b], dims=[-1])
                batch["flip"][b] = False
        return batch

    def _encode_pending(self, count: int) -> Iterator[Event]:
        items, self._pending = self._pending[:count], self._pending[count:]
        yield from self._encode(items)

    def _ready_unlabeled_batch(self) -> dict[str, Any]:
        """An unlabelled batch drawn from the samples whose embedding is ready (unmirrored)."""
        ready = [j for j, k in enumerate(self._unl_keys) if (k, False) in self.bank.store]
        if not ready:
            raise TrainingError("no unlabelled slice has been encoded yet (internal error)")
        b = self.cfg.batch_unlabeled
        picks = self._pool_rng.choice(ready, size=b, replace=len(ready) < b)
        items = [self.unlabeled_ds[(int(j), self._pool_draw + n)] for n, j in enumerate(picks)]
        self._pool_draw += b
        batch = torch.utils.data.default_collate(items)
        return self._unmirror_unready(batch, self._unl_keys)

    def _progressive_refresh(self, it: int, full: bool = False) -> Iterator[Event]:
        """Encode a few more slices; predict the new ones (every ``first_predict_at``
        iterations) or every encoded one (at ``first_predict_at``, every ``predict_every`` and
        when ``full``: after the warm-up)."""
        cfg = self.cfg
        start = max(1, cfg.first_predict_at)
        if self._pending and it > cfg.first_predict_at:
            yield from self._encode_pending(self.encode_per_step)
        if it >= cfg.iterations:
            return  # the run's end predicts every slice
        if (
            full
            or it == cfg.first_predict_at
            or (cfg.predict_every and it % cfg.predict_every == 0)
        ):
            idx = sorted(self._covered | set(self._fresh))
        elif it > start and (it - start) % start == 0:
            # the new slices, plus the stalest shown ones (nearest the view first), so no slice
            # keeps an early, empty prediction until the next full refresh
            view = int(self.view_slice)
            stale = sorted(
                self._covered - set(self._fresh),
                key=lambda i: (self._predicted_at.get(i, -1), abs(i - view)),
            )[: self.REFRESH_STALE]
            idx = sorted(set(self._fresh) | set(stale))
        else:
            return
        if not idx:
            return
        self._fresh = []
        self._covered |= set(idx)
        self._predicted_at.update(dict.fromkeys(idx, it))
        fm_p, un_p = self.predict_slices(idx)
        n = len(self.predict_images)
        yield Predictions(it, fm_p, un_p, None if len(idx) == n else tuple(idx), n)

    def predict_slices(self, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Both students' probabilities for the stack slices ``idx`` (embeddings from the bank)."""
        images = [self.predict_images[i] for i in idx]
        return self._predict_with_keys(images, [self.predict_keys[i] for i in idx])

    def _prime_prediction_bank(self) -> Iterator[Event]:
        """Embed the prediction slices once (cached profile) so overlays come quickly."""
        n = len(self.predict_images)
        for i, img in enumerate(self.predict_images):
            x = _resize(
                torch.from_numpy(np.ascontiguousarray(img))[None].float(), self.S, "bilinear"
            )[0]
            self.bank.compute((self.predict_keys[i], False), x)
            yield Progress("embedding slices with the frozen encoder", i + 1, n)

    def close(self) -> None:
        """Release cached GPU memory."""
        release_memory(self.device, collect=self.collect_garbage)

    def free(self) -> None:
        """Drop the models and optimisers (after the run) and release memory."""
        for name in (
            "unet",
            "unet_teacher",
            "fm_student",
            "fm_teacher",
            "opt_unet",
            "opt_fm",
            "bank",
        ):
            if hasattr(self, name):
                setattr(self, name, None)
        release_memory(self.device, collect=self.collect_garbage)


HEAD_PREFIXES = ("mask_decoder.mask_tokens.", "mask_decoder.output_hypernetworks_mlps.")


def fm_param_groups(fm, cfg: SynFoCConfig) -> list[dict[str, Any]]:
    """The foundation optimiser's parameter groups: one at ``fm_lr`` (the paper), or, with
    ``fm_head_lr`` > 0, the class heads (mask tokens, hypernetwork MLPs) at ``fm_head_lr`` and
    the rest at ``fm_lr``.  Each group keeps its ``base_lr`` for the schedule."""
    named = fm.trainable_named_parameters()
    if not cfg.fm_head_lr:
        return [{"params": [p for _, p in named], "base_lr": cfg.fm_lr}]
    heads = [p for n, p in named if n.startswith(HEAD_PREFIXES)]
    rest = [p for n, p in named if not n.startswith(HEAD_PREFIXES)]
    return [
        {"params": rest, "lr": cfg.fm_lr, "base_lr": cfg.fm_lr},
        {"params": heads, "lr": cfg.fm_head_lr, "base_lr": cfg.fm_head_lr},
    ]
