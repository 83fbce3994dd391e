"""Opening medical files from a script (issue 23 item 14): once napari has loaded the plugin,
``viewer.open(path, plugin=None)`` (and File > Open, drag and drop) read them with SynFoC,
spacing as scale, without napari's "choose a reader" question."""

from __future__ import annotations

import os

import numpy as np
import pytest
import SimpleITK as sitk

pytestmark = pytest.mark.gui
PLUGIN = "napari-synfoc"


@pytest.fixture
def private_settings(monkeypatch):
    """A never-saved napari settings object: the user's settings file is not touched."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.setattr(napari.settings, "_SETTINGS", NapariSettings(config_path=None))
    return napari.settings.get_settings()


def _volume(path):
    img = sitk.GetImageFromArray(np.arange(3 * 8 * 6, dtype=np.int16).reshape(3, 8, 6))
    img.SetSpacing((0.5, 0.7, 2.0))
    sitk.WriteImage(img, str(path))


def test_open_without_a_plugin_name_after_napari_loaded_the_plugin(
    make_napari_viewer, tmp_path, private_settings
):
    from napari.errors import MultipleReaderError
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    pm.deactivate(PLUGIN)  # as in a fresh napari: an earlier test may have run a command
    viewer = make_napari_viewer()
    nii, mha = tmp_path / "ct.nii.gz", tmp_path / "mr.mha"
    _volume(nii)
    _volume(mha)
    # napari alone cannot choose between its built-in reader and ours
    with pytest.raises(MultipleReaderError):
        viewer.open(str(nii), plugin=None)
    # napari loads the plugin when it first runs one of its commands (a reader, the dock...)
    first = tmp_path / "first.nrrd"
    _volume(first)
    viewer.open(str(first), plugin=PLUGIN)
    assert private_settings.plugins.extension2reader["*.nii.gz"] == PLUGIN
    for path in (nii, mha):
        [layer] = viewer.open(str(path), plugin=None)
        assert layer.metadata["synfoc_source"] == os.path.abspath(path)
        np.testing.assert_allclose(layer.scale, (2.0, 0.7, 0.5), atol=1e-6)


def test_activation_keeps_a_choice_the_user_made(private_settings):
    from napari_synfoc.io.readers import on_activate

    private_settings.plugins.extension2reader = {"*.mha": "someone-else"}
    on_activate(None)
    prefs = private_settings.plugins.extension2reader
    assert prefs["*.mha"] == "someone-else" and prefs["*.nii.gz"] == PLUGIN
