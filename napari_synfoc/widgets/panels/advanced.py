"""The Advanced form, generated from the config's field metadata (``config.ADVANCED_FIELDS``).

Each row's widget follows :func:`napari_synfoc.config.form_spec`: a check box for a bool, a combo
box for choices, a spin box for ``(min, max, step)``.  The form shows the chosen profile's values;
only the rows the user changed become overrides.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QPushButton,
    QSpinBox,
    QWidget,
)
from superqt import QCollapsible

from ...config import ADVANCED_FIELDS, SynFoCConfig, field_meta, form_spec
from ..tooltips import TOOLTIPS


def _decimals(low: float, step: float) -> int:
    """Enough decimals to show the range's lower bound and step (else Qt rounds them away)."""
    small = [abs(v) for v in (low, step) if v]
    need = max((math.ceil(-math.log10(v)) for v in small), default=0) + 2
    return int(min(10, max(3, need)))


class AdvancedForm(QCollapsible):
    """A collapsible form of config fields; ``overrides()`` returns the user's changes."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Advanced", parent)
        body = QWidget()
        form = QFormLayout(body)
        form.setContentsMargins(0, 0, 0, 0)
        self.widgets: dict[str, QWidget] = {}
        self.touched: set[str] = set()
        self._loading = False
        defaults = SynFoCConfig()
        for name in ADVANCED_FIELDS:
            w = self._make_field(name, getattr(defaults, name), form_spec(name))
            w.setObjectName(name)
            w.setToolTip(TOOLTIPS.get(name) or field_meta(name)["help"])
            self.widgets[name] = w
            form.addRow(name.replace("_", " "), w)
        self.reset_btn = QPushButton("Reset to profile values")
        form.addRow(self.reset_btn)
        self.addWidget(body)

    def _make_field(self, name: str, value: Any, spec: Any) -> QWidget:
        if spec is None:
            w = QCheckBox()
            w.setChecked(bool(value))
            w.toggled.connect(lambda _=None, n=name: self._touch(n))
        elif isinstance(spec, tuple) and spec and isinstance(spec[0], str):
            w = QComboBox()
            w.addItems([str(c) for c in spec])
            w.setCurrentText(str(value))
            w.activated.connect(lambda _=None, n=name: self._touch(n))
        elif isinstance(value, int):
            w = QSpinBox()
            w.setRange(int(spec[0]), int(spec[1]))
            w.setSingleStep(max(1, int(spec[2])))
            w.setValue(int(value))
            w.valueChanged.connect(lambda _=None, n=name: self._touch(n))
        else:
            w = QDoubleSpinBox()
            w.setDecimals(_decimals(float(spec[0]), float(spec[2])))
            w.setRange(float(spec[0]), float(spec[1]))
            w.setSingleStep(float(spec[2]))
            w.setValue(float(value))
            w.valueChanged.connect(lambda _=None, n=name: self._touch(n))
        return w

    def _touch(self, name: str) -> None:
        if not self._loading:
            self.touched.add(name)

    def set_value(self, name: str, value: Any) -> None:
        """Show ``value`` in row ``name`` without counting it as a user change."""
        w = self.widgets[name]
        self._loading = True
        try:
            if isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            elif isinstance(w, QSpinBox):
                w.setValue(int(value))
            else:
                w.setValue(float(value))
        finally:
            self._loading = False

    def value(self, name: str) -> Any:
        w = self.widgets[name]
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText()
        return w.value()

    def show_config(self, cfg: SynFoCConfig) -> None:
        """Show ``cfg``'s values in every row the user has not changed."""
        for name in self.widgets:
            if name not in self.touched:
                self.set_value(name, getattr(cfg, name))

    def overrides(self) -> dict[str, Any]:
        """Config overrides: only the rows the user changed."""
        return {name: self.value(name) for name in sorted(self.touched)}
