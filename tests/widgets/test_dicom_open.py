"""The dock's "Open DICOM series…": one series or all of a mixed folder, files left out named."""

from __future__ import annotations

import numpy as np

from napari_synfoc.widgets.dicom_open import ALL_SERIES, DicomSeriesButton, series_labels


def _mixed_folder(folder, write):
    rng = np.random.default_rng(0)
    for k in range(3):
        write(
            folder / f"a{k}.dcm", rng.integers(-500, 500, (16, 12)), 2.0 * k, desc="Axial", k=k + 1
        )
    for k in range(2):
        write(
            folder / f"b{k}.dcm", rng.integers(-500, 500, (10, 10)), 2.0 * k, desc="Axial", k=k + 9
        )
    (folder / "notes.txt").write_text("not dicom", encoding="utf-8")


def test_pick_one_series_or_all(tmp_path, write_dicom_slice, make_napari_viewer, qtbot):
    _mixed_folder(tmp_path, write_dicom_slice)
    labels, series = series_labels(str(tmp_path))
    assert len(series) == 2 and labels[-1] == ALL_SERIES
    # the picker shows each series' own label (frames counted once, "1 slice" in the singular)
    assert labels[:-1] == [s.label for s in series]
    assert labels[0].endswith("(3 slices)") and "slices) (" not in " ".join(labels)
    viewer = make_napari_viewer()
    said: list[tuple[str, bool]] = []
    button = DicomSeriesButton(viewer, lambda text, error=False: said.append((text, error)))
    qtbot.addWidget(button)

    # the second series only: one layer of 2 slices; the other series' files and the note named
    layers = button.choose(str(tmp_path), 1)
    assert len(layers) == 1 and layers[0].data.shape == (2, 10, 10)
    text, error = said[-1]
    assert not error and "notes.txt" in text and "a0.dcm" in text

    # all series: one layer each
    layers = button.choose(str(tmp_path), len(series))
    assert sorted(ly.data.shape for ly in layers) == [(2, 10, 10), (3, 16, 12)]
    assert len(viewer.layers) == 3


def test_the_dialog_choice_is_used_and_cancel_adds_nothing(
    tmp_path, write_dicom_slice, make_napari_viewer, qtbot, monkeypatch
):
    from qtpy.QtWidgets import QInputDialog

    _mixed_folder(tmp_path, write_dicom_slice)
    viewer = make_napari_viewer()
    button = DicomSeriesButton(viewer, lambda *a, **k: None)
    qtbot.addWidget(button)
    labels, _ = series_labels(str(tmp_path))
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (labels[0], True))
    assert [ly.data.shape for ly in button.choose(str(tmp_path))] == [(3, 16, 12)]
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("", False))
    assert button.choose(str(tmp_path)) == [] and len(viewer.layers) == 1


def test_a_folder_without_dicom_says_so(tmp_path, make_napari_viewer, qtbot):
    (tmp_path / "x.txt").write_text("no", encoding="utf-8")
    said: list[tuple[str, bool]] = []
    button = DicomSeriesButton(
        make_napari_viewer(), lambda t, error=False: said.append((t, error))
    )
    qtbot.addWidget(button)
    assert button.choose(str(tmp_path), -1) == []
    assert said and said[-1][1] is True and str(tmp_path) in said[-1][0]
