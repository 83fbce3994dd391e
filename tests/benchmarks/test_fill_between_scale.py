"""The fill-between scale benchmark on a small volume: it fills every slice between and writes."""

from __future__ import annotations

import json

from benchmarks import fill_between_scale as fb


def test_fill_between_scale_fills_every_slice_between_and_writes_numbers(tmp_path):
    row = fb.measure(12, every=5, size=48)
    assert row["labelled"] == 3 and row["filled"] == 8  # 0, 5, 10 labelled; 1-4, 6-9 filled
    assert row["ui_ms"] >= 0 and row["worker_ms"] > 0
    assert (
        fb.main(["--out", str(tmp_path), "--slices", "12", "--size", "48", "--no-reference"]) == 0
    )
    data = json.loads((tmp_path / "fill_between_scale.json").read_text())
    assert [r["filled"] for r in data["rows"]] == [8]
