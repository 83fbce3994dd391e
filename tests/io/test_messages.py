"""I/O messages in a user's words (issue 23 item 13): no errno prefixes, no numpy reprs."""

from __future__ import annotations

import errno
import os
import tempfile

import numpy as np
import pytest

from napari_synfoc.io.geometry import Geometry, SynFoCIOError
from napari_synfoc.io.writers import napari_write_labels, write_volume


def _clean(text: str) -> str:
    for bad in ("Errno", "np.float", "np.int", "OSError", "RuntimeError"):
        assert bad not in text, (bad, text)
    return text


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.EROFS, "the folder cannot be written (read-only or no permission)"),
        (errno.EACCES, "the folder cannot be written (read-only or no permission)"),
        (errno.ENOSPC, "the disk is full"),
    ],
)
def test_write_into_a_folder_that_refuses(tmp_path, monkeypatch, code, words):
    """Was: the raw OSError '[Errno 30] Read-only file system: ...' reached napari."""

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code), str(tmp_path / ".synfoc-tmp-x"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(SynFoCIOError) as info:
        write_volume(tmp_path / "seg.nii.gz", np.zeros((2, 4, 4), np.uint8), labels=True)
    text = _clean(str(info.value))
    assert text.startswith("cannot write 'seg.nii.gz': ") and words in text
    assert os.listdir(tmp_path) == []


def test_zero_voxel_size_is_named_with_plain_numbers(tmp_path):
    meta = {"name": "seg", "scale": [0.0, 1.0, 1.0], "metadata": {}}
    with pytest.raises(SynFoCIOError) as info:
        napari_write_labels(str(tmp_path / "seg.nii.gz"), np.zeros((2, 4, 4), np.uint8), meta)
    text = _clean(str(info.value))
    assert "zero or non-finite voxel size (0, 1, 1)" in text
    with pytest.raises(ValueError) as info:
        Geometry.from_affine(np.diag([1.0, np.inf, 2.5, 1.0]))
    assert "voxel size (1, inf, 2.5)" in _clean(str(info.value))


def test_a_write_error_names_the_folder(tmp_path, monkeypatch):
    """Was: "cannot write 'labels.nii.gz': No such file or directory" (which folder?)."""

    def refuse(*a, **k):
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(tmp_path / ".synfoc-tmp-x"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(SynFoCIOError) as info:
        write_volume(tmp_path / "labels.nii.gz", np.zeros((2, 4, 4), np.uint8), labels=True)
    text = _clean(str(info.value))
    assert "No such file or directory" in text and str(tmp_path) in text
