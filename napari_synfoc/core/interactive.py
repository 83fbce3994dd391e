"""Training and prediction on an image stack held in memory (what the napari widget passes).

Qt-free: the widget wraps :func:`train_on_stack` in napari's ``thread_worker``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import SynFoCConfig
from .events import Event, Failed, Predictions


@dataclass
class StackTask:
    """A stack with a few labelled slices, plus optional unlabelled stacks from other scanners.

    ``image``: (Z, Y, X), (Z, Y, X, 3) when ``rgb``, (Y, X) or (Y, X, 3).  ``labels``: integers
    with the image's spatial shape; only ``labeled_slices`` count (an all-background slice counts
    when listed).
    """

    image: np.ndarray
    labels: np.ndarray | None
    labeled_slices: list[int]
    rgb: bool = False
    extra_unlabeled: list[np.ndarray] = field(default_factory=list)
    num_classes: int | None = None

    def stack(self) -> np.ndarray:
        """The image as a stack: (Z, Y, X) or (Z, Y, X, 3)."""
        img = np.asarray(self.image)
        if img.ndim == (3 if self.rgb else 2):
            img = img[None]
        return img

    def stack_labels(self) -> np.ndarray | None:
        if self.labels is None:
            return None
        lab = np.asarray(self.labels)
        return lab[None] if lab.ndim == 2 else lab

    def resolved_num_classes(self) -> int:
        if self.num_classes is not None:
            return int(self.num_classes)
        lab = self.stack_labels()
        if lab is None or not self.labeled_slices:
            return 2
        top = int(lab[list(self.labeled_slices)].max())
        return max(2, top + 1)


def validate_task(task: StackTask) -> str | None:
    """A readable problem with the task, or None when it can be trained on."""
    img = task.stack()
    if img.ndim != (4 if task.rgb else 3):
        return (
            f"the image has shape {tuple(np.shape(task.image))}; expected a 2D image or a "
            "(Z, Y, X) stack" + (" with a trailing RGB axis" if task.rgb else "")
        )
    lab = task.stack_labels()
    if lab is None:
        return "no Labels layer: paint the structure on a few slices first"
    spatial = img.shape[:3]
    if lab.shape != spatial:
        return (
            f"the labels have shape {tuple(np.shape(task.labels))} but the image has spatial shape "
            f"{tuple(spatial) if img.shape[0] > 1 else tuple(spatial[1:])}: pick the Labels layer "
            "that belongs to this image"
        )
    if not task.labeled_slices:
        return (
            "no labelled slice: paint the structure on at least one slice (or mark an "
            "all-background slice as labelled)"
        )
    bad = [z for z in task.labeled_slices if not 0 <= z < spatial[0]]
    if bad:
        return f"labelled slice indices {bad} are outside the stack (0..{spatial[0] - 1})"
    if not np.issubdtype(lab.dtype, np.integer):
        return f"the labels must be integers, not {lab.dtype}"
    if lab.min() < 0:
        return "the labels contain negative values"
    if np.isnan(np.asarray(img, dtype=np.float32)).any():
        return "the image contains NaN values"
    unl = spatial[0] - len(set(task.labeled_slices)) + len(task.extra_unlabeled)
    if unl == 0:
        return (
            "every slice is labelled and no extra unlabelled data was given: SynFoC learns from "
            "unlabelled slices too; add images from other scanners or leave slices unlabelled"
        )
    return None


def _samples(task: StackTask):
    from .data import samples_from_stack

    return samples_from_stack(
        task.image, task.labels, task.labeled_slices, task.extra_unlabeled, rgb=task.rgb
    )


def _prediction_slices(image: np.ndarray, rgb: bool) -> list[np.ndarray]:
    from .data import stack_slices_for_prediction

    return stack_slices_for_prediction(image, rgb)


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
    embed_cache_dir: str | Path | None = None,
    background: bool = False,
) -> Iterator[Event]:
    """Train SynFoC on ``task`` and yield events, ending with Done, Cancelled or Failed.

    Predictions cover every slice of the stack, at its resolution, every ``predict_every``
    iterations (default: the config's, or about 5 times per run) and at the end.
    ``background=True`` (a GUI's worker thread): run at lower CPU priority and skip full garbage
    collections, so the event loop stays responsive.
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
        labeled, unlabeled, _ = _samples(task)
        slices = _prediction_slices(task.image, task.rgb)
        keys = _stack_keys(labeled, unlabeled, len(slices))
        from .trainer import SynFoCTrainer

        trainer = SynFoCTrainer(
            cfg,
            labeled,
            unlabeled,
            out_dir=out_dir,
            init_checkpoint=init_checkpoint,
            predict_images=slices,
            predict_keys=keys,
            embed_cache_dir=embed_cache_dir,
        )
        trainer.collect_garbage = not background
    except Exception as exc:  # noqa: BLE001 - shown to the user as a Failed event
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        yield Failed(msg, 0, None, exc)
        return
    try:
        for event in trainer.run(should_stop):
            yield event
    finally:
        trainer.free()


def _stack_keys(labeled, unlabeled, n_slices: int) -> list[str]:
    """Embedding-bank keys of the stack's slices, in slice order (shared with training)."""
    by_index: dict[int, str] = {}
    for s in list(labeled) + list(unlabeled):
        if s.domain == "stack" and s.name.startswith("slice_"):
            by_index[int(s.name.split("_")[1])] = f"{s.domain}/{s.name}"
    return [by_index.get(i, f"predict/{i}") for i in range(n_slices)]


def load_trained(checkpoint: str | Path, device: str = "auto"):
    """Both students of a saved run, ready for inference: (cfg, unet, fm, device, precision)."""
    from . import checkpoint as ckpt
    from .device import pick_device, resolve_precision
    from .foundation import build_foundation
    from .unet import UNet

    state = ckpt.load_checkpoint(checkpoint)
    cfg = SynFoCConfig.from_dict(state["config"])
    dev = pick_device(device if device != "auto" else cfg.device)
    precision = resolve_precision(cfg.precision, dev)
    unet = UNet(cfg.in_channels, cfg.num_classes, tuple(cfg.unet_features))
    unet.load_state_dict(state["unet_student"])
    fm = build_foundation(cfg)
    fm.load_checkpoint_state(state["fm_student"])
    return cfg, unet.to(dev).eval(), fm.to(dev).eval(), dev, precision


def predict_stack(
    checkpoint: str | Path, image: np.ndarray, rgb: bool = False, device: str = "auto"
) -> Predictions:
    """Predict every slice of ``image`` with both students of a saved model."""
    from .inference import predict_probabilities

    cfg, unet, fm, dev, precision = load_trained(checkpoint, device)
    want_c = 3 if rgb else 1
    if cfg.in_channels != want_c:
        raise ValueError(
            f"the model was trained on {cfg.in_channels}-channel images but this image has "
            f"{want_c} channel(s)"
        )
    slices = _prediction_slices(image, rgb)
    fm_p, un_p = predict_probabilities(
        unet, fm, slices, cfg.unet_size, dev, precision, unet_downsample=cfg.unet_downsample
    )
    return Predictions(-1, fm_p, un_p)


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
    }


def save_session(
    src_checkpoint: str | Path, dst_path: str | Path, labeled_slices, image_shape
) -> Path:
    """Copy a run's checkpoint to ``dst_path`` (atomically) with the labelled-slice list."""
    from . import checkpoint as ckpt

    state = ckpt.load_checkpoint(src_checkpoint)
    state["labeled_slices"] = [int(z) for z in labeled_slices]
    state["image_shape"] = [int(s) for s in image_shape]
    return ckpt.save_checkpoint(Path(dst_path), state)


__all__ = [
    "StackTask",
    "load_trained",
    "predict_stack",
    "read_session",
    "save_session",
    "train_on_stack",
    "validate_task",
]
