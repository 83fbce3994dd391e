"""The data panel: image and labels layers, labelled slices, extra unlabelled data.

It keeps its combo boxes in sync with the viewer's layer list and watches the chosen labels
layer for strokes; the dock decides what a stroke means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...app.task_builder import spatial_shape
from ...core.intensity import CT_WINDOWS
from .. import overlays
from ..tooltips import tip
from .common import make_button

AUTO_INTENSITY = "auto (percentile)"
LAYER_INTENSITY = "layer contrast limits"
# What the models see of the image: the combo's choices, in order
INTENSITY_MODES = (AUTO_INTENSITY, LAYER_INTENSITY, *(f"CT {name}" for name in CT_WINDOWS))
INTENSITY_TIP = (
    "The intensities the models see. auto: 0.5-99.5 percentile stretch. layer contrast limits: "
    "the window you see on screen. CT presets in Hounsfield units: "
    + ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in CT_WINDOWS.items())
    + ". Saved with the session."
)


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one type, kept in sync with the layer list."""

    def __init__(self, viewer, layer_type, exclude=(), parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        self.exclude = set(exclude)
        self._layers: list[Any] = []
        self.refresh()

    def candidates(self) -> list[Any]:
        return [
            ly for ly in self.viewer.layers
            if isinstance(ly, self.layer_type) and ly.name not in self.exclude
        ]  # fmt: skip

    def refresh(self) -> None:
        current = self.value
        self._layers = self.candidates()
        self.blockSignals(True)
        self.clear()
        self.addItems([ly.name for ly in self._layers])
        if current in self._layers:
            self.setCurrentIndex(self._layers.index(current))
        self.blockSignals(False)
        if current not in self._layers:
            self.currentIndexChanged.emit(self.currentIndex())

    @property
    def value(self) -> Any:
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_value(self, layer: Any) -> None:
        if layer not in self._layers:
            self.refresh()
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))


class DataPanel(QWidget):
    """Image/labels choice, the labelled-slice list, the mark button, extra unlabelled data."""

    slice_clicked = Signal(int)
    mark_requested = Signal()
    labels_layer_changed = Signal()  # another Labels layer was chosen
    labels_painted = Signal()  # the chosen Labels layer's data changed

    def __init__(self, viewer, parent: QWidget | None = None):
        super().__init__(parent)
        from napari.layers import Image, Labels

        self.viewer = viewer
        self._watched: Any = None
        self._intensity_chosen = False  # the user or a session picked the mode
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.image_combo = LayerCombo(viewer, Image, exclude=(overlays.HEAT,))
        self.labels_combo = LayerCombo(viewer, Labels, exclude=overlays.LABEL_OVERLAYS)
        for key, w in (("image", self.image_combo), ("labels", self.labels_combo)):
            w.setObjectName(key)
            w.setToolTip(tip(key))
        self.intensity_combo = QComboBox()
        self.intensity_combo.addItems(list(INTENSITY_MODES))
        self.intensity_combo.setObjectName("intensity")
        self.intensity_combo.setToolTip(INTENSITY_TIP)
        form.addRow("Image", self.image_combo)
        form.addRow("Intensity", self.intensity_combo)
        form.addRow("Labels", self.labels_combo)
        lay.addLayout(form)
        self.labeled_list = QListWidget()
        self.labeled_list.setObjectName("labeled_list")
        self.labeled_list.setToolTip(tip("labeled_list"))
        self.labeled_list.setMaximumHeight(70)
        self.labeled_list.setFlow(QListWidget.Flow.LeftToRight)
        self.labeled_list.setWrapping(True)
        self.labeled_list.itemClicked.connect(
            lambda item: self.slice_clicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))
        )
        self.labeled_title = QLabel("Labelled slices: none")
        lay.addWidget(self.labeled_title)
        lay.addWidget(self.labeled_list)
        self.mark_btn = make_button("mark_labeled", "Mark slice as labelled (all background)")
        self.mark_btn.clicked.connect(self.mark_requested.emit)
        lay.addWidget(self.mark_btn)
        lay.addWidget(self._build_extra())
        self._connect()

    def _build_extra(self) -> QWidget:
        extra = QCollapsible("Extra unlabelled data (other scanners)")
        body = QWidget()
        el = QVBoxLayout(body)
        el.setContentsMargins(0, 0, 0, 0)
        self.extra_list = QListWidget()
        self.extra_list.setObjectName("extra_layers")
        self.extra_list.setToolTip(tip("extra_layers"))
        self.extra_list.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        self.extra_list.setMaximumHeight(80)
        el.addWidget(QLabel("Image layers"))
        el.addWidget(self.extra_list)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setObjectName("extra_folder")
        self.folder_edit.setPlaceholderText("folder of images (optional)")
        self.folder_edit.setToolTip(tip("extra_folder"))
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_folder)
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        el.addLayout(row)
        extra.addWidget(body)
        return extra

    # ------------------------------------------------------------------ values
    def extra_images(self) -> list[tuple[np.ndarray, bool]]:
        """(data, is_rgb) of the selected extra image layers (the training image excluded)."""
        main = self.image_combo.value
        layers = self.viewer.layers
        out = []
        for it in self.extra_list.selectedItems():
            name = it.text()
            if name in layers and layers[name] is not main:
                out.append((np.asarray(layers[name].data), bool(layers[name].rgb)))
        return out

    def intensity_mode(self) -> str:
        """The intensity choice, one of :data:`INTENSITY_MODES`."""
        return self.intensity_combo.currentText()

    def intensity_window(self, image_layer: Any) -> tuple[float, float] | None:
        """The ``StackTask.intensity_window`` for ``image_layer``: None for the percentile
        mapping, its contrast limits, or a CT preset (checked by the task validator)."""
        mode = self.intensity_mode()
        if mode == AUTO_INTENSITY:
            return None
        if mode == LAYER_INTENSITY:
            if image_layer is None:
                return None
            lo, hi = image_layer.contrast_limits
            return float(lo), float(hi)
        return CT_WINDOWS[mode.removeprefix("CT ")]

    def set_intensity(self, mode: str | None) -> None:
        """Choose an intensity mode by name (a session's); ValueError names the choices."""
        mode = mode or AUTO_INTENSITY
        if mode not in INTENSITY_MODES:
            raise ValueError(f"unknown intensity mode {mode!r}; choose from {INTENSITY_MODES}")
        self.intensity_combo.setCurrentText(mode)
        self._intensity_chosen = True

    def folder(self) -> str | None:
        return self.folder_edit.text().strip() or None

    def show_labeled(self, labeled: Sequence[int], empty: set[int]) -> None:
        """List the labelled slices; ``empty`` ones (marked, all background) say so."""
        self.labeled_list.clear()
        for z in labeled:
            item = QListWidgetItem(f"{z}" + (" (bg)" if z in empty else ""))
            item.setData(Qt.ItemDataRole.UserRole, int(z))
            self.labeled_list.addItem(item)
        self.labeled_title.setText(
            f"Labelled slices: {len(labeled)}" + ("" if labeled else " (paint on a few slices)")
        )

    # ------------------------------------------------------------------ viewer wiring
    def _connect(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self._on_layers_changed)
        ev.removed.connect(self._on_layers_changed)
        ev.moved.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.intensity_combo.activated.connect(self._on_intensity_activated)  # user's choice
        self.pick_default_layers()
        self.suggest_intensity()
        self._watch(self.labels_combo.value)

    def disconnect_viewer(self) -> None:
        """Stop listening to the viewer (the dock is closing)."""
        ev = self.viewer.layers.events
        for sig in (ev.inserted, ev.removed, ev.moved):
            try:
                sig.disconnect(self._on_layers_changed)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._watch(None)

    def _on_layers_changed(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._on_layers_changed)
        self.image_combo.refresh()
        self.labels_combo.refresh()
        self._refresh_extra_list()
        self.pick_default_layers()

    def pick_default_layers(self) -> None:
        """Prefer a Labels layer whose shape fits the chosen image."""
        img = self.image_combo.value
        lab = self.labels_combo.value
        if img is None:
            return
        want = spatial_shape(np.shape(img.data), bool(img.rgb))
        if lab is not None and tuple(np.shape(lab.data)) == want:
            return
        for cand in self.labels_combo.candidates():
            if tuple(np.shape(cand.data)) == want:
                self.labels_combo.set_value(cand)
                return

    def _refresh_extra_list(self) -> None:
        chosen = {it.text() for it in self.extra_list.selectedItems()}
        main = self.image_combo.value
        self.extra_list.clear()
        for layer in self.image_combo.candidates():
            if layer is main:
                continue
            item = QListWidgetItem(layer.name)
            self.extra_list.addItem(item)
            item.setSelected(layer.name in chosen)

    def _on_image_changed(self, *_: Any) -> None:
        self._refresh_extra_list()
        self.pick_default_layers()
        self.suggest_intensity()

    def suggest_intensity(self) -> None:
        """Start a CT in Hounsfield units from the soft-tissue window (the percentile stretch
        otherwise), unless the user (or a session) chose the intensity mode."""
        from ...core.intensity import suggested_window

        if self._intensity_chosen:
            return
        img = self.image_combo.value
        name = None if img is None or img.rgb else suggested_window(img.data)
        self.intensity_combo.blockSignals(True)
        self.intensity_combo.setCurrentText(f"CT {name}" if name else AUTO_INTENSITY)
        self.intensity_combo.blockSignals(False)

    def _on_intensity_activated(self, *_: Any) -> None:
        self._intensity_chosen = True

    def _on_labels_changed(self, *_: Any) -> None:
        self._watch(self.labels_combo.value)
        self.labels_layer_changed.emit()

    def _watch(self, layer: Any) -> None:
        old = self._watched
        if old is layer:
            return
        if old is not None:
            for sig in (old.events.paint, old.events.data):
                try:
                    sig.disconnect(self._on_painted)
                except (TypeError, ValueError, RuntimeError):
                    pass
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._on_painted)
            layer.events.data.connect(self._on_painted)

    def _on_painted(self, *_: Any) -> None:
        self.labels_painted.emit()

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of unlabelled images")
        if folder:
            self.folder_edit.setText(folder)
