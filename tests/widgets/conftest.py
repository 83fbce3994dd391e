"""Fixtures shared by the widget tests: partly labelled layers, docks set up for a test
(the synthetic stacks and prompt boxes are in ``tests/conftest.py``, shared with tests/app).

The helpers are handed out as fixtures (factories), since test modules cannot import a conftest.
"""

from __future__ import annotations

import numpy as np
import pytest


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
