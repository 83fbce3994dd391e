"""Open a DICOM folder's series, one or all, as the user picks; files left out are named."""

from __future__ import annotations

import os
import warnings
from typing import Any

from qtpy.QtWidgets import QFileDialog, QInputDialog, QPushButton, QWidget

ALL_SERIES = "All series"


def series_labels(folder: str) -> tuple[list[str], list[Any]]:
    """The picker's entries for ``folder`` (each series with its slice count, then "All
    series" when there are several) and the series themselves (largest first)."""
    from ..io.readers import list_dicom_series

    series, _ = list_dicom_series(folder)
    labels = [s.label for s in series]
    return labels + ([ALL_SERIES] if len(series) > 1 else []), series


def open_series(viewer: Any, folder: str, choice: int | None) -> tuple[list[Any], list[str]]:
    """Add series ``choice`` of ``folder`` (None: every series) to ``viewer`` as image layers
    with their patient geometry; returns (layers, messages about files left out)."""
    from ..io.readers import read_layer_data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_layer_data(folder, series=choice)
    layers = [viewer.add_image(arr, **kwargs) for arr, kwargs, _ in data]
    return layers, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


class DicomSeriesButton(QPushButton):
    """ "Open DICOM series…": choose a folder, then one of its series or all of them."""

    def __init__(self, viewer: Any, say, parent: QWidget | None = None) -> None:
        super().__init__("Open DICOM series…", parent)
        self.viewer = viewer
        self.say = say  # the dock's message line: say(text, error=False)
        self.setToolTip(
            "Open a DICOM folder: pick one of its series (or all), each as an image layer in "
            "patient millimetres; files that are not part of the series read are named."
        )
        self.clicked.connect(lambda *_: self.choose())

    def choose(self, folder: str | None = None, choice: int | None = -1) -> list[Any]:
        """Ask for a folder and a series (``folder``/``choice`` given: no dialog; -1 asks);
        returns the layers added."""
        from ..io.readers import SynFoCIOError

        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "DICOM folder")
            if not folder:
                return []
        folder = os.fspath(folder)
        try:
            labels, series = series_labels(folder)
        except (SynFoCIOError, OSError) as exc:
            self.say(str(exc), error=True)
            return []
        if not series:
            self.say(f"No DICOM series in '{folder}': choose a folder of .dcm files.", error=True)
            return []
        if choice == -1:
            if len(series) == 1:
                choice = 0
            else:
                item, ok = QInputDialog.getItem(
                    self, "DICOM series", f"{len(series)} series in {folder}:", labels, 0, False
                )
                if not ok:
                    return []
                choice = labels.index(item)
        if choice is not None and choice >= len(series):
            choice = None  # "All series"
        try:
            layers, notes = open_series(self.viewer, folder, choice)
        except (SynFoCIOError, OSError) as exc:
            self.say(str(exc), error=True)
            return []
        names = ", ".join(f"'{ly.name}'" for ly in layers)
        self.say(" ".join([f"Opened {names}."] + notes))
        return layers
