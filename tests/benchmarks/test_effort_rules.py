"""The robot annotator's counting and stop rules (benchmarks.effort_rules) on hand-made cases."""

import numpy as np
import pytest

from benchmarks.effort_rules import (
    Ledger,
    box_vertices,
    boxes_for_slice,
    class_dice,
    click_for,
    correction_plan,
    error_regions,
    failing_slices,
    interaction_cap,
    mean_class_dice,
    slice_ok,
    visit_action,
)


def _square(shape, r0, c0, n, value=1, dtype=np.uint8):
    a = np.zeros(shape, dtype)
    a[r0 : r0 + n, c0 : c0 + n] = value
    return a


def test_class_dice_and_empty():
    ref = _square((10, 10), 0, 0, 4)  # 16 px
    lab = _square((10, 10), 0, 0, 2)  # 4 px inside
    assert class_dice(lab, ref, 1) == pytest.approx(2 * 4 / 20)
    assert class_dice(lab, ref, 2) == 1.0  # neither holds class 2


def test_slice_ok_target_and_empty_rule():
    ref = _square((20, 20), 0, 0, 10)  # 100 px
    lab = ref.copy()
    lab[0, :9] = 0  # 9 px missing: Dice 2*91/191 = 0.9529
    assert slice_ok(lab, ref, [1])
    lab[:, 0] = 0  # 9 + 9 more... 18 px missing: 2*82/182 = 0.901
    assert slice_ok(lab, ref, [1])
    lab[1, 1] = 0  # 83 -> 81 in common? one more pixel gone: 2*81/181 = 0.895
    assert not slice_ok(lab, ref, [1])
    empty = np.zeros((20, 20), np.uint8)
    assert slice_ok(_square((20, 20), 0, 0, 4) + 0, empty, [1]) is True  # 16 px <= 20
    assert not slice_ok(_square((20, 20), 0, 0, 5), empty, [1])  # 25 px > 20


def test_stop_rule_is_per_class():
    ref = np.zeros((2, 10, 10), np.uint8)
    ref[0] = _square((10, 10), 0, 0, 5)  # class 1 on slice 0
    lab = ref.copy()
    lab[0] += _square((10, 10), 6, 6, 4, value=2)  # 16 px of class 2 where ref has none: allowed
    assert failing_slices(lab, ref, 3) == []
    lab[1] = _square((10, 10), 0, 0, 5, value=2)  # 25 px of class 2 on an empty slice
    assert failing_slices(lab, ref, 3) == [1]
    assert mean_class_dice(lab, ref, 3) == {1: 1.0}


def test_error_regions_split_by_value_and_sorted():
    ref = np.zeros((10, 10), np.uint8)
    ref[0:3, 0:4] = 1  # 12 px missed (label 0) -> paint 1
    lab = np.zeros((10, 10), np.uint8)
    lab[8:10, 8:10] = 1  # 4 px false positive -> paint 0
    lab[5, 5] = 2  # 1 px of the wrong class -> paint 0 (touches nothing else)
    regions = error_regions(lab, ref)
    assert [(g.value, g.size) for g in regions] == [(1, 12), (0, 4), (0, 1)]


def test_correction_plan_paints_big_regions_until_target():
    ref = _square((30, 30), 0, 0, 20)  # 400 px
    lab = ref.copy()
    lab[0:3, 0:20] = 0  # 60 px missing (one region)
    lab[25:29, 25:29] = 1  # 16 px false positive (far away)
    lab[10, 10] = 0  # a 1 px hole
    # before: 339 in common; Dice = 2*339/(355+400) = 0.898 < 0.9
    assert not slice_ok(lab, ref, [1])
    out, painted = correction_plan(lab, ref, [1])
    # the 60 px region alone lifts it: 2*399/(415+400) = 0.979; one stroke
    assert [g.size for g in painted] == [60]
    assert slice_ok(out, ref, [1])
    assert out[25, 25] == 1  # the false positive was left: no need to paint it


def test_correction_plan_small_regions_only_when_needed():
    ref = np.zeros((10, 10), np.uint8)
    ref[0, 0:6] = 1  # a 6 px structure
    lab = np.zeros((10, 10), np.uint8)
    lab[0, 0:3] = 1  # 3 missing px in one region (< 10): Dice 2*3/9 = 0.667
    out, painted = correction_plan(lab, ref, [1])
    assert len(painted) == 1 and painted[0].size == 3
    assert np.array_equal(out, ref)
    ok = ref.copy()
    assert correction_plan(ok, ref, [1])[1] == []  # nothing to do on a passing slice


def test_boxes_one_per_part_and_class():
    ref = np.zeros((20, 20), np.uint8)
    ref[1:4, 1:5] = 1  # 12 px part
    ref[10:16, 10:14] = 1  # 24 px part: first
    ref[18, 18] = 1  # 1 px speck: no box
    ref[5:9, 15:18] = 2  # 12 px class 2
    boxes = boxes_for_slice(ref, [1, 2])
    assert boxes == [
        (1, (10.0, 10.0, 13.0, 15.0)),
        (1, (1.0, 1.0, 4.0, 3.0)),
        (2, (15.0, 5.0, 17.0, 8.0)),
    ]
    v = box_vertices(7, (1.0, 2.0, 3.0, 4.0))
    assert v.shape == (4, 3) and set(v[:, 0]) == {7}
    assert v[:, 1].min() == 2 and v[:, 2].max() == 3


def test_click_at_the_centre_of_the_largest_error():
    ref = _square((15, 15), 2, 2, 9)  # rows/cols 2..10
    lab = np.zeros((15, 15), np.uint8)
    (r, c), positive = click_for(lab, ref, 1)
    assert positive and (r, c) == (6, 6)
    lab = ref.copy()
    lab[12:15, 0:3] = 1  # a false positive is the only error
    (r, c), positive = click_for(lab, ref, 1)
    assert not positive and (r, c) == (13, 1)
    assert click_for(ref, ref, 1) is None


def test_ledger_counts_and_records():
    led = Ledger()
    led.add("box", 2)
    led.add("brush", 3)
    led.add("accept_many")
    assert led.total == 6
    led.record(12.345, dice=0.5)
    assert led.records == [{"interactions": 6, "seconds": 12.35, "dice": 0.5}]
    with pytest.raises(ValueError, match="unknown interaction"):
        led.add("lasso")
    assert interaction_cap(100) == 300 and interaction_cap(None) is None


def test_visit_action_accepts_when_no_dearer_than_painting():
    assert visit_action(0, 0) == "accept"  # the proposal is right: accept it
    assert visit_action(2, 3) == "accept"  # 1 + 2 <= 3
    assert visit_action(3, 3) == "paint"  # 1 + 3 > 3
    assert visit_action(1, 0) == "empty"  # the slice should stay empty: mark it
    assert visit_action(0, 5) == "accept"
