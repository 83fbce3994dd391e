"""The training loop as a generator of typed events (Qt-free).

``SynFoCTrainer(cfg, labeled, unlabeled).run(should_stop)`` yields :mod:`.events` objects: a
``Step`` every iteration with every loss term, alpha and the confident-pixel fraction,
``Predictions`` every ``predict_every`` iterations when prediction images are given,
``CheckpointSaved``, and exactly one final ``Done`` / ``Cancelled`` / ``Failed``.
The cancel flag is checked before every iteration.

The trainer keeps the loop, the events, checkpoints, batch preparation, the backward pass and
optimiser steps, the EMA updates and the iteration count.  What one iteration computes is the
strategy's (:mod:`.strategies`, SynFoC included); the models are built by
:mod:`.training_models`, the view-first encoding by :mod:`.encoding_schedule`, validation-based
selection by :mod:`.best_state`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import SynFoCConfig
from . import checkpoint as ckpt
from .best_state import BestStateKeeper, hold_out_validation
from .device import autocast, memory_mb, release_memory, resolve_precision
from .ema import ema_update
from .embeddings import EmbeddingBank, EmbeddingDiskCache, frozen_encoder_id
from .encoding_schedule import ViewFirstSchedule, encode_whole_stack
from .events import (
    Cancelled,
    CheckpointSaved,
    Done,
    Event,
    Failed,
    Predictions,
    Progress,
    Started,
    Step,
)  # fmt: skip
from .inference import (
    predict_probabilities,
    predict_unet_probabilities,
    resize_images,
    resize_labels,
)
from .step_batch import prepare_batch, training_loaders
from .steps import TrainingError, backward_and_step, failure_message, step_logs
from .training_models import (
    build_training_models,
    check_compatible,
    copy_buffers,
    distributed_context,
    fm_param_groups,
    training_device,
)  # fmt: skip

__all__ = ["SynFoCTrainer", "TrainingError", "fm_param_groups", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch for a reproducible run."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SynFoCTrainer:
    """One training run of a strategy (``cfg.strategy``; SynFoC's two Mean-Teacher pairs by
    default) over labelled and unlabelled ``data.Sample`` lists (unlabelled ones may carry
    labels, for logging only).  ``out_dir``: where checkpoints go (a temp dir when None);
    ``init_checkpoint``: a warm start; ``predict_images`` ((C, H, W) float32 arrays) and their
    embedding-bank ``predict_keys``: slices predicted every ``cfg.predict_every`` iterations and
    at the end; ``embed_cache_dir``: the frozen encoder's embeddings on disk (None: memory
    only); ``view_slice``, ``encode_per_step``: the view-first mode (:mod:`.encoding_schedule`).
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
        from .strategies import strategy_for

        self.cfg = cfg.validate()
        self.strategy = strategy_for(self.cfg)
        if len(labeled) == 0:
            raise TrainingError(
                "no labelled images: label at least one slice (or pass --n-labeled >= 1)"
            )
        labeled, val_samples = hold_out_validation(labeled, self.cfg)  # ([], ...) when "final"
        if not cfg.suponly and len(unlabeled) == 0:
            raise TrainingError(
                "SynFoC needs unlabelled images next to the labelled ones; none were given "
                "(add slices/images, or run the labelled-only baseline)"
            )
        self.rank, self.world_size = distributed_context()
        self.loaded = False  # set by load(): a warm start or resume skips the warm-up
        self.device = training_device(cfg.device, self.world_size)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="synfoc-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.labeled_names = [s.name for s in labeled]
        self.predict_images = list(predict_images) if predict_images is not None else None
        if self.predict_images is not None and self.rank != 0:
            self.predict_images = None
        # Embedding-bank keys: a sample's identity, so a slice that is both trained on and
        # predicted is embedded once.
        self.lab_keys = [f"{s.domain}/{s.name}" for s in labeled]
        self.unl_keys = [f"{s.domain}/{s.name}" for s in unlabeled]
        self.predict_keys: list[str] | None = None
        if self.predict_images is not None:
            n = len(self.predict_images)
            self.predict_keys = list(predict_keys or [f"predict/{i}" for i in range(n)])
        self.view_slice = view_slice
        self.encode_per_step = max(1, int(encode_per_step))
        self.schedule: ViewFirstSchedule | None = None  # made by run() in view-first mode
        seed_everything(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's)
        self.rng = np.random.default_rng(cfg.seed + 1 + 1000 * self.rank)
        self.cached = bool(cfg.freeze_encoder and cfg.cache_embeddings)
        self._build_models()
        self.P, self.S = cfg.unet_size, self.fm_student.input_size
        self.R = self.fm_student.logit_size
        self.base = max(self.P, self.S)
        self._build_datasets(labeled, unlabeled)
        self.selection = BestStateKeeper(val_samples, cfg, self.base) if val_samples else None
        self.iteration = 0
        self.bank: EmbeddingBank | None = None
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

    # ------------------------------------------------------------------ models and data
    def _build_models(self) -> None:
        m = build_training_models(
            self.cfg, self.device, self.precision, self.cached, self.world_size
        )
        self.unet, self.unet_teacher = m.unet, m.unet_teacher
        self.fm_student, self.fm_teacher = m.fm_student, m.fm_teacher
        self.opt_unet, self.opt_fm, self.scaler = m.opt_unet, m.opt_fm, m.scaler
        self.unet_pair, self.fm_pair = m.unet_pair, m.fm_pair
        # what the teacher/weak-view passes call (compiled wrappers share the modules' tensors)
        self.unet_teacher_fn, self.fm_teacher_fn = m.unet_teacher_fn, m.fm_teacher_fn
        self.unet_weak_fn = m.unet_weak_fn
        self._ema_unet, self._ema_fm = m.ema_unet, m.ema_fm

    def _build_datasets(self, labeled, unlabeled) -> None:
        from .data import LabeledDataset, UnlabeledDataset

        geometric = "flip" if self.cached else "full"
        self.labeled_ds = LabeledDataset(list(labeled), self.cfg, self.base, geometric=geometric)
        self.unlabeled_ds = (
            UnlabeledDataset(list(unlabeled), self.cfg, self.base, geometric=geometric)
            if len(unlabeled)
            else None
        )
        self.n_labeled = len(labeled)
        self.n_unlabeled = len(unlabeled)

    def _set_modes(self) -> None:
        """Students in train mode, teachers per ``teacher_bn`` (the foundation pair only when
        the strategy trains it; FoundationSegmenter.train keeps its frozen encoder in eval)."""
        teacher_train = self.cfg.teacher_bn == "train"
        self.unet.train()
        self.unet_teacher.train(teacher_train)
        if self.strategy.trains_foundation:
            self.fm_student.train()
            self.fm_teacher.train(teacher_train)

    def _set_lr(self, t: int) -> None:
        """The schedule's learning rate at iteration ``t`` in every optimiser the strategy
        steps (each foundation group from its own ``base_lr``)."""
        from .ramps import lr_factor

        f = lr_factor(t, self.cfg.iterations, self.cfg.lr_schedule, self.cfg.warmup_iterations)
        for g in self.opt_unet.param_groups:
            g["lr"] = self.cfg.unet_lr * f
        if self.strategy.trains_foundation:
            for g in self.opt_fm.param_groups:
                g["lr"] = g.get("base_lr", self.cfg.fm_lr) * f

    # ------------------------------------------------------------------ one iteration
    def train_step(self, lab: dict, unl: dict | None, advance: bool = True) -> dict[str, float]:
        """One iteration of the strategy on a labelled and an unlabelled batch; returns the
        logged values (``lambda`` NaN when the strategy has none).

        ``advance=False`` (the supervised warm-up, ``unl`` None): a step at iteration 0's
        learning rate that leaves the iteration count alone; its EMA update at t = 0 copies
        each student into its teacher.
        """
        cfg, dev, t = self.cfg, self.device, self.iteration
        if not self._modes_ready:
            # Once: module.train() is not free (TinyViT rebuilds attention-bias tables on
            # every call); prediction restores the students' modes itself.
            self._set_modes()
            self._modes_ready = True
        self._set_lr(t)
        if cfg.compile and cfg.compile_mode == "reduce-overhead" and dev.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs are free
        batch = prepare_batch(self, lab, unl, self.strategy.trains_foundation)
        out = self.strategy.step(self, batch)
        # Every logged value leaves the device in ONE transfer; TrainingError on a NaN loss.
        logs = step_logs(out.tensors, dev, t, self.strategy.name)
        optimizers = [self.opt_unet]
        if self.strategy.trains_foundation:
            optimizers.append(self.opt_fm)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        backward_and_step(out.loss, self.scaler, *optimizers)
        if self.strategy.uses_ema:
            ema_update(*self._ema_unet, t, cfg.ema_decay)
        if self.strategy.trains_foundation:
            ema_update(*self._ema_fm, t, cfg.ema_decay)
        logs.update(out.floats)
        logs.setdefault("lambda", float("nan"))
        if advance:
            self.iteration += 1
        return logs

    def _unet_warm_step(self, lab: dict) -> None:
        """One supervised step of the U-Net student alone at iteration 0's learning rate; the
        EMA update at t = 0 copies it into its teacher."""
        from .losses import supervised_loss

        cfg, dev = self.cfg, self.device
        self._set_lr(0)
        x = resize_images(lab["image"].to(dev), self.P, cfg.unet_downsample)
        gt = resize_labels(lab["label"].to(dev), self.P)
        with autocast(dev, self.precision):
            out, _ = self.unet_pair(x, None)
            loss, _ = supervised_loss(out.float(), gt)
        step_logs({"loss": loss}, dev, 0)  # TrainingError on a NaN loss
        self.opt_unet.zero_grad(set_to_none=True)
        backward_and_step(loss, self.scaler, self.opt_unet)
        ema_update(*self._ema_unet, 0, cfg.ema_decay)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self, images: Sequence[np.ndarray], batch: int = 4
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of both students for (C, H, W) images: (N, K, H, W) each."""
        keys = self.predict_keys if self.cached and images is self.predict_images else None
        return self._predict_with_keys(images, keys, batch)

    def predict_slices(self, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Both students' probabilities for the stack slices ``idx`` (embeddings from the bank)."""
        images = [self.predict_images[i] for i in idx]
        return self._predict_with_keys(images, [self.predict_keys[i] for i in idx])

    def predict_unet_slices(self, idx: Sequence[int]) -> np.ndarray:
        """The U-Net's probabilities for the stack slices ``idx`` (no encoder needed)."""
        teachers = self.strategy.shows_teachers(self.cfg)
        return predict_unet_probabilities(
            self.unet_teacher if teachers else self.unet, [self.predict_images[i] for i in idx],
            self.P, self.device, self.precision, unet_downsample=self.cfg.unet_downsample,
        )  # fmt: skip

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
        sel = self.selection
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
            "validation": list(sel.history) if sel else [],
            "best_iteration": sel.best_iterations() if sel and sel.history else {},
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
        check_compatible(SynFoCConfig.from_dict(state["config"]), self.cfg, path)
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
            yield from self._train(should_stop, t_start)
        except TrainingError as exc:
            yield Failed(str(exc), self.iteration, self.last_checkpoint, exc)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never swallowed silently
            msg = failure_message(exc, self.iteration, self.device)
            yield Failed(msg, self.iteration, self.last_checkpoint, exc)
        finally:
            self.close()

    def _train(self, should_stop: Callable[[], bool], t_start: float) -> Iterator[Event]:
        """Encode, warm up, iterate, finish (the body of :meth:`run`)."""
        cfg = self.cfg
        yield from self._prime_encoder()
        lab_iter, unl_iter = training_loaders(
            self.labeled_ds, self.unlabeled_ds, cfg, self.rank, self.device.type == "cuda"
        )
        warm = cfg.warmup_steps + cfg.warmup_unet_steps
        warmed = bool(warm and not self.loaded and self.strategy.supervised_warm_up)
        if warmed:
            yield from self._warm_up(lab_iter, self.schedule is not None, should_stop)
        if self.schedule is not None and not should_stop():
            # show the warmed-up (or loaded) models at once: the slices encoded so far, and
            # with unet_first every slice's U-Net; encode_first: then the whole volume
            if warmed or (self.loaded and cfg.unet_first):
                yield from self.schedule.refresh(0, full=True)
            if cfg.encode_schedule == "encode_first":
                yield from self.schedule.encode_all(should_stop)
        while self.iteration < cfg.iterations:
            if should_stop():
                path = self.save()
                yield CheckpointSaved(path, self.iteration)
                yield Cancelled(self.iteration, path)
                return
            yield from self._iterate(lab_iter, unl_iter)
        if self.selection is not None:
            self.selection.restore(self.unet, self.fm_student)
        path = self.save()
        yield CheckpointSaved(path, self.iteration)
        if self.schedule is not None:  # every slice, a batch of slices per event
            yield from self.schedule.final(self.iteration)
        elif self.predict_images is not None:
            fm_p, un_p = self.predict(self.predict_images)
            yield Predictions(self.iteration, fm_p, un_p)
        yield Done(self.iteration, path, time.perf_counter() - t_start)

    def _prime_encoder(self) -> Iterator[Event]:
        """Cached runs that predict a stack: the view-first schedule's first slices, or (no
        slice in view) every slice, before training."""
        if self.cached and self.predict_images is not None and self.view_slice is not None:
            self.schedule = ViewFirstSchedule(
                self.cfg, self.bank, self.predict_images, self.predict_keys, self.lab_keys,
                self.unl_keys, self.labeled_ds, self.unlabeled_ds, self.S, self.view_slice,
                self.encode_per_step, self.REFRESH_STALE, self.predict_slices,
                self.predict_unet_slices,
            )  # fmt: skip
            yield from self.schedule.prime()
        elif self.cached and self.predict_images is not None:
            yield from encode_whole_stack(
                self.bank, self.predict_images, self.predict_keys, self.S
            )

    def _iterate(self, lab_iter, unl_iter) -> Iterator[Event]:
        """One iteration and what follows it: checkpoint, validation, predictions."""
        cfg, sched = self.cfg, self.schedule
        t0 = time.perf_counter()
        lab = next(lab_iter)
        if sched is not None:
            lab = sched.unmirror_unready(lab, self.lab_keys)
        unl = None
        if unl_iter is not None:
            unl = sched.ready_unlabeled_batch() if sched is not None else next(unl_iter)
        logs = self.train_step(lab, unl)
        seconds = time.perf_counter() - t0
        yield Step.from_logs(
            self.iteration - 1, cfg.iterations, logs, seconds, memory_mb(self.device)
        )
        it = self.iteration
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it < cfg.iterations:
            yield CheckpointSaved(self.save(), it)
        if self.selection is not None and self.selection.due(it):
            self.selection.validate(self.unet, self.fm_student, it, self.device, self.precision)
        if sched is not None:
            yield from sched.refresh(it)
        elif (
            self.predict_images is not None
            and cfg.predict_every
            and it < cfg.iterations
            and (it % cfg.predict_every == 0 or it == cfg.first_predict_at)
        ):
            fm_p, un_p = self.predict(self.predict_images)
            yield Predictions(it, fm_p, un_p)

    def _warm_up(self, lab_iter, progressive: bool, should_stop) -> Iterator[Event]:
        """``cfg.warmup_steps`` supervised steps of both students on labelled batches, then
        ``cfg.warmup_unet_steps`` of the U-Net alone, before iteration 0 (a fresh run only):
        the students learn the labelled slices before the first overlay, and each step's EMA
        update at t = 0 copies them into the teachers that make the pseudo-labels.  A departure
        of the interactive profile; the faithful default is 0 steps."""
        both = int(self.cfg.warmup_steps)
        n = int(self.cfg.warmup_steps + self.cfg.warmup_unet_steps)
        for k in range(n):
            if should_stop():
                return  # the main loop saves and reports the cancel
            lab = next(lab_iter)
            if progressive:
                lab = self.schedule.unmirror_unready(lab, self.lab_keys)
            if k < both:
                self.train_step(lab, None, advance=False)
            else:  # ``warmup_unet_steps``: the U-Net alone (a fifth of a step's cost)
                self._unet_warm_step(lab)
            yield Progress("Warming up on the labelled slices", k + 1, n)
        # the students' BatchNorm statistics into the teachers (the EMA copies parameters only)
        copy_buffers(self.unet_teacher, self.unet)
        copy_buffers(self.fm_teacher, self.fm_student)

    # ------------------------------------------------------------------ memory
    def close(self) -> None:
        """Release cached GPU memory."""
        release_memory(self.device, collect=self.collect_garbage)

    def free(self) -> None:
        """Drop the models and optimisers (after the run) and release memory."""
        for name in ("unet", "unet_teacher", "fm_student", "fm_teacher", "opt_unet", "opt_fm",
                     "bank"):  # fmt: skip
            setattr(self, name, None)
        release_memory(self.device, collect=self.collect_garbage)
