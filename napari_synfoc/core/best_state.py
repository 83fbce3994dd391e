"""Validation-based model selection (``model_selection="val"``): score both students on held-out
labelled images every few iterations and keep each one's best state."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..config import SynFoCConfig

STUDENTS = ("unet", "fm")


def cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A detached CPU copy of a state dict (non-tensor values deep-copied)."""
    return {
        k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        for k, v in state.items()
    }


def hold_out_validation(labeled: Sequence[Any], cfg: SynFoCConfig) -> tuple[list, list]:
    """(training samples, held-out samples): with ``model_selection="val"`` the last
    ``val_fraction`` of the labelled samples (at least one, leaving at least one), else none.
    ``TrainingError`` when fewer than 2 labelled samples are given for validation."""
    from .steps import TrainingError

    labeled = list(labeled)
    if cfg.model_selection != "val":
        return labeled, []
    if len(labeled) < 2:
        raise TrainingError("validation-based model selection needs at least 2 labelled images")
    n_val = min(len(labeled) - 1, max(1, round(cfg.val_fraction * len(labeled))))
    return labeled[:-n_val], labeled[-n_val:]


class BestStateKeeper:
    """Each student's best validation state: the spec's fix for test-set selection.

    ``best[key]`` is ``(mean Dice, state or None, iteration)`` for ``key`` in :data:`STUDENTS`
    (``(-1.0, None, -1)`` before the first validation); ``history`` lists every validation as
    ``{"iteration", "unet", "fm"}``.  The held-out images are loaded at the first validation.
    """

    def __init__(self, samples: Sequence[Any], cfg: SynFoCConfig, size: int):
        self.samples = list(samples)
        self.cfg = cfg
        self.size = size
        self.every = cfg.val_every or max(1, cfg.iterations // 10)
        self.items: list[tuple] | None = None
        self.best: dict[str, tuple[float, dict | None, int]] = {
            k: (-1.0, None, -1) for k in STUDENTS
        }
        self.history: list[dict[str, float]] = []

    def due(self, iteration: int) -> bool:
        """True at every ``every``-th iteration and at the run's last one."""
        return iteration % self.every == 0 or iteration == self.cfg.iterations

    def validate(self, unet, fm, iteration: int, device, precision: str) -> dict[str, float]:
        """Mean foreground Dice of both students on the held-out images; keeps each student's
        best state (copied to the CPU)."""
        from .data import load_test_set
        from .inference import predict_probabilities
        from .metrics import image_metrics

        cfg = self.cfg
        if self.items is None:
            self.items = load_test_set(self.samples, self.size, cfg)
        imgs = [it[1] for it in self.items]
        fm_p, un_p = predict_probabilities(
            unet, fm, imgs, cfg.unet_size, device, precision, unet_downsample=cfg.unet_downsample
        )
        scores = {}
        for key, prob in (("unet", un_p), ("fm", fm_p)):
            dices = [
                image_metrics(
                    prob[i].argmax(0), it[2], cfg.num_classes, cfg.phi_classes, empty_gt="rule"
                )["mean"]["dice"]
                for i, it in enumerate(self.items)
            ]
            scores[key] = float(np.mean(dices))
            if scores[key] > self.best[key][0]:
                state = unet.state_dict() if key == "unet" else fm.state_for_checkpoint()
                self.best[key] = (scores[key], cpu_copy(state), iteration)
        self.history.append({"iteration": iteration, **scores})
        return scores

    def restore(self, unet, fm) -> None:
        """Load each student's best validation state (the model the run reports)."""
        for key in STUDENTS:
            state = self.best[key][1]
            if state is None:
                continue
            if key == "unet":
                unet.load_state_dict(state)
            else:
                fm.load_checkpoint_state(state)

    def best_iterations(self) -> dict[str, int]:
        """Each student's best iteration (-1 when never validated)."""
        return {k: v[2] for k, v in self.best.items()}
