"""The per-strategy curve summary: values at fixed seconds (hand-made records), table, plot."""

from __future__ import annotations

import json

from benchmarks import strategy_curves as sc


def _run(tmp_path, name, points):
    recs = [
        {"seconds": t, "dice_ensemble": e, "dice_fm": e - 0.1, "dice_unet": e + 0.05}
        for t, e in points
    ]
    recs.insert(0, {"seconds": 5.0, "iteration": 5})  # an unscored refresh is skipped
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"stacks": {"S40": {"refreshes": recs}}}), encoding="utf-8")
    return f"{name}={path}"


def test_table_and_plot(tmp_path):
    a = _run(tmp_path, "synfoc", [(50.0, 0.2), (110.0, 0.7), (170.0, 0.75)])
    b = _run(tmp_path, "uncol", [(130.0, 0.8)])
    assert sc.main(["--out", str(tmp_path / "out"), a, b]) == 0
    md = (tmp_path / "out" / "strategy_curves.md").read_text(encoding="utf-8")
    # synfoc: 0.2 at 60 s, 0.7 at 120 s, 0.75 at 180 s; best 0.75 at 170 s
    assert "| synfoc | 0.200 | 0.700 | 0.750 | 0.750 (170) | 0.650 / 0.800 |" in md
    # uncol: nothing before 130 s
    assert "| uncol | – | – | 0.800 | 0.800 (130) | 0.700 / 0.850 |" in md
    assert (tmp_path / "out" / "strategy_curves.png").stat().st_size > 1000
