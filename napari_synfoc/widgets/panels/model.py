"""The model and compute panel: foundation model, checkpoint, device, profile, iterations, and the
Advanced form (shows what :func:`~napari_synfoc.config.resolve_config` would build)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...app.estimate import run_time_hint
from ...app.task_builder import DEVICES, FOUNDATION_CHOICES, PROFILE_CHOICES, displayed_profile
from ...config import (
    PROFILES,
    VITB_FOUNDATIONS,
    choices,
    field_meta,
    resolve_config,
    retrain_iterations,
    run_iterations,
)
from ..tooltips import tip
from .advanced import AdvancedForm

# Only to show a ViT-B profile's values before the user has picked a checkpoint file.
_DISPLAY_CHECKPOINT = "(checkpoint file)"


@functools.cache
def strategy_descriptions() -> dict[str, str]:
    """``core.strategies.DESCRIPTIONS`` read from its source: importing that package imports
    torch, which the dock must not do when napari loads it."""
    src = Path(__file__).resolve().parents[2] / "core" / "strategies" / "__init__.py"
    for node in ast.parse(src.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DESCRIPTIONS" for t in node.targets
        ):
            return dict(ast.literal_eval(node.value))
    raise LookupError(f"no DESCRIPTIONS in {src}")


class ModelPanel(QWidget):
    """Model and compute choices; :meth:`params` is what a run is built from."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.foundation_combo = QComboBox()
        for key, text in FOUNDATION_CHOICES:
            self.foundation_combo.addItem(text, key)
        self.foundation_combo.setObjectName("foundation")
        self.foundation_combo.setToolTip(tip("foundation"))
        form.addRow("Foundation model", self.foundation_combo)
        row = QHBoxLayout()
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setObjectName("checkpoint")
        self.checkpoint_edit.setPlaceholderText("medsam_vit_b.pth")
        self.checkpoint_edit.setToolTip(tip("checkpoint"))
        self.checkpoint_btn = QPushButton("…")
        self.checkpoint_btn.setMaximumWidth(30)
        self.checkpoint_btn.clicked.connect(self._browse_checkpoint)
        row.addWidget(self.checkpoint_edit)
        row.addWidget(self.checkpoint_btn)
        form.addRow("Checkpoint", row)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.profile_combo = QComboBox()
        self.profile_combo.addItems(list(PROFILE_CHOICES))
        self.strategy_combo = QComboBox()
        descriptions = strategy_descriptions()
        for i, name in enumerate(choices("strategy")):
            self.strategy_combo.addItem(name)
            self.strategy_combo.setItemData(
                i, descriptions.get(name, ""), Qt.ItemDataRole.ToolTipRole
            )
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(1, 1_000_000)
        # the profile's run length until the user picks one (config.run_iterations)
        self._iterations_touched = False
        self._setting_iterations = False
        self._measured_rate: dict[str, float] = {}
        self.iterations_spin.valueChanged.connect(self._on_iterations_changed)
        self.retrain_spin = QSpinBox()  # a Retrain's run length (config.retrain_iterations)
        self.retrain_spin.setRange(1, 1_000_000)
        self._retrain_touched = False
        self.retrain_spin.valueChanged.connect(self._on_retrain_changed)
        self.run_hint = QLabel()
        self.run_hint.setObjectName("run_hint")
        self.run_hint.setWordWrap(True)
        self.run_hint.setStyleSheet("color: gray;")
        self.predict_every_spin = QSpinBox()
        self.predict_every_spin.setRange(0, 1_000_000)
        self.predict_every_spin.setSpecialValueText("auto")
        for key, w, text in (
            ("device", self.device_combo, "Device"),
            ("profile", self.profile_combo, "Compute profile"),
            ("strategy", self.strategy_combo, "Strategy"),
            ("iterations", self.iterations_spin, "Iterations"),
            ("retrain_iterations", self.retrain_spin, "Retrain iterations"),
            ("predict_every", self.predict_every_spin, "Refresh overlays every"),
        ):
            w.setObjectName(key)
            w.setToolTip(tip(key))
            form.addRow(text, w)
            if key == "iterations":
                form.addRow("", self.run_hint)
        lay.addLayout(form)
        self.advanced = AdvancedForm()
        self.advanced.reset_btn.clicked.connect(self.reset_advanced)
        lay.addWidget(self.advanced)
        self.foundation_combo.currentIndexChanged.connect(self._on_foundation_changed)
        self.device_combo.currentIndexChanged.connect(self.show_profile)
        self.profile_combo.currentIndexChanged.connect(self.show_profile)
        self.strategy_combo.currentIndexChanged.connect(self._on_strategy_changed)
        self._on_foundation_changed()
        self._on_strategy_changed()

    # ------------------------------------------------------------------ values
    def foundation(self) -> str:
        return str(self.foundation_combo.currentData())

    def checkpoint(self) -> str | None:
        return self.checkpoint_edit.text().strip() or None

    def strategy(self) -> str:
        return self.strategy_combo.currentText()

    def params(self) -> dict[str, Any]:
        """``task_builder.build_config`` arguments from the current choices."""
        overrides = self.advanced.overrides()
        if self.strategy() != "synfoc":
            overrides["strategy"] = self.strategy()
        return {
            "profile": self.profile_combo.currentText(),
            "device": self.device_combo.currentText(),
            "foundation": self.foundation(),
            "checkpoint": self.checkpoint(),
            "iterations": self.iterations_spin.value(),
            "overrides": overrides,
        }

    def retrain_params(self) -> dict[str, Any]:
        """:meth:`params` for a Retrain: the Retrain iterations instead of the Iterations."""
        return {**self.params(), "iterations": self.retrain_spin.value()}

    def set_profile(self, name: str) -> None:
        """Choose a compute profile by name (``ValueError`` names the choices)."""
        if name not in PROFILE_CHOICES:
            raise ValueError(f"unknown profile {name!r}; choose from {PROFILE_CHOICES}")
        self.profile_combo.setCurrentText(name)

    # ------------------------------------------------------------------ the Advanced form
    def profile_name(self) -> str:
        """The profile the current Compute profile and Device choices give (no torch)."""
        return displayed_profile(self.profile_combo.currentText(), self.device_combo.currentText())

    def shown_config(self):
        """The config the current choices give, as the Advanced form shows it (no torch)."""
        name = self.profile_name()
        tiny = PROFILES[name].overrides.get("foundation") == "tiny"
        fm = None if tiny else self.foundation()
        over = {"iterations": self.iterations_spin.value(), "strategy": self.strategy()}
        if fm in VITB_FOUNDATIONS:
            over["checkpoint"] = self.checkpoint() or _DISPLAY_CHECKPOINT
        return resolve_config(name, self.device_combo.currentText(), fm, over)

    def show_profile(self, *_: Any) -> None:
        """Show the chosen profile's values in the Advanced form (user edits are kept), and its
        run length unless the user chose one."""
        name = self.profile_name()
        if not self._iterations_touched:
            self._set_default(self.iterations_spin, run_iterations(name))
        if not self._retrain_touched:
            self._set_default(self.retrain_spin, retrain_iterations(name))
        self.advanced.show_config(self.shown_config())
        self._show_run_hint()
        extra = " (the tiny profile uses a tiny random model)" if name == "tiny" else ""
        self.foundation_combo.setToolTip(tip("foundation") + extra)

    def _set_default(self, spin: QSpinBox, value: int) -> None:
        """Set a run-length spin box to the profile's value without counting it as the user's."""
        self._setting_iterations = True
        try:
            spin.setValue(value)
        finally:
            self._setting_iterations = False

    def _on_strategy_changed(self, *_: Any) -> None:
        desc = strategy_descriptions().get(self.strategy(), "")
        self.strategy_combo.setToolTip(f"{field_meta('strategy')['help']}\n{desc}")
        self.show_profile()

    def note_rate(self, s_per_iteration: float | None) -> None:
        """Remember the last run's measured seconds per iteration for the estimate."""
        if s_per_iteration is None or not s_per_iteration > 0:
            return
        name = self.profile_name()
        self._measured_rate[name] = float(s_per_iteration)
        self._show_run_hint()

    def _on_iterations_changed(self, *_: Any) -> None:
        if not self._setting_iterations:
            self._iterations_touched = True
        self._show_run_hint()

    def _on_retrain_changed(self, *_: Any) -> None:
        if not self._setting_iterations:
            self._retrain_touched = True

    def _show_run_hint(self) -> None:
        """The time under Iterations: from this machine's last measured run of this profile
        (never a figure from another machine)."""
        name = self.profile_name()
        self.run_hint.setText(
            run_time_hint(self.iterations_spin.value(), self._measured_rate.get(name))
        )

    def show_time_left(self, text: str) -> None:
        """The running training's own estimate (measured in this run), once it has one."""
        if text:
            self.run_hint.setText(text)

    def reset_advanced(self) -> None:
        self.advanced.touched.clear()
        self.show_profile()

    def _on_foundation_changed(self, *_: Any) -> None:
        needs = self.foundation() in VITB_FOUNDATIONS
        self.checkpoint_edit.setEnabled(needs)
        self.checkpoint_btn.setEnabled(needs)
        self.show_profile()

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Foundation model checkpoint", "", "PyTorch checkpoint (*.pth *.pt)"
        )
        if path:
            self.checkpoint_edit.setText(path)
