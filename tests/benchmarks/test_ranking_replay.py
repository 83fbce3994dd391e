"""The offline ranking replay (benchmarks.ranking_replay) on a hand-made volume."""

import numpy as np

from benchmarks import ranking_replay as RR


def _volume(n=9, size=32):
    ref = np.zeros((n, size, size), np.uint8)
    for z in range(n):  # a centred square growing a pixel a side a slice: the fill is exact
        ref[z, 13 - z : 19 + z, 13 - z : 19 + z] = 1
    return ref


def test_fill_from_reference_and_the_costs():
    ref = _volume()
    fill = RR.fill_from_reference(ref, {0, 8}, [1])
    assert sorted(fill) == list(range(1, 8))
    assert RR.rest_cost(np.zeros_like(ref), ref, {0, 8}, [1]) == 0  # the fill is exact
    # without anchors on both sides the ensemble's labels count: all empty -> 1 stroke a slice
    assert RR.rest_cost(np.zeros_like(ref), ref, {0}, [1]) == 8
    # a visit: an empty proposal costs painting (1 stroke), a right one an accept (1)
    assert RR.visit_cost(np.zeros_like(ref[3]), ref[3], [1]) == 1
    assert RR.visit_cost(ref[3], ref[3], [1]) == 1
    assert RR.visit_cost(np.zeros_like(ref[3]), np.zeros_like(ref[3]), [1]) == 1  # mark empty


def test_the_z_rule_bisects_and_the_replay_adds_up():
    ref = _volume()
    state = {"ensemble": np.zeros_like(ref), "fm": np.zeros_like(ref), "unet": ref.copy(),
             "trained": np.array([0])}  # fmt: skip
    feats = np.zeros((ref.shape[0], 2))
    out = RR.replay(state, ref, feats, "z", picks=2, seed=0)
    assert out["picks"] == [4, 8]  # farthest from 0 first: 8, then the middle of 0..8
    assert out["visits"] == 2 and out["rest"] == 0 and out["total"] == 2
    # "diverse" without features to tell slices apart: the disagreement decides (slice 8)
    d = RR.replay(state, ref, None, "diverse", picks=1, seed=0)
    assert d["picks"] == [8]
    assert RR.replay(state, ref, feats, "random", picks=3, seed=1)["picks"] != []
