"""Atomic checkpoint files and clear errors for bad ones."""

from __future__ import annotations

import errno
import os
import tempfile

import numpy as np
import pytest
import torch

from napari_synfoc.core.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    load_checkpoint,
    save_checkpoint,
)


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
    with pytest.raises(CheckpointError, match="not a napari-synfoc session or model"):
        load_checkpoint(foreign)


class _Crafted:
    """Unpickling this object opens (creates) ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle-2", "raw-pickle-4"])
def test_crafted_file_is_refused_and_runs_nothing(tmp_path, container):
    import pickle

    marker = tmp_path / "pwned"
    payload = {"format": "napari-synfoc/1", "config": {}, "x": _Crafted(marker)}
    bad = tmp_path / "session.pt"
    if container == "torch-zip":
        torch.save(payload, bad)
    else:
        bad.write_bytes(pickle.dumps(payload, protocol=int(container[-1])))
        # the crafted file really does run code under an unrestricted unpickler
        pickle.loads(bad.read_bytes())
        assert marker.exists()
        marker.unlink()
    # protocol 4: torch stops at the framing, before any global; the opcodes still name it
    match = r"refused to open '.*session\.pt'.*\(\w*\.?open\) that could run code"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(bad)
    assert not marker.exists()


def test_trainer_checkpoint_loads_with_weights_only(tmp_path):
    """Everything a real run saves (models, optimisers, RNG states, config, session fields) is
    plain data that ``weights_only=True`` accepts."""
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Done
    from napari_synfoc.core.interactive import (
        StackTask,
        read_session,
        save_session,
        train_on_stack,
    )

    rng = np.random.default_rng(0)
    img = rng.random((4, 32, 32), dtype=np.float32)
    lab = (img > 0.5).astype(np.uint8)
    cfg = make_config("tiny", iterations=1, model_selection="val", val_fraction=0.5)
    ev = list(train_on_stack(StackTask(img, lab, [0, 1]), cfg, out_dir=tmp_path, predict_every=0))
    assert isinstance(ev[-1], Done), ev[-1]
    raw = torch.load(ev[-1].checkpoint, weights_only=True)
    assert raw["format"] == "napari-synfoc/1" and raw["iteration"] == 1
    sess = save_session(ev[-1].checkpoint, tmp_path / "s.synfoc", [0, 1], img.shape)
    info = read_session(sess)
    assert info["labeled_slices"] == [0, 1] and info["image_shape"] == [4, 32, 32]


def _disk_full(obj, fh):
    fh.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")


def _read_only(*a, **k):  # root ignores chmod, so the refusal is simulated at the syscall
    raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize(
    "target, name, fail, match",
    [
        (torch, "save", _disk_full, r"ck\.pt.*disk is full.*previous file"),
        (tempfile, "mkstemp", _read_only, r"cannot be written.*another folder"),
    ],
    ids=["disk-full", "read-only"],
)
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, target, name, fail, match):
    p = save_checkpoint(tmp_path / "ck.pt", {"iteration": 1, "w": torch.ones(100)})
    monkeypatch.setattr(target, name, fail)
    with pytest.raises(CheckpointWriteError, match=match):
        save_checkpoint(p, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(p)["iteration"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_failed_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path / "ck.pt", {"iteration": 1})

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(CheckpointWriteError):
        save_checkpoint(p, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(p)["iteration"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_write_errors_read_without_errno_prefix(tmp_path, monkeypatch, code):
    """Issue 23: the message a user sees has no '[Errno 30]' prefix and no exception name."""

    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", fail)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(tmp_path / "ck.pt", {"iteration": 1})
    text = str(info.value)
    assert text.startswith("cannot write checkpoint '") and "Errno" not in text, text
    assert "OSError" not in text and info.value.errno == code
    if code == errno.EIO:
        assert text.endswith(f": {os.strerror(code)}")
