"""The dock's session, prediction and export actions (``dock.sessions``).

They read the dock's layer choices and forward to the controller's
:class:`~napari_synfoc.app.sessions.Sessions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..app import slices
from ..app.task_builder import spatial_shape


class DockSessions:
    """Save/load session, Predict, Export labels/predictions with the dock's layers."""

    def __init__(self, dock: Any):
        self.dock = dock

    @property
    def _app(self):
        return self.dock.controller.sessions

    def panel_actions(self) -> dict[str, Callable[..., Any]]:
        """The Session panel's button actions: an error is shown in the dock, never raised."""

        def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                try:
                    return fn(*args)
                except Exception as exc:  # noqa: BLE001 - a button must never crash napari
                    self.dock.controller.say(f"{exc}", error=True)
                    return None

            return run

        return {
            "save_session": guard(self.save),
            "load_session": guard(self.load),
            "predict": lambda: self.predict(),
            "export_labels": guard(self.export_labels),
            "export_predictions": guard(self.export_predictions),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Save both models, the config and the labelled-slice list to ``path`` (atomic)."""
        return self._app.save(path)

    def load(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load a saved session: Retrain continues from it and Predict uses it."""
        dock = self.dock
        lab, img = dock.labels_combo.value, dock.image_combo.value
        shape = None if img is None else spatial_shape(np.shape(img.data), bool(img.rgb))
        info, empty = self._app.load(
            path, None if lab is None else lab.data, image_shape=shape,
            image_name=getattr(img, "name", None),
        )  # fmt: skip
        if empty:
            slices.set_marked(lab, [*slices.marked(lab), *empty])
        dock.data_panel.set_intensity((info.get("intensity") or {}).get("mode"))
        dock.model_panel.strategy_combo.setCurrentText(info["config"].get("strategy", "synfoc"))
        dock.refresh_labeled()
        return info

    def predict(self, image_layer: Any = None) -> bool:
        """Predict ``image_layer`` (default: the selected image) with the latest/loaded model."""
        dock, ctl = self.dock, self.dock.controller
        img = image_layer or dock.image_combo.value
        if img is None and not ctl.busy:
            ctl.say("Choose an Image layer to predict.", error=True)
            return False
        if not ctl.busy:
            dock.job_layers.remember(img, None)
        return self._app.predict(
            None if img is None else np.asarray(img.data), bool(getattr(img, "rgb", False)),
            dock.device_combo.currentText(), target=img, name=getattr(img, "name", "image"),
            window=dock.data_panel.intensity_window(img),
        )  # fmt: skip

    def export_labels(self, path: str | os.PathLike, labels_layer: Any = None) -> str:
        """Write the labels with the source image's geometry (atomic); returns the path."""
        lab = labels_layer or self.dock.labels_combo.value
        if lab is None:
            raise ValueError("no Labels layer to export")
        from ..io.geometry import geometry_from_layer

        img = self.dock.image_combo.value
        src = img if img is not None and img.ndim == lab.ndim else lab
        return self._app.export_labels(path, lab.data, geometry_from_layer(src), src.metadata)

    def export_predictions(self, folder: str | os.PathLike, suffix: str = ".nii.gz") -> list[str]:
        """Write the six review maps into ``folder`` with the image's geometry; the paths."""
        review = self.dock.controller.review
        target = review.target
        if review.maps is None or target is None:
            raise ValueError("no predictions to export: train or predict first")
        from ..io.geometry import geometry_from_layer

        return self._app.export_predictions(
            folder, geometry_from_layer(target), two_d=target.ndim == 2, suffix=suffix,
            metadata=target.metadata,
        )  # fmt: skip
