"""The dock's panels on their own: the run panel's bars and the generated Advanced form."""

from __future__ import annotations

import pytest

from napari_synfoc.config import ADVANCED_FIELDS, form_spec, resolve_config

pytestmark = pytest.mark.gui


def test_run_panel_bars_are_always_determinate(qtbot):
    from napari_synfoc.widgets.panels.run import RunPanel

    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.set_progress(0, 0, 0)  # an empty range would make Qt draw a busy bar
    assert panel.progress.maximum() > panel.progress.minimum()
    panel.set_progress(5, 12, 7)
    assert (panel.progress.minimum(), panel.progress.maximum(), panel.progress.value()) == (
        5, 12, 7,
    )  # fmt: skip
    panel.set_encoding(3, 10)
    assert not panel.encode_bar.isHidden() and panel.encode_bar.maximum() == 10
    assert panel.encode_bar.value() == 3
    panel.set_encoding(10, 10)
    assert panel.encode_bar.isHidden()
    panel.set_state(busy=True, running=True, stopping=True, has_checkpoint=True)
    assert panel.stop_btn.text() == "Stopping…" and not panel.stop_btn.isEnabled()
    # while a run stops, Train / Retrain queue the next run (it starts when this one has ended)
    assert panel.train_btn.isEnabled() and panel.retrain_btn.isEnabled()
    panel.set_state(busy=True, running=True, stopping=False, has_checkpoint=True)
    assert not panel.train_btn.isEnabled() and not panel.retrain_btn.isEnabled()


def test_advanced_form_is_generated_from_the_config_table(qtbot):
    from qtpy.QtWidgets import QCheckBox, QComboBox

    from napari_synfoc.widgets.panels.model import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    form = panel.advanced
    assert list(form.widgets) == list(ADVANCED_FIELDS)
    for name, w in form.widgets.items():
        spec = form_spec(name)
        if spec is None:
            assert isinstance(w, QCheckBox), name
        elif isinstance(spec[0], str):
            assert [w.itemText(i) for i in range(w.count())] == list(spec), name
        else:
            assert (w.minimum(), w.maximum()) == pytest.approx(spec[:2]), name
        assert w.toolTip(), name
    # the profile's values are shown (not overrides); only user edits become overrides
    panel.profile_combo.setCurrentText("cpu-interactive")
    panel.device_combo.setCurrentText("cpu")
    shown = resolve_config("cpu-interactive", "cpu", "litemedsam", {"iterations": 300})
    assert form.value("freeze_encoder") is True and form.value("unet_lr") == shown.unet_lr
    assert form.overrides() == {}
    tau = form.widgets["tau"]
    tau.setValue(0.9)
    assert isinstance(form.widgets["alpha_mode"], QComboBox)
    assert form.overrides() == {"tau": pytest.approx(0.9)}
    # a ViT-B model: the form shows what resolve_config builds (LoRA, no embedding cache)
    panel.foundation_combo.setCurrentIndex(1)
    assert form.value("freeze_encoder") is False and form.value("lora_targets") == "qv"
    assert form.value("cache_embeddings") is False and form.value("tau") == pytest.approx(0.9)
    panel.reset_advanced()
    assert form.overrides() == {} and form.value("tau") == shown.tau
    params = panel.params()
    assert params["foundation"] == "medsam-vitb" and params["overrides"] == {}
    with pytest.raises(ValueError, match="unknown profile"):
        panel.set_profile("fastest")


def test_strategy_combo_builds_a_config_the_strategy_accepts(qtbot):
    """The strategy choice (issue 15) is a visible combo with the strategies' descriptions as
    tooltips; a prompted strategy shows and builds a frozen-encoder config."""
    from qtpy.QtCore import Qt

    from napari_synfoc.app.task_builder import build_config
    from napari_synfoc.core.strategies import DESCRIPTIONS, STRATEGIES, strategy_for
    from napari_synfoc.widgets.panels.model import ModelPanel, strategy_descriptions

    assert strategy_descriptions() == DESCRIPTIONS  # read without importing torch
    panel = ModelPanel()
    qtbot.addWidget(panel)
    combo = panel.strategy_combo
    assert [combo.itemText(i) for i in range(combo.count())] == list(STRATEGIES)
    for i, name in enumerate(STRATEGIES):
        assert combo.itemData(i, Qt.ItemDataRole.ToolTipRole) == DESCRIPTIONS[name]
    assert combo.currentText() == "synfoc" and "strategy" not in panel.params()["overrides"]
    panel.profile_combo.setCurrentText("gpu-fast")
    panel.device_combo.setCurrentText("cuda")
    assert panel.advanced.value("freeze_encoder") is False
    combo.setCurrentText("uncol")
    assert DESCRIPTIONS["uncol"] in combo.toolTip()
    assert panel.advanced.value("freeze_encoder") is True
    assert panel.advanced.value("lora_targets") == "none"
    params = panel.params()
    assert params["overrides"] == {"strategy": "uncol"}
    cfg = build_config(**params)
    assert cfg.strategy == "uncol"
    strategy_for(cfg)  # accepted: no error for a GPU user choosing UnCoL


def test_run_length_follows_the_profile_until_the_user_picks_one(qtbot):
    """Issue 12: the iteration default suits the device's profile, with a time estimate; a
    value the user typed is kept when the profile changes."""
    from napari_synfoc.config import PROFILES
    from napari_synfoc.widgets.panels.model import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    spin, hint = panel.iterations_spin, panel.run_hint
    panel.device_combo.setCurrentText("cpu")
    panel.profile_combo.setCurrentText("auto")
    assert spin.value() == PROFILES["cpu-interactive"].run_iterations == 300
    # issue 22 item 4: no figure from another machine before a run measured one here
    assert hint.text() == "Time: measured after the first iterations."
    panel.profile_combo.setCurrentText("gpu-fast")
    assert spin.value() == 3000 and hint.text() == "Time: measured after the first iterations."
    assert panel.shown_config().compile is True  # 3000 iterations keep the profile's compile
    panel.profile_combo.setCurrentText("tiny")
    assert spin.value() == 20 and "typical" not in hint.text()
    panel.profile_combo.setCurrentText("cpu-interactive")
    spin.setValue(120)  # the user's choice survives profile changes
    panel.profile_combo.setCurrentText("gpu-fast")
    assert spin.value() == 120 and panel.params()["iterations"] == 120
    panel.profile_combo.setCurrentText("cpu-interactive")
    panel.note_rate(1.5)  # a run measured 1.5 s/iteration on this machine
    assert hint.text() == (
        "about 3 min (1.50 s/iteration measured here in the last run, encoding included)"
    )
    panel.note_rate(None)  # a run with no step keeps the last figure
    assert "measured here" in hint.text()


def test_retrain_length_is_its_own_spin_box(qtbot):
    """Issue 21: Retrain (a warm restart) runs the profile's Retrain iterations (100 on
    cpu-interactive, what the effort loop measured), not the first run's length; a value the
    user typed survives profile changes, and Train keeps its own length."""
    from napari_synfoc.config import retrain_iterations, run_iterations
    from napari_synfoc.widgets.panels.model import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.device_combo.setCurrentText("cpu")
    panel.profile_combo.setCurrentText("auto")
    assert panel.retrain_spin.value() == retrain_iterations("cpu-interactive") == 100
    assert panel.params()["iterations"] == run_iterations("cpu-interactive") == 300
    assert panel.retrain_params()["iterations"] == 100
    panel.profile_combo.setCurrentText("gpu-fast")  # no Retrain figure: the run length
    assert panel.retrain_spin.value() == run_iterations("gpu-fast") == 3000
    panel.retrain_spin.setValue(40)
    panel.profile_combo.setCurrentText("cpu-interactive")
    assert panel.retrain_spin.value() == 40 and panel.retrain_params()["iterations"] == 40
    assert panel.params()["iterations"] == 300


def test_review_table_refill_reuses_rows_and_shows_only_the_new_ranking(qtbot):
    from qtpy.QtCore import Qt

    from napari_synfoc.widgets.panels.review import ReviewPanel

    panel = ReviewPanel()
    qtbot.addWidget(panel)
    scores = [0.1, 0.2, 0.3, 0.4, 0.5]
    panel.set_ranking([4, 3, 2, 1, 0], scores, labeled=[0], quality=[0.9, 0.8, 0.7, 0.6, 0.5])
    first = panel.table.item(0, 0)
    panel.table.insertRow(5)  # a row added after the fill (as "U-Net only" rows are)
    panel.set_ranking([1, 0, 2], scores, labeled=[2])

    def row(r):
        return [panel.table.item(r, c).text() for c in range(4)]

    assert panel.table.rowCount() == 3
    assert [row(r) for r in range(3)] == [
        ["1", "0.2000", "", ""],
        ["0", "0.1000", "", ""],
        ["2", "0.3000", "", "labelled"],
    ]
    assert panel.ranked_slices() == [1, 0, 2]
    assert all(
        panel.table.item(r, c).data(Qt.ItemDataRole.UserRole) == z
        for r, z in enumerate([1, 0, 2])
        for c in range(4)
    )
    assert panel.table.item(0, 0) is first  # reused, not rebuilt
    assert panel.table.updatesEnabled()
