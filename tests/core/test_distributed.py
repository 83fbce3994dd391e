"""``napari-synfoc train`` under torchrun: two CPU processes (gloo) train with DDP in sync, for
every strategy (SynFoC trains both students; SemiSAM+, IFL and UnCoL train the U-Net next to a
frozen, prompted foundation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

FAZ = Path(__file__).resolve().parents[3] / "shared" / "data" / "faz_octa_5sites" / "data" / "FAZ"
ITERATIONS = 6  # IFL: rounds start at 0, 2 and 4, so two pseudo-label rounds run


def _initial_fingerprint(cfg) -> dict[str, str]:
    """model_fingerprint of both students as the trainer initialises them (same seed, order)."""
    from napari_synfoc.cli import model_fingerprint
    from napari_synfoc.core.foundation import build_foundation
    from napari_synfoc.core.trainer import seed_everything
    from napari_synfoc.core.unet import UNet

    seed_everything(cfg.seed)
    unet = UNet(cfg.in_channels, cfg.num_classes, tuple(cfg.unet_features))
    fm = build_foundation(cfg)
    return model_fingerprint(SimpleNamespace(unet=unet, fm_student=fm))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["synfoc", "semisam+", "ifl", "uncol"])
def test_torchrun_two_cpu_ranks_stay_in_sync(tmp_path, strategy):
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
        str(ITERATIONS),
        "--out",
        str(out),
        "--profile",
        "tiny",
        "--strategy",
        strategy,
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
    assert r0["iterations"] == r1["iterations"] == ITERATIONS
    # DDP averaged the gradients: both ranks hold bit-identical students after training
    assert r0["unet_sha256"] == r1["unet_sha256"]
    assert r0["foundation_sha256"] == r1["foundation_sha256"]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["world_size"] == 2 and set(metrics["per_domain"]) == {
        f"Domain{i}" for i in range(1, 6)
    }
    assert metrics["config"]["strategy"] == strategy
    from napari_synfoc.config import SynFoCConfig
    from napari_synfoc.core.checkpoint import load_checkpoint

    state = load_checkpoint(out / "synfoc_checkpoint.pt")
    cfg = SynFoCConfig.from_dict(state["config"])
    assert cfg.strategy == strategy
    init = _initial_fingerprint(cfg)
    # the U-Net trained under every strategy: it differs from its (seeded, identical) init
    assert r0["unet_sha256"] != init["unet_sha256"]
    if strategy == "synfoc":
        # SynFoC trains the foundation student too
        assert r0["foundation_sha256"] != init["foundation_sha256"]
    else:
        # the prompted strategies keep the foundation frozen: still its initial weights
        assert cfg.freeze_encoder and cfg.cache_embeddings and cfg.lora_targets == "none"
        assert r0["foundation_sha256"] == init["foundation_sha256"]
    if strategy == "ifl":
        # both pseudo-label rounds ran, and every rank selected the same key slices from the
        # same pseudo-labels (one fingerprint per rank)
        assert r0["strategy"]["rounds"] == r1["strategy"]["rounds"] == 2
        assert r0["strategy"] == r1["strategy"]
