"""The plugin touches no private napari attribute: through the viewer napari hands a plugin (a
``PublicOnlyProxy``), every private access warns, so a Train and a Predict, with their overlay
layers built and updated, must not raise any deprecation warning from the plugin's code."""

from __future__ import annotations

import warnings
from pathlib import Path

import napari_synfoc

PLUGIN_DIR = str(Path(napari_synfoc.__file__).resolve().parent)
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _plugin_deprecations(caught) -> list[str]:
    """Deprecation warnings raised in the plugin's code, or napari's private-access warnings
    (only the plugin holds the proxied viewer)."""
    return [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, DEPRECATIONS)
        and (
            str(Path(w.filename).resolve()).startswith(PLUGIN_DIR)
            or "Private attribute access" in str(w.message)
            or "napari" in str(w.message)
        )
    ]


def test_train_and_predict_raise_no_napari_deprecation(
    disc_stack, add_partly_labelled, use_tiny_cpu, close_dock, make_napari_viewer, monkeypatch
):
    monkeypatch.setenv("SYNFOC_BACKEND", "sync")
    viewer = make_napari_viewer()
    img, gt = disc_stack(z=3)
    image, lab = add_partly_labelled(viewer, img, gt, slices=(1,))
    _, widget = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    # the viewer a plugin gets warns on private access; that is what this test relies on
    assert type(widget.viewer).__name__ == "PublicOnlyProxy"
    use_tiny_cpu(widget, predict_every=0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert widget.train(iterations=1) and widget.wait(120)
            assert widget.outcome == "done", widget.last_message
            assert "Consensus (M_c)" in viewer.layers  # the overlays were built
            for _ in range(2):  # a Predict updates the existing overlay layers
                assert widget.sessions.predict() and widget.wait(120)
                assert widget.outcome == "done", widget.last_message
        assert widget.prediction_updates >= 3
        found = _plugin_deprecations(caught)
        assert not found, "\n".join(found)
    finally:
        close_dock(widget)
