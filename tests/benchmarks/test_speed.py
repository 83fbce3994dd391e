"""The development speed benchmark (benchmarks/speed.py): the paper's GPU model spec and the
loss comparison between profiles, by hand."""

from __future__ import annotations

import pytest

from benchmarks import speed
from napari_synfoc import machine_check as mc


def test_paper_gpu_spec_keeps_explicit_settings(monkeypatch):
    monkeypatch.setattr(speed, "random_vitb_checkpoint", lambda: "/tmp/vitb.pth")
    name, over = mc.parse_profile_spec(speed.paper_gpu_spec("gpu-fast+unet_size=256"))
    assert name == "gpu-fast"
    assert over == {
        "foundation": "medsam-vitb",
        "fm_size": 512,
        "unet_size": 256,  # the explicit setting wins over the paper's 384
        "checkpoint": "/tmp/vitb.pth",
    }
    assert speed.paper_gpu_spec("cpu-interactive") == "cpu-interactive"


def test_compare_gpu_profiles_by_hand():
    res = {
        "faithful": {"s_per_iteration": 0.2, "losses": [1.0, 2.0, 4.0]},
        "gpu-fast": {"s_per_iteration": 0.1, "losses": [1.1, 2.0]},
        "broken": {"error": "x"},
    }
    cmp = speed.compare_gpu_profiles(res)
    assert set(cmp) == {"gpu-fast"}
    g = cmp["gpu-fast"]
    assert g["speedup_vs_faithful"] == pytest.approx(2.0)
    assert g["loss_rel_diff_first"] == pytest.approx(0.1)
    assert g["loss_rel_diff_max"] == pytest.approx(0.1) and g["iterations_compared"] == 2
    assert speed.compare_gpu_profiles({"gpu-fast": {}}) == {}


def test_parser_adds_the_developer_options_to_the_machine_check():
    a = speed.parser().parse_args(["--out", "o.json", "--foreign-load", "--torch-profile", "3"])
    assert (a.out, a.foreign_load, a.torch_profile, a.quick) == ("o.json", True, 3, False)
