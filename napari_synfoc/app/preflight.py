"""What is checked before a training process starts, beyond the task's own validation
(:func:`~napari_synfoc.core.task.validate_task`): the classes painted, and the foundation
model's weights file."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import VITB_FOUNDATIONS
from ..core.task import StackTask


def painted_classes(task: StackTask) -> list[int]:
    """The classes (> 0) painted on the task's labelled slices."""
    lab = task.stack_labels()
    if lab is None or not task.labeled_slices:
        return []
    on = lab[sorted({int(z) for z in task.labeled_slices})]
    return [int(v) for v in np.unique(on) if v > 0]


def classes_notice(task: StackTask, labels_name: str | None = None) -> str | None:
    """A warning when a class below the highest painted one is painted nowhere (e.g. only
    class 2 of 2): the model learns every class up to the highest, so an unpainted one is
    learnt from nothing and may appear in the predictions.  None when every class is painted."""
    painted = painted_classes(task)
    if not painted:
        return None
    top = max(painted) if task.num_classes is None else int(task.num_classes) - 1
    missing = [k for k in range(1, top + 1) if k not in painted]
    if not missing:
        return None
    lab = f"'{labels_name}'" if labels_name else "the labels"
    have = ", ".join(str(k) for k in painted)
    gap = ", ".join(str(k) for k in missing)
    one = len(missing) == 1
    return (
        f"Painted in {lab}: class {have} only; class {gap} {'is' if one else 'are'} not painted "
        f"on any labelled slice. The model learns classes 0 to {top}, so class {gap} is learnt "
        f"from nothing and may appear in the predictions. If there is one structure, paint it "
        f"as class 1 (pick label 1 in the Labels layer); otherwise paint class {gap} too, then "
        "Train again."
    )


def needs_weights_check(params: dict[str, Any]) -> bool:
    """True when the run's foundation model needs a weights file (a ViT-B, not the tiny one)."""
    return params.get("profile") != "tiny" and params.get("foundation") in VITB_FOUNDATIONS


def weights_problem(params: dict[str, Any]) -> str | None:
    """The foundation model's weights file checked (keys and shapes only, no model built)
    before the training process starts; None when it is fine or not needed.

    Imports torch: call it from the worker thread, not the GUI thread."""
    if not needs_weights_check(params):
        return None
    foundation = params.get("foundation")
    from ..core.checkpoint import CheckpointError, check_foundation_checkpoint

    try:
        check_foundation_checkpoint(params.get("checkpoint"), foundation)
    except CheckpointError as exc:
        return f"Foundation model weights (the Checkpoint field): {exc}"
    return None
