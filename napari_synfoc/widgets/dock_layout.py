"""The dock's layout: its panels in a scroll area, the widgets scripts reach by name, and the
signals that connect the panels to the dock's actions."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from .dicom_open import DicomSeriesButton
from .dock_session import DockSessions
from .panels.data import DataPanel
from .panels.model import ModelPanel
from .panels.prompt import PromptPanel
from .panels.review import ReviewPanel
from .panels.run import RunPanel
from .panels.session import SessionPanel
from .prompt_tool import PROMPT_LAYERS, PromptTool


def build_layout(dock: Any) -> None:
    """Create ``dock``'s panels (top to bottom: DICOM, data, model, run, review, prompts,
    session), name the widgets scripts and tests reach, and connect the panels' signals."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = QScrollArea(dock)
    scroll.setWidgetResizable(True)
    outer.addWidget(scroll)
    body = QWidget()
    scroll.setWidget(body)
    lay = QVBoxLayout(body)
    lay.setSpacing(4)
    dock.data_panel = DataPanel(dock.viewer)
    dock.model_panel = ModelPanel()
    dock.run_panel = RunPanel()
    dock.review = ReviewPanel()
    dock.sessions = DockSessions(dock)
    dock.session_panel = SessionPanel(dock.sessions.panel_actions())
    dock.dicom_button = DicomSeriesButton(dock.viewer, dock.controller.say)
    dock.prompt_panel = PromptPanel()  # box / click prompts, fixes, box propagation
    dock.prompts = PromptTool(dock, dock.prompt_panel)
    dock.data_panel.labels_combo.exclude.update(PROMPT_LAYERS)
    title = QLabel("<b>Review: where MedSAM and the U-Net disagree</b>")
    for w in (dock.dicom_button, dock.data_panel, dock.model_panel, dock.run_panel, title,
              dock.review, dock.prompt_panel, dock.session_panel):  # fmt: skip
        lay.addWidget(w)
    lay.addStretch(1)
    _name_widgets(dock)
    _connect(dock)


def _name_widgets(dock: Any) -> None:
    """The panels' widgets as attributes of the dock (scripts and tests reach them by name)."""
    d, m, r = dock.data_panel, dock.model_panel, dock.run_panel
    dock.image_combo, dock.labels_combo = d.image_combo, d.labels_combo
    dock.labeled_list, dock.labeled_title, dock.mark_btn = (
        d.labeled_list, d.labeled_title, d.mark_btn,
    )  # fmt: skip
    dock.extra_list, dock.folder_edit = d.extra_list, d.folder_edit
    dock.foundation_combo, dock.checkpoint_edit = m.foundation_combo, m.checkpoint_edit
    dock.device_combo, dock.profile_combo = m.device_combo, m.profile_combo
    dock.iterations_spin, dock.predict_every_spin = m.iterations_spin, m.predict_every_spin
    dock.advanced = m.advanced
    dock.train_btn, dock.retrain_btn, dock.stop_btn = r.train_btn, r.retrain_btn, r.stop_btn
    dock.progress, dock.status, dock.message = r.progress, r.status, r.message
    dock.loss_plot = r.loss_plot
    dock.action_buttons = dock.session_panel.buttons


def _connect(dock: Any) -> None:
    """Panel signals -> the dock's actions; painting refreshes the slice list 250 ms later."""
    d, r = dock.data_panel, dock.run_panel
    d.slice_clicked.connect(dock.goto_slice)
    d.mark_requested.connect(lambda: dock.mark_current_slice())
    d.labels_layer_changed.connect(dock.refresh_labeled)
    d.labels_painted.connect(dock.on_labels_painted)
    r.train_btn.clicked.connect(lambda: dock.train())
    r.retrain_btn.clicked.connect(lambda: dock.retrain())
    r.stop_btn.clicked.connect(lambda: dock.stop())
    dock.review.slice_clicked.connect(dock.goto_slice)
    dock.review.next_requested.connect(lambda: dock.next_uncertain())
    dock.review.accept_requested.connect(lambda s: dock.accept(s))
    dock.review.accept_above_requested.connect(lambda q: dock.accept_above(q))
    timer = dock.label_refresh_timer = QTimer(dock)
    timer.setSingleShot(True)
    timer.setInterval(250)
    timer.timeout.connect(dock.refresh_labeled)
