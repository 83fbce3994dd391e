"""The review-refresh scale benchmark on a small volume: it labels, estimates, ranks and writes."""

from __future__ import annotations

import json

from benchmarks import ranking_scale as rs


def test_ranking_scale_measures_each_part_with_both_labelling_densities(tmp_path):
    row = rs.measure(12, every=2, size=48, repeats=1)
    assert row["labelled"] == 6  # slices 0, 2, ..., 10 hold the tube
    assert row["total_ms"] >= row["quality_ms"] >= 0
    sparse = rs.measure(12, every=None, size=48, repeats=1)
    assert sparse["labelled"] == 3  # 3, 6, 9
    argv = ["--out", str(tmp_path), "--slices", "12", "--size", "48", "--no-reference"]
    assert rs.main([*argv, "--repeats", "1"]) == 0
    data = json.loads((tmp_path / "ranking_scale.json").read_text())
    assert [(r["slices"], r["labelled"]) for r in data["rows"]] == [(12, 3), (12, 6)]
    assert data["reference_encoder_s"] is None


def test_dock_refresh_is_timed_in_a_viewer_with_every_slice_in_the_table(make_napari_viewer):
    viewer = make_napari_viewer()
    row = rs.measure(12, every=2, size=48, repeats=1, viewer=viewer)
    assert row["labelled"] == 6 and row["dock_rows"] == 12
    assert row["dock_ms"] > 0
