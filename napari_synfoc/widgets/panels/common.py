"""Small helpers shared by the panels."""

from __future__ import annotations

from qtpy.QtWidgets import QPushButton, QWidget

from ..tooltips import SHORTCUTS, tip


def make_button(key: str, text: str, parent: QWidget | None = None) -> QPushButton:
    """A push button named ``key``, its shortcut in the label and its tooltip set."""
    label = f"{text} ({SHORTCUTS[key]})" if key in SHORTCUTS else text
    btn = QPushButton(label, parent)
    btn.setObjectName(key)
    btn.setToolTip(tip(key))
    return btn
