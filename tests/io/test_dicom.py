"""DICOM: folders split into series (mixed sizes too), left-out files named, single files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.io.readers import (
    list_dicom_series,
    napari_get_reader,
    read_dicom_series,
    read_layer_data,
    read_volume,
)


def test_mixed_sizes_split_and_left_out_files_named(tmp_path, write_dicom_slice):
    """The issue's folder: 5 files of one series UID, 3 of 16x12 and 2 of 10x10, plus a note."""
    rng = np.random.default_rng(0)
    big = rng.integers(-500, 500, (3, 16, 12))
    small = rng.integers(-500, 500, (2, 10, 10))
    for k in range(3):
        write_dicom_slice(tmp_path / f"a{k}.dcm", big[k], 2.0 * k, desc="Axial CT", k=k + 1)
    for k in range(2):
        write_dicom_slice(tmp_path / f"b{k}.dcm", small[k], 2.0 * k, desc="Axial CT", k=k + 10)
    (tmp_path / "notes.txt").write_text("not dicom", encoding="utf-8")

    series, left = list_dicom_series(tmp_path)
    assert [len(s.files) for s in series] == [3, 2]
    assert [s.name for s in series] == ["Axial CT (16x12)", "Axial CT (10x10)"]
    assert left == ["notes.txt"]

    with pytest.warns(UserWarning, match=r"1 file\(s\) not opened .*notes.txt"):
        layers = read_layer_data(tmp_path)
    assert [m["name"] for _, m, _ in layers] == [s.name for s in series]
    np.testing.assert_array_equal(layers[0][0], big)
    np.testing.assert_array_equal(layers[1][0], small)
    np.testing.assert_allclose(layers[0][1]["scale"], (2.0, 0.5, 0.5), atol=1e-5)

    # one series by name or index; the other series' files are named as left out
    with pytest.warns(
        UserWarning, match=r"4 file\(s\) not opened .*a0.dcm, a1.dcm, a2.dcm, notes.txt"
    ):
        arr, g = read_dicom_series(tmp_path, series=1)
    np.testing.assert_array_equal(arr, small)
    with pytest.warns(UserWarning, match="b0.dcm"):
        arr, _ = read_dicom_series(tmp_path, series="Axial CT (16x12)")
    np.testing.assert_array_equal(arr, big)
    with pytest.raises(ValueError, match=r"no series 'nope'; found: Axial CT \(16x12"):
        read_dicom_series(tmp_path, series="nope")


def test_single_dcm_file_opens_with_spacing(tmp_path, write_dicom_slice):
    arr = np.arange(6 * 8, dtype=np.int16).reshape(6, 8)
    p = tmp_path / "one.dcm"
    write_dicom_slice(p, arr, 7.5, spacing=(0.7, 0.9), desc="Scout")
    assert napari_get_reader(str(p)) is not None
    data, g = read_volume(p)
    np.testing.assert_array_equal(data.reshape(6, 8), arr)
    np.testing.assert_allclose(g.spacing[-2:], (0.9, 0.7), atol=1e-6)
    [(layer_data, meta, kind)] = read_layer_data(p)
    assert kind == "image" and meta["name"] == "one"
    np.testing.assert_allclose(meta["scale"][-2:], (0.9, 0.7), atol=1e-6)
    assert meta["affine"][0, -1] == pytest.approx(7.5)  # z position of the slice, mm


def test_folder_without_dicom_names_the_problem(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"not really dicom")
    with pytest.raises(ValueError, match=r"no DICOM series found \(none of its 1 files"):
        read_layer_data(tmp_path)
