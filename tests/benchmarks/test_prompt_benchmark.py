"""``python -m benchmarks.prompts``: the click protocol by hand, and a smoke run on the tiny
random model (real data, a few images)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import prompts as B
from benchmarks.common import DRISHTI_ROOT, FAZ_ROOT


def test_next_click_protocol():
    gt = np.zeros((20, 20), bool)
    gt[2:12, 2:12] = True
    pred = np.zeros_like(gt)
    pred[2:12, 2:6] = True  # a 10×6 false-negative block is the largest error
    pred[15:17, 15:17] = True  # a small false positive
    (x, y), label = B.next_click(pred, gt)
    assert label == 1 and 6 <= x <= 11 and 2 <= y <= 11
    assert not pred[int(y), int(x)] and gt[int(y), int(x)]
    pred2 = gt.copy()
    pred2[14:19, 14:19] = True  # only a false positive is left
    (x, y), label = B.next_click(pred2, gt)
    assert label == 0 and (x, y) == (16.0, 16.0)
    assert B.next_click(gt, gt) is None


@pytest.mark.slow  # real FAZ and Drishti-GS images through the whole benchmark
@pytest.mark.skipif(not FAZ_ROOT.is_dir(), reason="FAZ data not available")
def test_quick_run_tiny_writes_json_table_plot(tmp_path):
    argv = [
        "--out",
        str(tmp_path),
        "--quick",
        "--foundation",
        "tiny",
        "--faz-per-domain",
        "1",
        "--drishti",
        "1" if DRISHTI_ROOT.is_dir() else "0",
        "--s200-per-site",
        "2",
        "--every",
        "3",
    ]
    assert B.main(argv) == 0
    res = json.loads((tmp_path / "prompts.json").read_text(encoding="utf-8"))
    assert res["groups"]["FAZ all sites"]["n"] == 5
    assert set(res["groups"]["FAZ all sites"]) >= {"box", "merge@1", "merge@5", "sam@3"}
    p = res["propagation"]
    assert p["slices"] == 10 and p["keyed"] == [0, 3, 6, 9] and p["between"] == 6
    assert res["latency"]["box_uncached"]["n"] >= 5
    assert res["latency"]["propagate_per_slice_uncached"]["n"] == 10
    assert (
        (tmp_path / "prompts.md").read_text(encoding="utf-8").startswith("# Prompted LiteMedSAM")
    )
    assert (tmp_path / "prompts.png").stat().st_size > 1000
    assert not list(tmp_path.glob("*.tmp"))
