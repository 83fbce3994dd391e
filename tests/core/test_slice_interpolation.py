"""Fill between labelled slices: signed distances and their interpolation, on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_synfoc.core.slice_interpolation import fill_between, neighbours, signed_distance


def _square(n: int, y0: int, x0: int, size: int) -> np.ndarray:
    m = np.zeros((n, n), bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def test_signed_distance_is_negative_inside_and_half_a_pixel_from_the_boundary():
    m = np.zeros((5, 5), bool)
    m[2, 2] = True
    d = signed_distance(m)
    assert d[2, 2] == -0.5  # the one inside pixel
    assert d[2, 1] == 0.5 and d[1, 2] == 0.5  # its 4-neighbours
    np.testing.assert_allclose(d[1, 1], np.sqrt(2) - 0.5)  # the diagonal
    np.testing.assert_allclose(d[0, 0], 2 * np.sqrt(2) - 0.5)
    sq = _square(7, 1, 1, 5)  # a 5 x 5 square: its centre is 3 pixels deep
    assert signed_distance(sq)[3, 3] == 0.5 - 3.0
    for bad in (np.zeros((4, 4), bool), np.ones((4, 4), bool), np.zeros((2, 2, 2), bool)):
        with pytest.raises(ValueError):
            signed_distance(bad)


def test_neighbours_are_the_nearest_labelled_slices_on_each_side():
    assert neighbours([9, 2, 5], 4) == (2, 5)
    assert neighbours([2, 5], 1) == (None, 2)
    assert neighbours([2, 5], 7) == (5, None)
    assert neighbours([2, 5], 5) == (2, None)  # the slice itself is not its own neighbour


def test_the_same_mask_on_both_sides_fills_the_slices_between_with_itself():
    sq = _square(20, 4, 6, 8)
    out = fill_between({0: sq, 4: sq}, range(6))
    assert sorted(out) == [1, 2, 3]  # 0 and 4 are labelled; 5 has no labelled slice above
    for m in out.values():
        assert np.array_equal(m, sq)


def test_a_growing_square_grows_linearly_between_its_labelled_slices():
    """A 4 x 4 and a 12 x 12 square with one centre: the blend of their signed distances at
    t = 1/2 is the 8 x 8 square (inside both maps the distance to the nearest side, so the
    blend is negative exactly within 4 pixels of the centre), and 6 x 6 / 10 x 10 at 1/4, 3/4."""
    small, big = _square(30, 13, 13, 4), _square(30, 9, 9, 12)
    out = fill_between({10: small, 14: big}, [11, 12, 13])
    for z, size in ((11, 6), (12, 8), (13, 10)):
        lo = 15 - size // 2
        assert np.array_equal(out[z], _square(30, lo, lo, size)), z


def test_no_fill_next_to_a_slice_labelled_without_the_class_or_beyond_the_last_one():
    sq = _square(16, 4, 4, 6)
    empty = np.zeros((16, 16), bool)
    # slices 0 and 3 hold the class, 6 is labelled without it: 1, 2 filled, 4, 5 not, 8 not
    out = fill_between({0: sq, 3: sq, 6: empty}, [1, 2, 4, 5, 8])
    assert sorted(out) == [1, 2]


def test_max_gap_leaves_out_gaps_wider_than_it():
    sq = _square(16, 4, 4, 6)
    masks = {0: sq, 2: sq, 10: sq}
    assert sorted(fill_between(masks, range(11))) == [1, *range(3, 10)]
    assert sorted(fill_between(masks, range(11), max_gap=4)) == [1]


def test_parts_that_do_not_overlap_blend_to_nothing_rather_than_a_made_up_shape():
    """Two 4 x 4 squares 28 pixels apart: one slice past a labelled one, the far square's
    distance (about 36 pixels, weighted 1/10) outweighs the near one's depth (1.5), so no
    slice between gets a mask; squares that overlap keep their overlap halfway."""
    a, b = _square(40, 2, 2, 4), _square(40, 30, 30, 4)
    assert fill_between({0: a, 10: b}, range(1, 10)) == {}
    c, d = _square(40, 10, 10, 8), _square(40, 10, 14, 8)  # shifted by 4: overlap 8 x 4
    half = fill_between({0: c, 2: d}, [1])[1]
    assert half[10:18, 14:18].all() and not half[:, :10].any() and not half[:, 22:].any()


def test_masks_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        fill_between({0: np.ones((4, 4), bool), 2: np.ones((5, 5), bool)}, [1])
