"""`napari-synfoc` with no arguments: napari with the SynFoC dock and the demo sample."""

from __future__ import annotations

import napari

from napari_synfoc import cli


def test_launch_opens_dock_and_sample(monkeypatch, qtbot):
    seen = {}

    def fake_run(*a, **k):
        viewer = napari.current_viewer()
        seen["layers"] = [layer.name for layer in viewer.layers]
        seen["docks"] = list(viewer.window.dock_widgets)
        seen["shape"] = viewer.layers[0].data.shape
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    assert cli.main([]) == 0
    assert "SynFoC demo image" in seen["layers"] and "SynFoC demo labels" in seen["layers"]
    assert any("SynFoC" in name for name in seen["docks"]), seen["docks"]
    assert len(seen["shape"]) == 3
