"""Smoke tests of ``napari-synfoc bench`` on the tiny model: real iterations, a real JSON file."""

from __future__ import annotations

import json
import os

import pytest

from napari_synfoc.bench import speed
from napari_synfoc.io.results import write_json_atomic


def test_profile_spec_is_parsed_and_applied_through_resolve_config():
    assert speed.parse_profile_spec("gpu-fast+compile=true+unet_size=384") == (
        "gpu-fast",
        {"compile": True, "unet_size": 384},
    )
    with pytest.raises(ValueError, match="not key=value"):
        speed.parse_profile_spec("tiny+compile")
    r = speed.time_profile("tiny+unet_size=32+batch_labeled=1+batch_unlabeled=1", "cpu", 1, 2)
    assert r["size"] == 32 and r["batch"] == [1, 1] and r["foundation"] == "tiny"
    assert len(r["s_per_iteration_all"]) == 2 and r["s_per_iteration"] > 0
    assert len(r["losses"]) == 3 and all(v == v for v in r["losses"])  # finite, not NaN
    with pytest.raises(ValueError, match="unknown config setting"):
        speed.time_profile("tiny+no_such_field=1", "cpu", 0, 1)


def test_bench_main_writes_its_json(tmp_path, monkeypatch):
    """The bench command end to end with the workers run in this process (no napari)."""
    import argparse

    monkeypatch.setattr(speed, "reference_encoder_seconds", lambda device: 0.5)

    def worker(args, timeout, xvfb=False):
        p = args[args.index("--worker") + 1]
        return speed.time_profile(p, "cpu", 0, 1)

    monkeypatch.setattr(speed, "_run_worker", worker)
    out = tmp_path / "bench.json"
    ns = argparse.Namespace(
        device="cpu",
        profiles="tiny,tiny+unet_size=32",
        quick=True,
        no_overlay=True,
        torch_profile=0,
        out=str(out),
    )
    assert speed.main(ns) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data["profiles"]) == {"tiny", "tiny+unet_size=32"}
    assert data["profiles"]["tiny+unet_size=32"]["size"] == 32
    assert data["profiles"]["tiny"]["x_reference"] == pytest.approx(
        data["profiles"]["tiny"]["s_per_iteration"] / 0.5
    )
    assert data["first_overlay_s"] is None and "--no-overlay" in data["command"]


def test_json_is_written_atomically(tmp_path):
    import numpy as np

    path = write_json_atomic(tmp_path / "sub" / "r.json", {"a": np.float32(1.5), "p": tmp_path})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1.5, "p": str(tmp_path)}
    with pytest.raises(TypeError, match="not JSON serialisable"):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text(encoding="utf-8"))["a"] == 1.5  # the old file is intact
    assert os.listdir(path.parent) == ["r.json"]  # no temp file left behind
