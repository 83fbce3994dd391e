"""Training and prediction on an image stack held in memory (what the napari widget passes).

Qt-free: the widget wraps :func:`train_on_stack` in napari's ``thread_worker``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import SynFoCConfig
from .events import Event, Failed, Predictions
from .task import StackTask, channel_problem, validate_task


def _samples(task: StackTask):
    from .data import samples_from_stack

    return samples_from_stack(
        task.image,
        task.labels,
        task.labeled_slices,
        task.extra_unlabeled,
        rgb=task.rgb,
        window=task.intensity_window,
    )


def task_config(task: StackTask, cfg: SynFoCConfig) -> SynFoCConfig:
    """``cfg`` adapted to the task: channels, classes, and the U-Net size of the slices."""
    return cfg.replace(
        in_channels=3 if task.rgb else 1,
        num_classes=max(cfg.num_classes, task.resolved_num_classes()),
    )


def train_on_stack(
    task: StackTask,
    cfg: SynFoCConfig,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    init_checkpoint: str | Path | None = None,
    out_dir: str | Path | None = None,
    predict_every: int | None = None,
    embed_cache_dir: str | Path | bool | None = True,
    background: bool = False,
    view_slice: int | None = None,
    encode_per_step: int = 4,
) -> Iterator[Event]:
    """Train SynFoC on ``task`` and yield events, ending with Done, Cancelled or Failed.

    Predictions cover every slice of the stack, at its resolution, every ``predict_every``
    iterations (default: the config's, or about 5 times per run) and at the end.
    ``background=True`` (a GUI's worker thread): run at lower CPU priority and skip full garbage
    collections, so the event loop stays responsive.

    Frozen-encoder (cached) configs: ``embed_cache_dir`` True (default) keeps the embeddings in
    :func:`default_embed_cache_dir` so a retrain, a warm start or a second run on the same image
    encodes nothing again; a path uses that folder; None or False keeps them in memory only.
    ``view_slice`` (the slice the user looks at) switches on the view-first mode: only the
    labelled slices, the slice in view and a few near it are encoded before training; the rest
    is encoded ``encode_per_step`` slices per iteration, nearest first, and ``Predictions``
    events then cover a subset (``Predictions.slices``) until every slice is encoded.
    ``Encoding(done, total)`` events report the frozen encoder's progress.
    """
    if background and threading.current_thread() is not threading.main_thread():
        from .device import lower_thread_priority

        lower_thread_priority()
    problem = validate_task(task)
    if problem is not None:
        yield Failed(problem, 0, None)
        return
    try:
        cfg = task_config(task, cfg)
        if predict_every is None:
            predict_every = cfg.predict_every or max(1, cfg.iterations // 5)
        cfg = cfg.replace(predict_every=predict_every).validate()
        labeled, unlabeled, _ = _samples(task)  # the one normalisation of the volume
        slices, keys = _stack_slices(labeled, unlabeled, task.stack().shape[0])
        from .trainer import SynFoCTrainer

        trainer = SynFoCTrainer(
            cfg,
            labeled,
            unlabeled,
            out_dir=out_dir,
            init_checkpoint=init_checkpoint,
            predict_images=slices,
            predict_keys=keys,
            embed_cache_dir=_cache_dir(embed_cache_dir),
            view_slice=view_slice,
            encode_per_step=encode_per_step,
        )
        trainer.collect_garbage = not background
    except Exception as exc:  # noqa: BLE001 - shown to the user as a Failed event
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        yield Failed(msg, 0, None, exc)
        return
    try:
        yield from trainer.run(should_stop)
    finally:
        trainer.free()


def default_embed_cache_dir() -> Path:
    """Where frozen-encoder embeddings persist across runs: ``$NAPARI_SYNFOC_CACHE_DIR`` or the
    user cache folder (``~/.cache/napari-synfoc`` on Linux), sub-folder ``embeddings``."""
    import os

    root = os.environ.get("NAPARI_SYNFOC_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("napari-synfoc")
    return Path(root) / "embeddings"


def _cache_dir(embed_cache_dir: str | Path | bool | None) -> Path | None:
    if embed_cache_dir is True:
        return default_embed_cache_dir()
    if embed_cache_dir is None or embed_cache_dir is False:
        return None
    return Path(embed_cache_dir)


def _stack_slices(labeled, unlabeled, n_slices: int) -> tuple[list[np.ndarray], list[str]]:
    """The stack's normalised slices in slice order (the samples' own arrays, not a second
    normalisation) and their embedding-bank keys (shared with training)."""
    by_index = {}
    for s in list(labeled) + list(unlabeled):
        if s.domain == "stack" and s.name.startswith("slice_"):
            by_index[int(s.name.split("_")[1])] = s
    missing = sorted(set(range(n_slices)) - set(by_index))
    if missing:
        raise ValueError(f"internal: stack slices {missing[:5]} have no sample")
    ordered = [by_index[i] for i in range(n_slices)]
    return [s.image for s in ordered], [f"{s.domain}/{s.name}" for s in ordered]


def load_trained(checkpoint: str | Path, device: str = "auto"):
    """Both students (teachers with ``display_teachers``) of a saved run, ready for inference:
    (cfg, unet, fm, device, precision)."""
    from . import checkpoint as ckpt
    from .device import pick_device, resolve_precision
    from .foundation import build_foundation
    from .unet import UNet

    state = ckpt.load_checkpoint(checkpoint)
    cfg = SynFoCConfig.from_dict(state["config"])
    dev = pick_device(device if device != "auto" else cfg.device)
    precision = resolve_precision(cfg.precision, dev)
    unet = UNet(cfg.in_channels, cfg.num_classes, tuple(cfg.unet_features))
    from .strategies import make_strategy

    which = "teacher" if make_strategy(cfg.strategy).shows_teachers(cfg) else "student"
    unet.load_state_dict(state[f"unet_{which}"])
    fm = build_foundation(cfg)
    fm.load_checkpoint_state(state[f"fm_{which}"])
    return cfg, unet.to(dev).eval(), fm.to(dev).eval(), dev, precision


PREDICT_CHUNK = 32  # slices per step of a saved model's prediction: O(chunk) float arrays


def iter_predict_stack(
    checkpoint: str | Path,
    image: np.ndarray,
    rgb: bool = False,
    device: str = "auto",
    embed_cache_dir: str | Path | bool | None = True,
    window: tuple[float, float] | None = None,
    chunk: int = PREDICT_CHUNK,
) -> Iterator[Predictions]:
    """Predict every slice of ``image`` with both students of a saved model, ``chunk`` slices
    per partial :class:`Predictions` event (``slices``, ``n_slices``), in slice order.

    ``window``: the intensity window the model was trained with (None: percentile mapping over
    the whole stack, as in training).  A frozen-encoder model reads the slices' embeddings from
    ``embed_cache_dir`` (as in :func:`train_on_stack`; the slices a run encoded are not
    encoded again).  Memory stays O(chunk): no whole-stack float array is made.
    """
    from .data import prediction_slice_chunks
    from .inference import predict_probabilities

    cfg, unet, fm, dev, precision = load_trained(checkpoint, device)
    problem = channel_problem(np.shape(image), rgb, cfg.in_channels)
    if problem is not None:
        raise ValueError(problem)
    bank = None
    folder = _cache_dir(embed_cache_dir)
    if cfg.freeze_encoder and cfg.cache_embeddings and folder is not None:
        from .embeddings import EmbeddingBank, EmbeddingDiskCache, frozen_encoder_id

        disk = EmbeddingDiskCache(folder, frozen_encoder_id(fm, cfg))
        bank = EmbeddingBank(fm, dev, precision, disk)
    shape = np.shape(image)
    n = 1 if len(shape) == (3 if rgb else 2) else int(shape[0])
    for idx, slices in prediction_slice_chunks(image, rgb, window, chunk):
        keys = [f"p/{i}" for i in idx] if bank is not None else None
        fm_p, un_p = predict_probabilities(
            unet, fm, slices, cfg.unet_size, dev, precision, bank=bank, bank_keys=keys,
            unet_downsample=cfg.unet_downsample,
        )  # fmt: skip
        prompted = _prompted_foundation_probs(cfg, fm, dev, precision, bank, slices, keys, un_p)
        yield Predictions(-1, fm_p if prompted is None else prompted, un_p, tuple(idx), n)


def predict_stack(checkpoint: str | Path, image: np.ndarray, **options: Any) -> Predictions:
    """Predict every slice of ``image`` with both students of a saved model: one whole-stack
    :class:`Predictions` (float32 (Z, K, Y, X) each).  ``options``: those of
    :func:`iter_predict_stack` (``rgb``, ``device``, ``embed_cache_dir``, ``window``), which the
    dock uses to keep memory O(chunk)."""
    parts = list(iter_predict_stack(checkpoint, image, **options))
    fm_p = np.concatenate([p.fm_prob for p in parts])
    un_p = np.concatenate([p.unet_prob for p in parts])
    return Predictions(-1, fm_p, un_p)


def predict_stack_maps(checkpoint: str | Path, image: np.ndarray, **options: Any):
    """The review maps (:class:`~napari_synfoc.core.review.ReviewMaps`) of a saved model on
    ``image``, built chunk by chunk from :func:`iter_predict_stack` (``options``: its
    keywords): what the dock's Predict shows, without the whole-stack probabilities
    (2 x Z x K x Y x X float32)."""
    from .review import blank_review_maps, review_maps_into

    maps = None
    for part in iter_predict_stack(checkpoint, image, **options):
        if maps is None:
            maps = blank_review_maps(part.n_slices, part.fm_prob.shape[1], part.fm_prob.shape[2:])
        review_maps_into(maps, part.covered(), part.fm_prob, part.unet_prob)
    return maps


def _prompted_foundation_probs(cfg, fm, dev, precision, bank, slices, keys, un_p):
    """A prompted strategy's foundation side (the frozen model prompted by the U-Net's
    prediction), as its training run showed it; None for SynFoC's trained student."""
    from types import SimpleNamespace

    from .strategies import strategy_for

    strategy = strategy_for(cfg)
    if not strategy.uses_prompted_foundation:
        return None
    from .strategies.prompted import PromptedFoundation

    strategy.prompted = PromptedFoundation(cfg, dev)
    view = SimpleNamespace(
        cfg=cfg, device=dev, S=fm.input_size, bank=bank, fm_student=fm, precision=precision
    )
    return strategy.foundation_probabilities(view, slices, keys, un_p)


def read_session(checkpoint: str | Path) -> dict[str, Any]:
    """What a session file holds: config, labelled slices, iteration, image shape."""
    from . import checkpoint as ckpt

    state = ckpt.load_checkpoint(checkpoint)
    return {
        "config": state["config"],
        "labeled_slices": list(state.get("labeled_slices", [])),
        "iteration": int(state.get("iteration", 0)),
        "image_shape": list(state.get("image_shape", [])),
        "labeled": list(state.get("labeled", [])),
        "intensity": state.get("intensity"),
    }


def save_session(
    src_checkpoint: str | Path,
    dst_path: str | Path,
    labeled_slices,
    image_shape,
    intensity: dict[str, Any] | None = None,
) -> Path:
    """Copy a run's checkpoint to ``dst_path`` (atomically) with the labelled-slice list and
    the intensity choice (``{"mode": str, "window": [lo, hi] | None}``; plain values only)."""
    from . import checkpoint as ckpt

    state = ckpt.load_checkpoint(src_checkpoint)
    if intensity is not None:
        state["intensity"] = dict(intensity)
    state["labeled_slices"] = [int(z) for z in labeled_slices]
    state["image_shape"] = [int(s) for s in image_shape]
    return ckpt.save_checkpoint(Path(dst_path), state)


__all__ = [
    "default_embed_cache_dir",
    "StackTask",
    "load_trained",
    "iter_predict_stack",
    "predict_stack",
    "predict_stack_maps",
    "read_session",
    "save_session",
    "train_on_stack",
    "validate_task",
]
