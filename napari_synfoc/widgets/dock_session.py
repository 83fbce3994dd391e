"""The dock's session, prediction and export actions (mixed into :class:`.dock.SynFoCWidget`).

They read the dock's layer choices and forward to the controller's
:class:`~.controller_io.SessionActions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import slices


class DockSessionActions:
    """Save/load session, Predict, Export labels/predictions of :class:`.dock.SynFoCWidget`."""

    def session_panel_actions(self) -> dict[str, Callable[..., Any]]:
        """The Session panel's button actions: an error is shown in the dock, never raised."""

        def guard(name: str) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                try:
                    return getattr(self, name)(*args)
                except Exception as exc:  # noqa: BLE001 - a button must never crash napari
                    self.controller.say(f"{exc}", error=True)
                    return None

            return run

        return {
            "save_session": guard("save_session"),
            "load_session": guard("load_session"),
            "predict": lambda: self.predict(),
            "export_labels": guard("export_labels"),
            "export_predictions": guard("export_predictions"),
        }

    def save_session(self, path: str | os.PathLike) -> Path:
        """Save both models, the config and the labelled-slice list to ``path`` (atomic)."""
        return self.controller.save_session(path)

    def load_session(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load a saved session: Retrain continues from it and Predict uses it."""
        lab = self.labels_combo.value
        info, empty = self.controller.load_session(path, None if lab is None else lab.data)
        if empty:
            slices.set_marked(lab, [*slices.marked(lab), *empty])
        self.data_panel.set_intensity((info.get("intensity") or {}).get("mode"))
        self.model_panel.strategy_combo.setCurrentText(info["config"].get("strategy", "synfoc"))
        self.refresh_labeled()
        return info

    def predict(self, image_layer: Any = None) -> bool:
        """Predict ``image_layer`` (default: the selected image) with the latest/loaded model."""
        img = image_layer or self.image_combo.value
        if img is None and not self.controller.busy:
            self.controller.say("Choose an Image layer to predict.", error=True)
            return False
        if not self.controller.busy:
            self.job_layers.remember(img, None)
        return self.controller.predict(
            None if img is None else np.asarray(img.data), bool(getattr(img, "rgb", False)),
            self.device_combo.currentText(), target=img, name=getattr(img, "name", "image"),
            window=self.data_panel.intensity_window(img),
        )  # fmt: skip

    def export_labels(self, path: str | os.PathLike, labels_layer: Any = None) -> str:
        """Write the labels with the source image's geometry (atomic); returns the path."""
        lab = labels_layer or self.labels_combo.value
        if lab is None:
            raise ValueError("no Labels layer to export")
        from ..io.geometry import geometry_from_layer

        img = self.image_combo.value
        src = img if img is not None and img.ndim == lab.ndim else lab
        return self.controller.export_labels(
            path, lab.data, geometry_from_layer(src), src.metadata
        )

    def export_predictions(self, folder: str | os.PathLike, suffix: str = ".nii.gz") -> list[str]:
        """Write the six review maps into ``folder`` with the image's geometry; the paths."""
        target = self.controller.maps_target
        if self.controller.maps is None or target is None:
            raise ValueError("no predictions to export: train or predict first")
        from ..io.geometry import geometry_from_layer

        return self.controller.export_predictions(
            folder, geometry_from_layer(target), two_d=target.ndim == 2, suffix=suffix,
            metadata=target.metadata,
        )  # fmt: skip
