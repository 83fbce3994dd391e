"""Tooltip texts with their shortcut keys (the dock's table and the prompt panel's)."""

from __future__ import annotations

import pytest

from napari_synfoc.widgets.panels.prompt import EXTRA_KEYS, PROMPT_SHORTCUTS, TIPS, PromptPanel
from napari_synfoc.widgets.tooltips import SHORTCUTS, TOOLTIPS, shortcut_tip, tip


def test_tip_appends_the_dock_shortcut():
    assert tip("next_uncertain") == f"{TOOLTIPS['next_uncertain']} [Shift-N]"
    assert tip("train") == TOOLTIPS["train"]  # no shortcut: the bare text
    assert tip("no such key") == ""


def test_shortcut_tip_lists_shortcut_then_extra_keys():
    tables = (TIPS, PROMPT_SHORTCUTS, EXTRA_KEYS)
    assert shortcut_tip("segment", *tables) == f"{TIPS['segment']} [S / Enter]"
    assert shortcut_tip("accept_all", *tables) == f"{TIPS['accept_all']} [Shift-A]"
    assert shortcut_tip("auto", *tables) == TIPS["auto"]
    assert shortcut_tip("only_keys", {}, {"only_keys": "K"}) == " [K]"
    assert shortcut_tip("mark_labeled", TOOLTIPS, SHORTCUTS) == tip("mark_labeled")


@pytest.mark.gui
def test_prompt_panel_buttons_show_their_keys(qtbot):
    panel = PromptPanel()
    qtbot.addWidget(panel)
    assert panel.buttons["segment"].toolTip().endswith("[S / Enter]")
    assert panel.buttons["undo"].toolTip().endswith("[Control-Z]")
