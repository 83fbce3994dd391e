"""The run panel: Train / Retrain / Stop, a determinate progress bar, status, messages, losses.

The bar is never indeterminate: a busy bar repaints continuously, which costs a core of software
rendering on machines without a GPU (issue 12 measured 0.65 core).
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from ..loss_plot import LossPlot
from .common import make_button


class RunPanel(QWidget):
    """Run buttons, progress, status line, message line and the loss plot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        grid = QGridLayout()
        self.train_btn = make_button("train", "Train")
        self.retrain_btn = make_button("retrain", "Retrain (warm start)")
        self.stop_btn = make_button("stop", "Stop")
        for col, btn in enumerate((self.train_btn, self.retrain_btn, self.stop_btn)):
            grid.addWidget(btn, 0, col)
        lay.addLayout(grid)
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setFormat("%v / %m")
        self.set_progress(0, 1, 0)
        lay.addWidget(self.progress)
        self.encode_bar = QProgressBar()
        self.encode_bar.setObjectName("encoding")
        self.encode_bar.setFormat("Encoding slices: %v / %m")
        self.encode_bar.setVisible(False)
        lay.addWidget(self.encode_bar)
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

    def set_progress(self, low: int, high: int, value: int) -> None:
        """Show ``value`` in ``[low, high]``; ``high`` is raised above ``low`` (never busy)."""
        high = max(int(high), int(low) + 1)
        if self.progress.minimum() != low or self.progress.maximum() != high:
            self.progress.setRange(int(low), high)
        self.progress.setValue(int(value))

    def set_encoding(self, done: int, total: int) -> None:
        """Frozen-encoder progress in its own determinate bar, hidden once every slice is done."""
        if done >= total:
            self.encode_bar.setVisible(False)
            return
        if self.encode_bar.maximum() != total:
            self.encode_bar.setRange(0, int(total))
        self.encode_bar.setValue(int(done))
        self.encode_bar.setVisible(True)

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #ff6b6b;" if error else "")

    def set_state(self, busy: bool, running: bool, stopping: bool, has_checkpoint: bool) -> None:
        """Enable the buttons for the dock's state (while a run stops, Train and Retrain queue
        the next run)."""
        free = not busy or (running and stopping)
        self.train_btn.setEnabled(free)
        self.retrain_btn.setEnabled(free and has_checkpoint)
        self.stop_btn.setEnabled(running and not stopping)
        self.stop_btn.setText("Stopping…" if running and stopping else "Stop")
