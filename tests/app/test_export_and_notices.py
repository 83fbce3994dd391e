"""Found by the new-user pass (benchmarks/new_user_pass.py): an export of the labels to a place
that cannot be written says what to do, as the predictions' export does; timm's import notices
are no pop-ups."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_synfoc.app.controller import AppController
from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.app.messages import message_problems
from napari_synfoc.io.geometry import Geometry


@pytest.mark.parametrize("where", ["/proc/labels.nii.gz", "FILE/labels.nii.gz"])
def test_labels_export_to_an_unwritable_place_says_what_to_do(tmp_path, where):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder", encoding="utf-8")
    target = where.replace("FILE", str(blocker))
    ctl = AppController(jobs=JobRunner("sync"))
    labels = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(ValueError) as info:
        ctl.sessions.export_labels(target, labels, Geometry.identity(3))
    text = str(info.value)
    assert text.startswith(f"Could not write the labels to '{target}': "), text
    assert "Choose a folder you can write to; nothing was changed" in text
    assert not message_problems(text)
    if "FILE" in where:
        assert f"'{blocker}' is a file, not a folder" in text, text


def test_a_writer_problem_that_is_not_the_folder_is_left_as_it_is(tmp_path):
    ctl = AppController(jobs=JobRunner("sync"))
    with pytest.raises(ValueError, match="unsupported file type"):
        ctl.sessions.export_labels(tmp_path / "x.png", np.zeros((3, 8, 8), np.uint8), None)


def test_timm_import_notices_are_hidden_and_nothing_else():
    from napari_synfoc.app.process_tweaks import hide_library_notices

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hide_library_notices()
        warnings.warn(
            "Importing from timm.models.layers is deprecated, please import via timm.layers",
            FutureWarning,
            stacklevel=1,
        )
        warnings.warn("something else will change", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else will change"]
