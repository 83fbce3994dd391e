"""``napari-synfoc bench`` (napari_synfoc/machine_check.py) on the tiny model: real iterations,
a real JSON file."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from napari_synfoc import machine_check as mc
from napari_synfoc.io.results import write_json_atomic


def test_profile_spec_is_parsed_and_applied_through_resolve_config():
    assert mc.parse_profile_spec("gpu-fast+compile=true+unet_size=384") == (
        "gpu-fast",
        {"compile": True, "unet_size": 384},
    )
    assert mc.parse_profile_spec("tiny+unet_features=[2,4]+checkpoint=/a/b.pth") == (
        "tiny",
        {"unet_features": (2, 4), "checkpoint": "/a/b.pth"},
    )
    with pytest.raises(ValueError, match="not key=value"):
        mc.parse_profile_spec("tiny+compile")
    r = mc.time_profile("tiny+unet_size=32+batch_labeled=1+batch_unlabeled=1", "cpu", 1, 2)
    assert r["size"] == 32 and r["batch"] == [1, 1] and r["foundation"] == "tiny"
    assert len(r["s_per_iteration_all"]) == 2 and r["s_per_iteration"] > 0
    assert len(r["losses"]) == 3 and all(v == v for v in r["losses"])  # finite, not NaN
    with pytest.raises(ValueError, match="unknown config setting"):
        mc.time_profile("tiny+no_such_field=1", "cpu", 0, 1)


def test_timing_plan_per_device_and_profile():
    assert mc.timing_plan("cpu-interactive", True, "cpu") == (3, 8)
    assert mc.timing_plan("cpu-interactive", False, "cpu") == (5, 20)
    assert mc.timing_plan("gpu-fast", True, "cuda") == (10, 30)
    assert mc.timing_plan("faithful", False, "cpu") == (1, 2)
    assert mc.timing_plan("faithful", False, "cuda") == (15, 60)


def _fake_worker(args, timeout, xvfb=False):
    spec = args[args.index("--worker") + 1]
    return mc.time_profile(spec, "cpu", 0, 1)


@pytest.mark.slow
def test_bench_main_writes_its_json(tmp_path, monkeypatch):
    """The bench command end to end with the workers run in this process (no napari)."""
    monkeypatch.setattr(mc, "reference_encoder_seconds", lambda device: 0.5)
    monkeypatch.setattr(mc, "run_worker", _fake_worker)
    out = tmp_path / "bench.json"
    ns = argparse.Namespace(
        device="cpu", profiles="tiny,tiny+unet_size=32", quick=True, no_overlay=True, out=str(out)
    )
    assert mc.main(ns) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data["profiles"]) == {"tiny", "tiny+unet_size=32"}
    assert data["profiles"]["tiny+unet_size=32"]["size"] == 32
    assert data["profiles"]["tiny"]["x_reference"] == pytest.approx(
        data["profiles"]["tiny"]["s_per_iteration"] / 0.5
    )
    assert data["first_overlay_s"] is None
    assert data["command"] == (
        f"napari-synfoc bench --quick --profiles tiny,tiny+unet_size=32 --no-overlay --out {out}"
    )


def test_a_failing_profile_is_recorded_and_the_rest_still_run(monkeypatch):
    def worker(args, timeout, xvfb=False):
        if "broken" in args:
            raise RuntimeError("benchmark worker failed (exit 1): boom")
        return _fake_worker(args, timeout)

    monkeypatch.setattr(mc, "run_worker", worker)
    import torch

    res = mc.time_profiles({"broken": "broken", "tiny": "tiny"}, torch.device("cpu"), True, 1.0)
    assert "boom" in res["broken"]["error"] and res["tiny"]["s_per_iteration"] > 0


def test_json_is_written_atomically(tmp_path):
    import numpy as np

    path = write_json_atomic(tmp_path / "sub" / "r.json", {"a": np.float32(1.5), "p": tmp_path})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1.5, "p": str(tmp_path)}
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text(encoding="utf-8"))["a"] == 1.5  # the old file is intact
    assert os.listdir(path.parent) == ["r.json"]  # no temp file left behind
