"""The session panel: save / load a session, predict an image, export labels and predictions.

Buttons ask for a path with a file dialog and hand it to the dock's callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QFileDialog, QGridLayout, QPushButton, QWidget

from .common import make_button

ACTIONS = (
    ("save_session", "Save session…"),
    ("load_session", "Load session…"),
    ("predict", "Predict image"),
    ("export_labels", "Export labels…"),
    ("export_predictions", "Export predictions…"),
)


class SessionPanel(QWidget):
    """Five action buttons; ``handlers[key](path)`` (``handlers["predict"]()``) does the work."""

    def __init__(self, handlers: dict[str, Callable[..., Any]], parent: QWidget | None = None):
        super().__init__(parent)
        self.handlers = handlers
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.buttons: dict[str, QPushButton] = {}
        for i, (key, text) in enumerate(ACTIONS):
            btn = make_button(key, text)
            btn.clicked.connect(getattr(self, f"_on_{key}"))
            self.buttons[key] = btn
            grid.addWidget(btn, i // 2, i % 2)

    def set_state(self, busy: bool, has_checkpoint: bool, has_maps: bool) -> None:
        self.buttons["save_session"].setEnabled(not busy and has_checkpoint)
        self.buttons["predict"].setEnabled(not busy and has_checkpoint)
        self.buttons["export_predictions"].setEnabled(has_maps)

    def _on_save_session(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save SynFoC session", "", "Session (*.pt)")
        if path:
            self.handlers["save_session"](path if path.endswith(".pt") else path + ".pt")

    def _on_load_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load SynFoC session", "", "Session (*.pt)")
        if path:
            self.handlers["load_session"](path)

    def _on_predict(self) -> None:
        self.handlers["predict"]()

    def _on_export_labels(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export labels", "", "Volumes (*.nii.gz *.nii *.mha *.nrrd)"
        )
        if path:
            self.handlers["export_labels"](path)

    def _on_export_predictions(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the prediction maps")
        if folder:
            self.handlers["export_predictions"](folder)
