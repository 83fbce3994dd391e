"""The one config object: defaults are the paper's, profiles and switches apply cleanly."""

from __future__ import annotations

import pytest

from napari_synfoc.config import FIXES, PROFILES, SynFoCConfig, default_profile_for, make_config


def test_faithful_defaults_match_the_spec():
    c = SynFoCConfig()
    assert (c.unet_lr, c.unet_momentum, c.unet_weight_decay) == (0.03, 0.9, 1e-4)
    assert (c.fm_lr, c.fm_weight_decay, c.fm_betas) == (1.2e-4, 0.1, (0.9, 0.999))
    assert (c.tau, c.ema_decay, c.consistency, c.ramp_steps) == (0.95, 0.99, 1.0, 200)
    assert (c.box_area, c.box_ratio) == ((0.02, 0.40), 0.3)
    assert c.lora_rank == 4 and c.lora_targets == "qv"
    assert (c.lr_schedule, c.teacher_bn, c.dice_bg_masked, c.ce_norm) == (
        "none",
        "train",
        False,
        "all",
    )
    assert c.foundation == "litemedsam" and c.unet_features == (64, 128, 256, 512, 1024)


def test_profiles_and_fixes_apply():
    cpu = make_config("cpu-interactive")
    assert cpu.freeze_encoder and cpu.cache_embeddings and cpu.batch_labeled == 2
    assert make_config("tiny").foundation == "tiny"
    fixed = make_config(**FIXES)
    assert fixed.teacher_bn == "eval" and fixed.dice_bg_masked and fixed.lr_schedule == "poly"
    assert (
        default_profile_for("cuda:0") == "gpu-fast"
        and default_profile_for("cpu") == "cpu-interactive"
    )
    assert set(PROFILES) >= {"faithful", "gpu-fast", "cpu-interactive", "tiny"}


@pytest.mark.parametrize(
    ("over", "msg"),
    [
        ({"foundation": "vit-h"}, "unknown foundation"),
        ({"batch_labeled": 4, "batch_unlabeled": 2}, "must equal"),
        ({"num_classes": 1}, "at least 2"),
        ({"foundation": "medsam-vitb"}, "needs a checkpoint"),
        ({"cache_embeddings": True, "freeze_encoder": False}, "needs freeze_encoder"),
        ({"ce_norm": "mean"}, "ce_norm must be one of"),
        ({"fm_size": 512}, "LiteMedSAM takes 256"),
    ],
)
def test_invalid_settings_are_explained(over, msg):
    with pytest.raises(ValueError, match=msg):
        make_config(**over)


def test_round_trip_through_dict_ignores_unknown_keys():
    c = make_config("cpu-interactive", iterations=7)
    d = c.to_dict()
    d["from_a_future_version"] = 1
    back = SynFoCConfig.from_dict(d)
    assert back == c
