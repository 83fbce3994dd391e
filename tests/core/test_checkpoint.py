"""Atomic checkpoint files and clear errors for bad ones."""

from __future__ import annotations

import os

import pytest
import torch

from napari_synfoc.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_and_format_tag(tmp_path):
    p = save_checkpoint(tmp_path / "a" / "ck.pt", {"iteration": 3, "w": torch.arange(4)})
    state = load_checkpoint(p)
    assert state["iteration"] == 3 and torch.equal(state["w"], torch.arange(4))
    assert state["format"].startswith("napari-synfoc/")
    assert [f for f in os.listdir(p.parent) if f.endswith(".tmp")] == []


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "ck.pt", {"iteration": 1})

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(p)["iteration"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_bad_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="junk.pt.*truncated or corrupt"):
        load_checkpoint(junk)
    good = save_checkpoint(tmp_path / "good.pt", {"x": torch.zeros(1000)})
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(trunc)
    foreign = tmp_path / "sam.pth"
    torch.save({"image_encoder.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a napari-synfoc checkpoint"):
        load_checkpoint(foreign)
