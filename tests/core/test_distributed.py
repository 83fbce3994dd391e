"""``napari-synfoc train`` under torchrun: two CPU processes (gloo) train with DDP in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAZ = Path(__file__).resolve().parents[3] / "shared" / "data" / "faz_octa_5sites" / "data" / "FAZ"


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_stay_in_sync(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "napari_synfoc.cli",
        "train",
        "--data",
        str(FAZ),
        "--labeled-domain",
        "Domain5",
        "--n-labeled",
        "4",
        "--iterations",
        "4",
        "--out",
        str(out),
        "--profile",
        "tiny",
        "--device",
        "cpu",
        "--unlabeled-limit",
        "3",
        "--eval-limit",
        "2",
        "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONIOENCODING="utf-8")
    proc = subprocess.run(cmd, capture_output=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-4000:]
    r0 = json.loads((out / "rank0_params.json").read_text(encoding="utf-8"))
    r1 = json.loads((out / "rank1_params.json").read_text(encoding="utf-8"))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["iterations"] == r1["iterations"] == 4
    # DDP averaged the gradients: both ranks hold bit-identical students after training
    assert r0["unet_sha256"] == r1["unet_sha256"]
    assert r0["foundation_sha256"] == r1["foundation_sha256"]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["world_size"] == 2 and set(metrics["per_domain"]) == {
        f"Domain{i}" for i in range(1, 6)
    }
    # and they trained: the saved student differs from its (seeded, identical) initialisation
    from napari_synfoc.config import SynFoCConfig
    from napari_synfoc.core.checkpoint import load_checkpoint
    from napari_synfoc.core.trainer import seed_everything
    from napari_synfoc.core.unet import UNet

    state = load_checkpoint(out / "synfoc_checkpoint.pt")
    cfg = SynFoCConfig.from_dict(state["config"])
    seed_everything(cfg.seed)  # the trainer's own initialisation
    fresh = UNet(cfg.in_channels, cfg.num_classes, tuple(cfg.unet_features)).state_dict()
    changed = [
        k
        for k, v in state["unet_student"].items()
        if v.is_floating_point() and not (v == fresh[k]).all()
    ]
    assert changed
