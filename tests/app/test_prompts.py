"""The prompt controller headless: no napari, no Qt.  The tiny random prompt model for the real
prompt path; a rectangle "segmenter" where a test needs to know the mask exactly."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.app.jobs import JobRunner
from napari_synfoc.app.prompts import PromptController
from napari_synfoc.core.label_edit import apply_edit, revert
from napari_synfoc.core.review import review_maps

Z, H, W = 6, 64, 64


class RectSegmenter:
    """Masks the box exactly; points add / remove a 3×3 square (a known answer)."""

    def __init__(self):
        self.calls = []

    def segment_with_box(self, chw, box):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        m = np.zeros(chw.shape[-2:], bool)
        m[y0 : y1 + 1, x0 : x1 + 1] = True
        self.calls.append(("box", tuple(box)))
        return m

    def segment_with_points(self, chw, xy, labels, mask=None, box=None):
        m = np.zeros(chw.shape[-2:], bool) if mask is None else mask.copy()
        for (x, y), lab in zip(xy, labels, strict=True):
            m[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = bool(lab)
        self.calls.append(("points", len(xy)))
        return m


@pytest.fixture(scope="module")
def tiny():
    from napari_synfoc.core.prompting import PromptSegmenter

    return PromptSegmenter("tiny", size=64, seed=0, precision="fp32")


def _ctl(seg):
    said = []
    c = PromptController(lambda t, e=False: said.append((t, e)), lambda: seg, JobRunner("sync"))
    return c, said


def test_box_prompt_on_the_tiny_model_edits_one_slice_and_class_and_reverts_exactly(
    prompt_image, rect, tiny
):
    c, said = _ctl(tiny)
    img = prompt_image
    labels = np.zeros((Z, H, W), np.int32)
    labels[2, :5, :5] = 2  # another class on the prompted slice
    labels[3] = 1  # another slice
    before = labels.copy()
    pe = c.prompt(img, labels, 2, box=rect(2, 20, 15, 45, 50), cls=1)
    assert pe is not None and pe.slices == [2] and pe.mask.any()
    assert np.all(pe.edit.indices[0] == 2) and set(pe.edit.new_values.tolist()) <= {0, 1}
    apply_edit(labels, pe.edit)
    assert (labels[2] == 1).sum() > 0
    assert np.array_equal(labels[2, :5, :5], before[2, :5, :5])  # class 2 kept
    assert np.array_equal(np.delete(labels, 2, 0), np.delete(before, 2, 0))
    revert(labels, pe.edit)
    assert np.array_equal(labels, before)
    assert not said[-1][1] and "Ctrl-Z" in said[-1][0]


def test_replace_and_add_semantics_and_points_refine_the_last_mask(prompt_image, rect):
    img = prompt_image
    for mode in ("replace", "add"):
        c, _ = _ctl(RectSegmenter())
        c.mode = mode
        labels = np.zeros((Z, H, W), np.uint8)
        labels[1, 60:, 60:] = 1  # painted class 1 outside the coming box
        pe = c.prompt(img, labels, 1, box=rect(1, 10, 10, 20, 20), cls=1)
        apply_edit(labels, pe.edit)
        assert (labels[1, 10:21, 10:21] == 1).all()
        assert (labels[1, 60:, 60:] == 1).all() == (mode == "add")
        # a negative point inside the box mask removes a 3x3 square of it (box + points)
        pe = c.prompt(
            img, labels, 1, box=rect(1, 10, 10, 20, 20), points=[[1, 15, 15]], point_labels=[0]
        )
        apply_edit(labels, pe.edit)
        assert (labels[1, 14:17, 14:17] == 0).all() and labels[1, 10, 10] == 1
        assert (labels[1, 60:, 60:] == 1).all() == (mode == "add")
        # points alone refine the base (the box mask) of this slice: the last hole is re-filled
        pe = c.prompt(img, labels, 1, points=[[1, 12, 12]], point_labels=[0])
        apply_edit(labels, pe.edit)
        assert labels[1, 15, 15] == 1 and (labels[1, 11:14, 11:14] == 0).all()


def test_bad_prompts_give_a_message_and_change_nothing(prompt_image, rect, tiny):
    c, said = _ctl(tiny)
    img = prompt_image
    labels = np.zeros((Z, H, W), np.int32)
    cases = {
        "outside": dict(box=rect(2, 100, 100, 120, 120)),
        "zero-area": dict(box=rect(2, 10, 10, 10, 30)),
        "another slice": dict(points=[[4, 10, 10]], point_labels=[1]),
        "not on slice 2": dict(box=rect(3, 10, 10, 20, 20)),
        "No prompt": dict(),
    }
    for words, kw in cases.items():
        assert c.prompt(img, labels, 2, **kw) is None, words
        assert said[-1][1] and words.lower() in said[-1][0].lower(), said[-1]
        assert "slice 2" in said[-1][0] or "slice" in said[-1][0]
    assert c.prompt(None, labels, 2, box=rect(2, 5, 5, 20, 20)) is None
    assert "No image" in said[-1][0]
    assert c.prompt(img, None, 2, box=rect(2, 5, 5, 20, 20)) is None
    assert "No Labels layer" in said[-1][0]
    assert c.prompt(img, labels[:, :10], 2, box=rect(2, 5, 5, 20, 20)) is None
    assert "does not match" in said[-1][0]
    assert c.last is None and not labels.any()


def _maps(labels_shape):
    """Review maps: MedSAM (and the ensemble) say class 1 in one square, the U-Net in another."""
    z, h, w = labels_shape
    fm = np.zeros((z, 2, h, w), np.float32)
    un = np.zeros_like(fm)
    fm[:, 0] = 1
    un[:, 0], un[:, 1] = 0.6, 0.4
    fm[:, 0, 10:20, 10:20], fm[:, 1, 10:20, 10:20] = 0.1, 0.9  # the ensemble follows MedSAM
    un[:, 0, 30:40, 30:40], un[:, 1, 30:40, 30:40] = 0.0, 1.0
    return review_maps(fm, un, rule="argmax")


def test_fix_region_accepts_the_chosen_model_in_one_connected_region_only():
    c, said = _ctl(RectSegmenter())
    labels = np.zeros((Z, H, W), np.int32)
    maps = _maps(labels.shape)
    assert c.fix_region(labels, 2, (2, 15, 15), None) is None and "No predictions" in said[-1][0]
    assert c.fix_region(labels, 2, (2, 50, 50), maps, "medsam") is None
    assert "No disagreement" in said[-1][0]
    pe = c.fix_region(labels, 2, (2, 15, 15), maps, "medsam")
    apply_edit(labels, pe.edit)
    assert (labels[2, 10:20, 10:20] == 1).all() and labels.sum() == 100  # only that region
    # the U-Net says background there: accepting it in the region undoes MedSAM's square
    pe = c.fix_region(labels, 2, (2, 12, 12), maps, "unet")
    apply_edit(labels, pe.edit)
    assert labels.sum() == 0
    # the U-Net's own region on another slice, with the click on that slice
    pe = c.fix_region(labels, 4, (4, 35, 35), maps, "unet")
    apply_edit(labels, pe.edit)
    assert (labels[4, 30:40, 30:40] == 1).all() and labels.sum() == 100


def test_reprompt_seeded_with_the_ensemble(prompt_image, tiny):
    seg = RectSegmenter()
    c, _ = _ctl(seg)
    img = prompt_image
    labels = np.zeros((Z, H, W), np.int32)
    maps = _maps(labels.shape)
    pe = c.reprompt_from_ensemble(img, labels, 3, (3, 15, 15), False, maps)
    seed = maps.ensemble_label[3] == 1
    expect = seed.copy()
    expect[14:17, 14:17] = False
    assert np.array_equal(pe.mask, expect) and c.base.source == "ensemble seed"
    c2, _ = _ctl(tiny)  # the real prompt path runs on the tiny model
    pe = c2.reprompt_from_ensemble(img, labels, 3, (3, 15, 15), True, maps)
    assert pe is not None and pe.mask.shape == (H, W)


def test_propagation_proposals_accept_all_one_edit_and_cancel_keeps_whole_slices(
    prompt_image, rect, tiny
):
    c, said = _ctl(tiny)
    img = prompt_image
    labels = np.zeros((Z, H, W), np.int32)
    got = []
    boxes = [rect(1, 15, 15, 45, 45), rect(4, 20, 20, 50, 50)]
    assert c.propagation.start(img, labels.shape, boxes, on_slice=lambda *a: got.append(a))
    assert sorted(c.propagation.proposals) == [1, 2, 3, 4] and [g[2] for g in got] == [1, 2, 3, 4]
    assert c.propagation.outcome == "done" and c.propagation.plan[1][0] == 15.0
    pe = c.propagation.accept(labels)
    assert pe.slices == [1, 2, 3, 4] and set(np.unique(pe.edit.indices[0])) <= {1, 2, 3, 4}
    apply_edit(labels, pe.edit)
    assert all(labels[z].any() for z in (1, 2, 3, 4)) and not labels[[0, 5]].any()
    assert c.propagation.proposals == {}
    # cancel after the second slice: only whole slices, fewer than planned
    c2, _ = _ctl(tiny)
    c2.propagation.start(
        img, labels.shape, boxes, on_slice=lambda z, m, d, t: d == 2 and c2.propagation.stop()
    )
    assert c2.propagation.outcome == "cancelled" and sorted(c2.propagation.proposals) == [1, 2]
    for z, m in c2.propagation.proposals.items():
        assert np.array_equal(
            m, tiny.segment_with_box(c2.prepared(img, False)[z], c2.propagation.plan[z])
        )


def test_propagation_and_accept_refuse_bad_input(prompt_image, rect, tiny):
    c, said = _ctl(tiny)
    img = prompt_image
    shape = (Z, H, W)
    assert not c.propagation.start(img, shape, [rect(1, 5, 5, 20, 20)])
    assert "at least two slices" in said[-1][0]
    assert not c.propagation.start(img, shape, [rect(1, 5, 5, 20, 20), rect(1, 6, 6, 9, 9)])
    assert "two boxes on slice 1" in said[-1][0]
    assert not c.propagation.start(img, shape, [rect(1, 5, 5, 20, 20), rect(3, 5, 5, 5, 9)])
    assert "box on slice 3" in said[-1][0] and "zero-area" in said[-1][0]
    assert not c.propagation.start(img[0], (H, W), [])
    assert "2-D" in said[-1][0]
    assert not c.propagation.start(None, shape, [])
    assert (
        c.propagation.accept(np.zeros(shape, np.int32)) is None and "No proposals" in said[-1][0]
    )


class RecordingSegmenter(RectSegmenter):
    """The rectangle segmenter that also keeps the slice each box prompt saw."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def segment_with_box(self, chw, box):
        self.seen.append(np.array(chw))
        return super().segment_with_box(chw, box)


def test_prompts_see_the_image_through_the_docks_intensity_window(rect):
    """With a window set (a CT preset), the prompted slice is the window's clip-and-rescale of
    the raw values; the cache follows a change of window."""
    img = np.full((Z, H, W), -1000, np.int16)
    img[:, 20:40, 20:40] = 40  # soft tissue
    img[:, 45:50, 45:50] = 1500  # bone
    seg = RecordingSegmenter()
    c, _ = _ctl(seg)
    labels = np.zeros((Z, H, W), np.int32)
    assert c.prompt(img, labels, 2, box=rect(2, 20, 20, 40, 40)) is not None
    c.window = (-160.0, 240.0)
    assert c.prompt(img, labels, 2, box=rect(2, 20, 20, 40, 40)) is not None
    auto, windowed = seg.seen
    # soft tissue: (40 + 160) / 400 = 0.5 in the window; air 0 and bone 1 (clipped)
    np.testing.assert_allclose(windowed[0, 30, 30], 0.5, atol=1e-6)
    assert windowed[0, 0, 0] == 0.0 and windowed[0, 47, 47] == 1.0
    assert abs(auto[0, 30, 30] - 0.5) > 0.05  # the percentile stretch puts it elsewhere


def test_proposals_from_the_models_box_each_part_and_accept_as_one_edit(prompt_image):
    seg = RectSegmenter()
    c, said = _ctl(seg)
    ens = np.zeros((Z, H, W), np.uint8)
    ens[1, 10:20, 10:20] = 1  # one part: SAM's box (extent +- 2 px) replaces it (IoU 0.51)
    ens[2, 30:40, 5:15] = 1
    ens[2, 50:60, 50:60] = 2  # another class: not proposed for class 1
    labels = np.zeros((Z, H, W), np.int32)
    assert c.propagation.start_from_models(prompt_image, labels.shape, ens, [1, 2, 3], cls=1)
    assert c.propagation.outcome == "done" and sorted(c.propagation.proposals) == [1, 2, 3]
    assert sorted(b for _, b in seg.calls) == [(3.0, 28.0, 16.0, 41.0), (8.0, 8.0, 21.0, 21.0)]
    p1 = c.propagation.proposals[1]
    assert p1[8:22, 8:22].all() and p1.sum() == 14 * 14
    assert not c.propagation.proposals[3].any()  # the models found nothing there
    ens[1] = 0  # later predictions change the maps in place: the proposals keep their rows
    pe = c.propagation.accept(labels)
    assert pe.slices == [1, 2, 3]
    apply_edit(labels, pe.edit)
    assert labels[1].sum() == 14 * 14 and labels[2].sum() == 14 * 14 and not labels[2, 50:].any()
    assert "Proposals from the models" in said[-2][0] and "3 of 3 slices" in said[-2][0]


def test_proposals_from_the_models_refuse_without_predictions_or_matching_shapes(prompt_image):
    c, said = _ctl(RectSegmenter())
    shape = (Z, H, W)
    ens = np.zeros(shape, np.uint8)
    assert not c.propagation.start_from_models(prompt_image, shape, None, [1])
    assert "Train first" in said[-1][0] and said[-1][1]
    assert not c.propagation.start_from_models(prompt_image, (Z, H, W + 1), ens, [1])
    assert "does not match" in said[-1][0]
    assert not c.propagation.start_from_models(prompt_image, shape, ens, [])
    assert "every predicted slice is labelled" in said[-1][0]
    assert not c.propagation.start_from_models(None, shape, ens, [1])
    assert "No image" in said[-1][0] and c.propagation.proposals == {}


def test_proposals_from_the_models_stay_inside_the_labelled_extent(prompt_image):
    """Issue 21: labelled slices 1 (class 1) and 3 (no class 1) bound class 1 to slices 0..2,
    so slices 4 and 5 get no proposal although the models predict it there; with the switch
    off they do; a class labelled nowhere is not bounded."""
    ens = np.zeros((Z, H, W), np.uint8)
    ens[:, 10:20, 10:20] = 1  # the models see class 1 on every slice
    labels = np.zeros((Z, H, W), np.int32)
    labels[1, 10:20, 10:20] = 1
    labels[3, 40:50, 40:50] = 2  # labelled, without class 1
    c, said = _ctl(RectSegmenter())
    args = (prompt_image, labels.shape, ens, [0, 2, 4, 5])
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[1, 3])
    assert sorted(c.propagation.proposals) == [0, 2] and c.propagation.skipped == [4, 5]
    assert "extent 0..2 (2 slices beyond it left out)" in said[-2][0]
    # every slice outside: a refusal that says why, and no proposals made up
    assert not c.propagation.start_from_models(
        prompt_image, labels.shape, ens, [4, 5], cls=1, labels=labels, labeled=[1, 3]
    )
    assert "outside" in said[-1][0] and said[-1][1] and c.propagation.skipped == [4, 5]
    c.propagation.within_labelled_extent = False
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[1, 3])
    assert sorted(c.propagation.proposals) == [0, 2, 4, 5] and c.propagation.skipped == []
    c.propagation.within_labelled_extent = True  # class 3: labelled nowhere, not bounded
    assert c.propagation.start_from_models(*args, cls=3, labels=labels, labeled=[1, 3])
    assert sorted(c.propagation.proposals) == [0, 2, 4, 5]


def test_proposals_from_the_models_drop_small_3d_parts_when_asked(prompt_image):
    """Issue 21: with ``min_part_fraction`` the proposals lose the 3-D parts (with the labels)
    under that fraction of the largest and holding no labelled voxel, in the worker, after
    every slice is proposed; the user's labels are never touched.  0 keeps every part."""
    ens = np.zeros((Z, H, W), np.uint8)
    ens[:, 10:20, 10:20] = 1  # a 10 x 10 tube through every slice
    ens[3, 40:45, 40:45] = 1  # a 25-voxel speck on slice 3
    labels = np.zeros((Z, H, W), np.int32)
    labels[0, 10:20, 10:20] = 1
    c, said = _ctl(RectSegmenter())
    args = (prompt_image, labels.shape, ens, [1, 2, 3, 4, 5])
    from napari_synfoc.config import PROPOSALS_MIN_3D_PART

    assert c.propagation.min_part_fraction == PROPOSALS_MIN_3D_PART == 0.05
    c.propagation.min_part_fraction = 0.0
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[0])
    assert c.propagation.proposals[3][40:45, 40:45].any() and c.propagation.dropped_parts == 0
    c.propagation.min_part_fraction = 0.1  # 25 < 0.1 * 6 slices * 196 (the tube's box)
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[0])
    p = c.propagation.proposals
    assert sorted(p) == [1, 2, 3, 4, 5] and not p[3][40:, 40:].any() and p[3][10:20, 10:20].all()
    assert c.propagation.dropped_parts == 1 and "1 small 3-D parts left out" in said[-1][0]
    assert labels[0].sum() == 100 and not labels[1:].any()


def test_proposals_from_the_models_fill_between_labelled_slices_holding_the_class(prompt_image):
    """Issue 21: class 1 labelled on slices 0 (4 x 4) and 4 (12 x 12, same centre): slices 1..3
    get the interpolation (6 x 6, 8 x 8, 10 x 10) and no model call; slice 5 (past the last
    labelled slice) gets the models' mask.  Switched off, every slice is the models'."""
    from napari_synfoc.config import PROPOSALS_FILL_BETWEEN

    labels = np.zeros((Z, H, W), np.int32)
    labels[0, 28:32, 28:32] = 1
    labels[4, 24:36, 24:36] = 1
    labels[4, 50:60, 50:60] = 2  # another class: not part of class 1's fill
    ens = np.zeros((Z, H, W), np.uint8)
    ens[:, 5:15, 5:15] = 1  # the models see class 1 elsewhere
    seg = RectSegmenter()
    c, said = _ctl(seg)
    assert c.propagation.fill_between is PROPOSALS_FILL_BETWEEN is True
    c.propagation.min_part_fraction = 0.0
    args = (prompt_image, labels.shape, ens, [1, 2, 3, 5])
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[0, 4])
    p = c.propagation.proposals
    for z, size in ((1, 6), (2, 8), (3, 10)):
        want = np.zeros((H, W), bool)
        lo = 30 - size // 2
        want[lo : lo + size, lo : lo + size] = True
        assert np.array_equal(p[z], want), z
    assert p[5][5:15, 5:15].all() and not p[5][20:, 20:].any()  # the models' box on slice 5
    assert len(seg.calls) == 1 and sorted(c.propagation.interpolated) == [1, 2, 3]
    assert "3 slices filled between labelled slices" in said[-1][0]
    before = labels.copy()
    pe = c.propagation.accept(labels)
    apply_edit(labels, pe.edit)
    assert pe.slices == [1, 2, 3, 5] and labels[2].sum() == 64
    assert np.array_equal(labels[[0, 4]], before[[0, 4]])  # the user's slices untouched
    c.propagation.fill_between = False
    labels = before
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[0, 4])
    assert c.propagation.interpolated == [] and len(seg.calls) == 5
    assert all(c.propagation.proposals[z][5:15, 5:15].all() for z in (1, 2, 3, 5))


def test_slices_accepted_from_one_class_proposals_do_not_bound_another_class(prompt_image):
    """Issue 21: after class 1's proposals are accepted on slices 1..3, they are labelled, but
    only for class 1: class 2 (labelled on 0 and 4) is still filled between 0 and 4 and its
    extent is not cut at slice 1.  A slice that holds class 2 still speaks for it."""
    labels = np.zeros((Z, H, W), np.int32)
    labels[[0, 4], 10:20, 10:20] = 1
    labels[[0, 4], 40:50, 40:50] = 2
    ens = np.zeros((Z, H, W), np.uint8)
    ens[:, 10:20, 10:20] = 1
    c, _ = _ctl(RectSegmenter())
    c.propagation.min_part_fraction = 0.0
    args = (prompt_image, labels.shape, ens, [1, 2, 3])
    assert c.propagation.start_from_models(*args, cls=1, labels=labels, labeled=[0, 4])
    apply_edit(labels, c.propagation.accept(labels).edit)
    assert c.propagation.accepted == {1: {1, 2, 3}}
    labeled = [0, 1, 2, 3, 4]  # the dock's labelled slices now
    assert c.propagation.labeled_for(labels, labeled, 2) == [0, 4]
    assert c.propagation.labeled_for(labels, labeled, 1) == labeled
    assert c.propagation.start_from_models(*args, cls=2, labels=labels, labeled=labeled)
    assert sorted(c.propagation.interpolated) == [1, 2, 3] and c.propagation.skipped == []
    assert all(c.propagation.proposals[z][40:50, 40:50].all() for z in (1, 2, 3))
    labels[2, 40:50, 40:50] = 2  # the user paints class 2 on slice 2: it speaks for class 2
    assert c.propagation.labeled_for(labels, labeled, 2) == [0, 2, 4]
