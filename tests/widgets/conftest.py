"""Fixtures shared by the widget tests: synthetic stacks, partly labelled layers, prompt boxes.

The helpers are handed out as fixtures (factories), since test modules cannot import a conftest.
"""

from __future__ import annotations

import numpy as np
import pytest

SIZE = 64  # slices are SIZE x SIZE


def _disc_stack(seed: int = 0, z: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = rng.normal(0.2, 0.05, (z, SIZE, SIZE)).astype(np.float32)
    gt = np.zeros((z, SIZE, SIZE), np.int32)
    for i in range(z):
        disc = (yy - 32) ** 2 + (xx - 28 - i) ** 2 < (10 + i) ** 2
        img[i][disc] += 0.6
        gt[i][disc] = 1
    return img, gt


@pytest.fixture
def disc_stack():
    """``make(seed=0, z=6)``: a float32 (z, 64, 64) stack with a bright disc per slice (moving
    and growing with the slice) and its int32 ground truth."""
    return _disc_stack


def _add_partly_labelled(viewer, img, gt, names=("stack", "annotations"), slices=(1, 4), **geo):
    image = viewer.add_image(img, name=names[0], **geo)
    labels = np.zeros_like(gt)
    labels[list(slices)] = gt[list(slices)]
    return image, viewer.add_labels(labels, name=names[1], **geo)


@pytest.fixture
def add_partly_labelled():
    """``add(viewer, img, gt, names=("stack", "annotations"), slices=(1, 4), **geometry)``: add
    the image and a labels layer holding ``gt`` on ``slices`` only; returns both layers."""
    return _add_partly_labelled


def _prompt_image(z: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = rng.normal(0.2, 0.05, (z, SIZE, SIZE)).astype(np.float32)
    for i in range(z):
        img[i][(yy - 32) ** 2 + (xx - 30 - i) ** 2 < (9 + i) ** 2] += 0.6
    return img


@pytest.fixture
def prompt_image():
    """A float32 (6, 64, 64) stack with a bright disc per slice, for the prompt tests."""
    return _prompt_image()


def _rect(z, r0, c0, r1, c1) -> np.ndarray:
    return np.array([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]], float)


@pytest.fixture
def rect():
    """``rect(z, r0, c0, r1, c1)``: napari rectangle vertices (z, row, col) on slice z."""
    return _rect


def _use_tiny_cpu(widget, predict_every: int | None = None) -> None:
    widget.profile_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    if predict_every is not None:
        widget.predict_every_spin.setValue(predict_every)


@pytest.fixture
def use_tiny_cpu():
    """``use(widget, predict_every=None)``: the dock trains the "tiny" profile on the CPU."""
    return _use_tiny_cpu


def _close_dock(widget) -> None:
    if widget.is_training:
        widget.stop()
        widget.wait(60)
    widget.cleanup()


@pytest.fixture
def close_dock():
    """``close(widget)``: stop a running job (waiting up to 60 s), then clean the dock up."""
    return _close_dock


def _prompt_dock(viewer, segmenter_factory):
    """A SynFoC dock on ``viewer`` set up for prompt tests: thread backend, tiny profile on the
    CPU, ``segmenter_factory`` as the prompt model, auto-segment off."""
    from napari_synfoc.widgets.dock import SynFoCWidget

    widget = SynFoCWidget(viewer, backend="thread")
    viewer.window.add_dock_widget(widget)
    widget.profile_combo.setCurrentText("tiny")
    widget.device_combo.setCurrentText("cpu")
    widget.prompts.controller.segmenter_factory = segmenter_factory
    widget.prompt_panel.auto_check.setChecked(False)
    return widget


@pytest.fixture
def prompt_dock():
    """``make(viewer, segmenter_factory)``: a dock ready for prompt tests (see _prompt_dock)."""
    return _prompt_dock
