"""The final sweep replayed on a saved state (benchmarks.correction_study) and the robot's
"box it again" shortcut (Settings.redo_boxes), on hand-made slices with a known-answer prompt
model: each count below is worked out by hand."""

from __future__ import annotations

import numpy as np

from benchmarks import correction_study as C
from benchmarks import effort as E


class RectSegmenter:
    """Masks the box exactly (a known answer)."""

    def segment_with_box(self, chw, box):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        m = np.zeros(chw.shape[-2:], bool)
        m[y0 : y1 + 1, x0 : x1 + 1] = True
        return m


def _volume() -> E.Volume:
    img = np.full((4, 64, 64), 100, np.int16)
    ref = np.zeros((4, 64, 64), np.uint8)
    ref[1:3, 20:40, 20:40] = 1  # a square on slices 1 and 2
    img[ref > 0] = 220
    return E.Volume("squares", img, ref, 2)


def _state(vol: E.Volume) -> np.ndarray:
    lab = np.zeros_like(vol.ref)
    lab[1, 20:30, 20:25] = 1  # slice 1: a corner of the square and three false blobs
    for r in (2, 44, 54):  # 8 x 8 each
        lab[1, r : r + 8, 50:58] = 1
    lab[2] = vol.ref[2]
    lab[2, 20:30, 20:30] = 0  # slice 2: one hole (one stroke: boxing would not be cheaper)
    return lab


def test_replay_counts_brush_only_and_boxing_again(tmp_path):
    vol = _volume()
    path = tmp_path / "squares-loop-s0.npz"
    np.savez_compressed(path, labels=_state(vol), marked=np.array([0, 3]), ensemble=np.zeros(0))
    brush = C.replay(vol, path, redo=False, segmenter_factory=RectSegmenter)
    boxes = C.replay(vol, path, redo=True, segmenter_factory=RectSegmenter)
    # brush only: slice 1 needs the missing part of the square (Dice then 800 / 992 = 0.81
    # with 192 false pixels) and two of the three blobs erased (800 / 864 = 0.93): 3 strokes;
    # slice 2 its hole: 1.  Boxing again: slice 1 gets one box (exact here), slice 2 a stroke
    assert brush["failing_before"] == boxes["failing_before"] == 2
    assert brush["interactions"] == 4 and brush["counts"] == {"brush": 4}
    assert boxes["interactions"] == 2 and boxes["counts"] == {"box": 1, "brush": 1}
    assert brush["failing_after"] == boxes["failing_after"] == 0
    md = C.markdown([brush, boxes], "cmd")
    assert "| squares-loop-s0.npz | 2 | 4 | 2 | 1 | 2 (50%) |" in md


class WrongSegmenter(RectSegmenter):
    """Masks a grid of 4 x 4 blobs all over the slice: a box that makes things worse (each blob
    outside the square is a stroke to erase)."""

    def segment_with_box(self, chw, box):
        m = np.zeros(chw.shape[-2:], bool)
        for r in range(0, 64, 8):
            for c in range(0, 64, 8):
                m[r : r + 4, c : c + 4] = True
        return m


def test_a_box_that_does_not_help_is_undone_but_paid_for(tmp_path):
    vol = _volume()
    path = tmp_path / "squares-loop-s0.npz"
    np.savez_compressed(path, labels=_state(vol), marked=np.array([0, 3]), ensemble=np.zeros(0))
    res = C.replay(vol, path, redo=True, segmenter_factory=WrongSegmenter)
    # the box (1) is undone, then the same 4 strokes as brush only
    assert res["counts"] == {"box": 1, "brush": 4} and res["failing_after"] == 0


def test_trimmed_proposals_lose_their_specks_and_keep_the_users_slices(tmp_path):
    """Slice 1 was labelled before the proposals (a square and a 16-voxel speck the user
    kept); slice 2 came from the proposals (the square and a 16-voxel speck).  Trimmed at 0.1
    of the largest part (800 voxels): slice 2's speck goes, slice 1's stays."""
    vol = _volume()
    lab = vol.ref.copy()
    lab[1, 50:54, 50:54] = 1
    lab[2, 50:54, 5:9] = 1
    out = C.trim_proposals(lab, [1], [1], 0.1)
    assert out[1, 50:54, 50:54].all() and not out[2, 50:54, 5:9].any()
    assert np.array_equal(out[2, 20:40, 20:40], vol.ref[2, 20:40, 20:40])
    assert lab[2, 50, 5] == 1  # the input is not changed
    path = tmp_path / "squares-loop-s0.npz"
    np.savez_compressed(path, labels=lab, marked=np.array([0, 3]), ensemble=np.zeros(0),
                        labeled_before_proposals=np.array([1]))  # fmt: skip
    as_run = C.replay(vol, path, redo=False, segmenter_factory=RectSegmenter)
    trimmed = C.replay(vol, path, redo=False, segmenter_factory=RectSegmenter, min_3d_part=0.1)
    # the specks keep both slices above 0.90 (800 / 832 = 0.96): no stroke either way
    assert as_run["interactions"] == trimmed["interactions"] == 0
    md = C.markdown([as_run, {**as_run, "redo_boxes": True}, trimmed], "cmd")
    assert "| squares-loop-s0.npz | 0.1 | 0 | 0 | 0 (0%) |" in md
