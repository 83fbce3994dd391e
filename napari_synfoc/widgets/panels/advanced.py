"""The Advanced form, generated with magicgui from the config's field metadata
(``config.ADVANCED_FIELDS``).

Each row is the magicgui widget of :func:`napari_synfoc.config.form_spec`: a check box for a bool,
a combo box for choices, a spin box for ``(min, max, step)``.  The form shows the chosen profile's
values; only the rows the user changed become overrides.
"""

from __future__ import annotations

import math
from typing import Any

from magicgui.widgets import Container, PushButton, create_widget
from magicgui.widgets.bases import ValueWidget
from qtpy.QtWidgets import QWidget
from superqt import QCollapsible

from ...config import ADVANCED_FIELDS, SynFoCConfig, field_meta, form_spec
from ..tooltips import TOOLTIPS


def _decimals(low: float, step: float) -> int:
    """Enough decimals to show the range's lower bound and step (else Qt rounds them away)."""
    small = [abs(v) for v in (low, step) if v]
    need = max((math.ceil(-math.log10(v)) for v in small), default=0) + 2
    return int(min(10, max(3, need)))


def field_widget(name: str, value: Any) -> ValueWidget:
    """The magicgui widget of config field ``name`` showing ``value``, with its tooltip."""
    spec = form_spec(name)
    if spec is None:
        kind, options = bool, {}
    elif isinstance(spec[0], str):
        kind, options = str, {"choices": [str(c) for c in spec]}
    else:
        kind = int if isinstance(value, int) else float
        options = {"min": kind(spec[0]), "max": kind(spec[1]), "step": kind(spec[2]) or 1}
    w = create_widget(kind(value), kind, name=name, options=options)
    if kind is float:  # magicgui sizes the decimals by the step only
        w.native.setDecimals(_decimals(float(spec[0]), float(spec[2])))
        w.value = float(value)
    w.tooltip = TOOLTIPS.get(name) or field_meta(name)["help"]
    w.native.setObjectName(name)
    return w


class AdvancedForm(QCollapsible):
    """A collapsible form of config fields; ``overrides()`` returns the user's changes.

    ``fields``: the magicgui widgets by field name; ``widgets``: their Qt widgets.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Advanced", parent)
        defaults = SynFoCConfig()
        self.fields = {n: field_widget(n, getattr(defaults, n)) for n in ADVANCED_FIELDS}
        self.widgets = {name: w.native for name, w in self.fields.items()}
        self.touched: set[str] = set()
        self._loading = False
        for name, w in self.fields.items():
            w.changed.connect(lambda _=None, n=name: self._touch(n))
        self.reset_btn = PushButton(text="Reset to profile values")
        form = Container(widgets=[*self.fields.values(), self.reset_btn], labels=True)
        form.margins = (0, 0, 0, 0)
        self.addWidget(form.native)
        self._form = form  # keeps the magicgui container (and its widgets) alive

    def _touch(self, name: str) -> None:
        if not self._loading:
            self.touched.add(name)

    def set_value(self, name: str, value: Any) -> None:
        """Show ``value`` in row ``name`` without counting it as a user change."""
        w = self.fields[name]
        self._loading = True
        try:
            w.value = type(w.value)(value)  # bool, str (a choice), int or float
        finally:
            self._loading = False

    def value(self, name: str) -> Any:
        return self.fields[name].value

    def show_config(self, cfg: SynFoCConfig) -> None:
        """Show ``cfg``'s values in every row the user has not changed."""
        for name in self.fields:
            if name not in self.touched:
                self.set_value(name, getattr(cfg, name))

    def overrides(self) -> dict[str, Any]:
        """Config overrides: only the rows the user changed."""
        return {name: self.value(name) for name in sorted(self.touched)}
