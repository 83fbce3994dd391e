"""benchmarks/scale.py without napari: the volumes' labelling, memory reading and the table."""

from __future__ import annotations

import pytest

from benchmarks import scale


def test_rss_is_read_for_this_process_and_zero_for_a_gone_one():
    assert scale.rss_mb() > 10
    assert scale.rss_mb(2**22 + 12345) == 0.0


def test_unknown_volume_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="CT300"):
        scale.make_volume("CT9000")


def test_the_table_has_a_row_per_run_with_its_figures():
    run = {
        "volume": "STACK500", "shape": [500, 256, 256], "dtype": "float32", "volume_mb": 125.0,
        "first_overlay_s": 36.7, "ui_max_gap_ms": 227.0, "ui_p99_gap_ms": 14.8,
        "napari_peak_mb": 4232.4, "child_peak_mb": 2371.4, "last_status": "Training",
    }  # fmt: skip
    md = scale.markdown({"command": "c", "machine": "m", "r_s": 1.5, "runs": [run, run]})
    rows = [line for line in md.splitlines() if line.startswith("| STACK500")]
    assert len(rows) == 2 and "227.0 ms" in rows[0] and "4232 MB" in rows[0]
    assert "500×256×256 float32 (125 MB)" in rows[0]


def test_the_table_says_whether_the_run_ended_inside_the_window():
    base = {
        "volume": "CT300", "shape": [300, 512, 512], "dtype": "int16", "volume_mb": 150.0,
        "first_overlay_s": 18.0, "ui_max_gap_ms": 70.0, "ui_p99_gap_ms": 13.0,
        "napari_peak_mb": 3000.0, "child_peak_mb": 3000.0, "last_status": "Done",
        "seconds": 150.0,
    }  # fmt: skip
    ended = {**base, "iterations": 40, "run_ended_s": 120.5}
    stopped = {**base, "iterations": None, "run_ended_s": None}
    md = scale.markdown({"command": "c", "machine": "m", "r_s": 1.0, "runs": [ended, stopped]})
    rows = [line for line in md.splitlines() if line.startswith("| CT300")]
    assert "| at 120.5 s (40 iterations) |" in rows[0]
    assert "| no: stopped at 150 s |" in rows[1]
