"""The new-user pass (benchmarks/new_user_pass.py) on three cheap cases: a real viewer and dock,
the verdicts computed by its rules; and the rules themselves on made-up records."""

from __future__ import annotations

import pytest

from benchmarks import new_user_pass as nup


def _case(**kw):
    base = {"id": "x", "refs": "", "done": "", "fn": lambda h, r: None, "expect": ("said",)}
    return nup.Case(**{**base, **kw})


def _rec(**kw):
    return nup.Rec(**{"id": "x", "refs": "", "done": "", "kind": "refusal", **kw})


def test_verdict_rules():
    case = _case()
    dock = {"severity": "error", "text": "it was said", "source": "dock"}
    assert nup.verdict(case, _rec(message="it was said", popups=[dock])) == ("well", [])
    raw = {"severity": "error", "text": "ValueError: x", "source": "raw"}
    assert nup.verdict(case, _rec(message="it was said", popups=[dock, raw]))[0] == "partly"
    assert nup.verdict(case, _rec(message="something else"))[0] == "partly"
    assert nup.verdict(case, _rec(message="said: [Errno 30] Read-only"))[0] == "partly"
    assert nup.verdict(case, _rec(message="it was said", traceback=True))[0] == "partly"
    unexpected = _case(kind="unexpected")
    assert nup.verdict(unexpected, _rec(message="it was said", traceback=True))[0] == "well"
    assert nup.verdict(case, _rec(message="it was said", labels_unchanged=False))[0] == "badly"
    assert nup.verdict(case, _rec(message="it was said", left_behind=[123]))[0] == "badly"
    assert nup.verdict(case, _rec(message=""))[0] == "badly"
    failed = _rec(message="it was said", checks=[("Train works again", False)])
    assert nup.verdict(case, failed) == ("badly", ["check failed: Train works again"])


@pytest.mark.gui
@pytest.mark.slow
def test_three_cheap_cases_run_in_a_real_viewer(tmp_path):
    """Run as the README says, in its own process: the pass builds viewers and napari's plugin
    state, which must not leak into the other tests (a later launch found napari-svg's commands
    registered twice)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    ids = ["retrain_before_model", "image_nan", "session_empty"]
    out = tmp_path / "out"
    env = {**os.environ, "NAPARI_SYNFOC_CACHE_DIR": str(tmp_path / "cache")}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.new_user_pass", "--out", str(out),
         "--only", ",".join(ids)],
        cwd=root, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((out / "pass.json").read_text())
    records = data["cases"] if isinstance(data, dict) and "cases" in data else data
    assert sorted(r["id"] for r in records) == sorted(ids)
    for r in records:
        assert r["verdict"] in ("well", "partly", "badly"), r
        assert r["labels_unchanged"] is True and r["left_behind"] == [] and r["raised"] is None, r
        assert any(p["source"] == "dock" for p in r["popups"]), r["popups"]
    by_id = {r["id"]: r for r in records}
    assert "Nothing to warm-start" in by_id["retrain_before_model"]["message"]
    assert "NaN or infinite values on slice 2" in by_id["image_nan"]["message"]
    table = (out / "pass.md").read_text()
    assert "| image_nan |" in table and "3 cases" in table
