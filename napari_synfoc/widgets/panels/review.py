"""The review panel: slices ranked by MedSAM/U-Net disagreement, jump and accept buttons.

It only shows state and emits signals; the dock does the work.
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...app.review_quality import ACCEPT_QUALITY
from ..tooltips import tip
from .common import make_button


class ReviewPanel(QWidget):
    """Ranked-slice table (with each slice's estimated Dice), "Next uncertain slice", the three
    accept buttons and "Accept all slices estimated above q"."""

    slice_clicked = Signal(int)
    next_requested = Signal()
    accept_requested = Signal(str)  # "medsam" | "unet" | "ensemble"
    accept_above_requested = Signal(float)  # q

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, 4, self)
        self.table.setObjectName("review_table")
        self.table.setHorizontalHeaderLabels(["Slice", "Priority", "Est. Dice", "Status"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(170)
        self.table.setToolTip(tip("review_table"))
        self.table.cellClicked.connect(self._on_cell)
        lay.addWidget(self.table)

        self.next_btn = make_button("next_uncertain", "Next uncertain slice", self)
        self.next_btn.clicked.connect(self.next_requested.emit)
        lay.addWidget(self.next_btn)
        grid = QGridLayout()
        self.accept_buttons: dict[str, QPushButton] = {}
        for col, (source, text) in enumerate(
            (
                ("medsam", "Accept MedSAM"),
                ("unet", "Accept U-Net"),
                ("ensemble", "Accept ensemble"),
            )
        ):
            btn = make_button(f"accept_{source}", text, self)
            btn.clicked.connect(lambda _=False, s=source: self.accept_requested.emit(s))
            self.accept_buttons[source] = btn
            grid.addWidget(btn, 0, col)
        lay.addLayout(grid)
        self.keep_existing = QCheckBox("Keep my painted voxels when accepting")
        self.keep_existing.setObjectName("keep_existing")
        self.keep_existing.setToolTip(tip("keep_existing"))
        lay.addWidget(self.keep_existing)
        row = QHBoxLayout()
        self.accept_above_btn = make_button("accept_above", "Accept all estimated ≥ q", self)
        self.accept_above_btn.clicked.connect(
            lambda _=False: self.accept_above_requested.emit(float(self.accept_q.value()))
        )
        self.accept_q = QDoubleSpinBox(self)
        self.accept_q.setObjectName("accept_quality")
        self.accept_q.setRange(0.5, 1.0)
        self.accept_q.setSingleStep(0.01)
        self.accept_q.setDecimals(2)
        self.accept_q.setValue(ACCEPT_QUALITY)
        self.accept_q.setPrefix("q = ")
        self.accept_q.setToolTip(tip("accept_quality"))
        row.addWidget(self.accept_above_btn, 1)
        row.addWidget(self.accept_q)
        lay.addLayout(row)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        """Enable the jump/accept buttons (only once predictions exist)."""
        self.next_btn.setEnabled(enabled)
        self.accept_above_btn.setEnabled(enabled)
        for btn in self.accept_buttons.values():
            btn.setEnabled(enabled)

    def set_ranking(
        self,
        ranking: Sequence[int],
        scores: Sequence[float],
        labeled: Sequence[int],
        quality: Sequence[float] | None = None,
    ) -> None:
        """Fill the table: one row per slice in ``ranking`` order; ``quality``: each slice's
        estimated Dice (blank without)."""
        lab = set(int(z) for z in labeled)
        table = self.table
        table.setSortingEnabled(False)
        table.setUpdatesEnabled(False)  # one repaint after the fill, not one per cell
        try:
            table.setRowCount(len(ranking))
            for row, z in enumerate(ranking):
                texts = (
                    str(int(z)),
                    f"{float(scores[z]):.4f}",
                    "" if quality is None else f"{float(quality[z]):.2f}",
                    "labelled" if z in lab else "",
                )
                for col, text in enumerate(texts):
                    item = table.item(row, col)  # rows kept from the last fill are reused
                    if item is None:
                        item = QTableWidgetItem(text)
                        table.setItem(row, col, item)
                    else:
                        item.setText(text)
                    item.setData(Qt.ItemDataRole.UserRole, int(z))
        finally:
            table.setUpdatesEnabled(True)

    def ranked_slices(self) -> list[int]:
        """The slice indices in table order."""
        return [
            int(self.table.item(r, 0).data(Qt.ItemDataRole.UserRole))
            for r in range(self.table.rowCount())
        ]

    def select_slice(self, z: int) -> None:
        """Highlight the row of slice ``z`` (no signal)."""
        for r in range(self.table.rowCount()):
            if int(self.table.item(r, 0).data(Qt.ItemDataRole.UserRole)) == z:
                self.table.blockSignals(True)
                self.table.selectRow(r)
                self.table.blockSignals(False)
                self.table.scrollToItem(self.table.item(r, 0))
                return

    def _on_cell(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.slice_clicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))
