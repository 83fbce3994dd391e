"""The one config object: defaults are the paper's, profiles and switches apply cleanly."""

from __future__ import annotations

from dataclasses import fields

import pytest

from napari_synfoc.config import (
    FIXES,
    PROFILES,
    SynFoCConfig,
    default_profile_for,
    make_config,
    resolve_config,
)


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


# ----------------------------------------------------------------------------- the table
def test_every_choice_field_is_validated_from_the_table():
    from napari_synfoc.config import choices, field_meta

    for f in fields(SynFoCConfig):
        allowed = field_meta(f.name)["choices"]
        if allowed is None:
            continue
        assert getattr(SynFoCConfig(), f.name) in allowed, f.name
        with pytest.raises(ValueError, match=f"{f.name} (must be one of|model)"):
            SynFoCConfig().replace(**{f.name: "no-such-value"}).validate()
    assert choices("lr_schedule") == ("none", "poly")
    with pytest.raises(ValueError, match="not a choice field"):
        choices("tau")


def test_ranges_are_validated_and_the_form_reads_them():
    from napari_synfoc.config import ADVANCED_FIELDS, form_spec

    with pytest.raises(ValueError, match=r"tau must lie in \[0.0, 1.0\]"):
        make_config(tau=1.5)
    with pytest.raises(ValueError, match="val_fraction must lie in"):
        make_config(val_fraction=-0.1)
    assert form_spec("use_smc") is None
    assert form_spec("alpha_mode") == ("smc", "self", "mutual", "constant", "linear")
    assert form_spec("tau") == (0.5, 1.0, 0.01)
    for name in ADVANCED_FIELDS:  # every Advanced row has a widget spec
        spec = form_spec(name)
        assert spec is None or isinstance(spec, tuple)


def test_arch_fields_come_from_the_table():
    from napari_synfoc.config import arch_fields

    arch = set(arch_fields())
    assert {"foundation", "fm_size", "unet_features", "num_classes", "lora_targets"} <= arch
    assert not {"tau", "iterations", "device", "compile"} & arch


def test_the_duplicated_lists_read_the_table():
    from napari_synfoc.config import choices
    from napari_synfoc.core import ramps

    assert ramps.LR_SCHEDULES == choices("lr_schedule")
    with pytest.raises(ValueError, match="schedule must be one of"):
        ramps.lr_factor(0, 10, schedule="cosine")


# ----------------------------------------------------------------------------- resolve_config
def test_resolve_config_vitb_rule_and_overrides_win():
    vitb = resolve_config("faithful", "cpu", "sam-vitb", {"checkpoint": "x.pth"})
    assert (vitb.fm_size, vitb.lora_targets, vitb.freeze_encoder) == (512, "qv", False)
    assert not vitb.cache_embeddings
    cpu_vitb = resolve_config("cpu-interactive", "cpu", "medsam-vitb", {"checkpoint": "x.pth"})
    assert cpu_vitb.fm_size == 256 and not cpu_vitb.freeze_encoder
    own = resolve_config("faithful", "cpu", "sam-vitb", {"checkpoint": "x.pth", "fm_size": 384})
    assert own.fm_size == 384
    assert resolve_config("cpu-interactive", "cpu", None, {"seed": None}).seed == 1337


def test_resolve_config_prompted_strategies_freeze_the_foundation():
    """A GPU profile trains LoRA on an unfrozen encoder; choosing a prompted strategy there
    gives a config that strategy accepts (frozen encoder, cached embeddings, no LoRA)."""
    from napari_synfoc.core.strategies import strategy_for

    gpu = resolve_config("gpu-fast", "cuda", "litemedsam")
    assert gpu.strategy == "synfoc" and not gpu.freeze_encoder and gpu.lora_targets == "qv"
    for name in ("semisam+", "ifl", "uncol"):
        cfg = resolve_config("gpu-fast", "cuda", "litemedsam", {"strategy": name})
        assert (cfg.freeze_encoder, cfg.cache_embeddings, cfg.lora_targets) == (True, True, "none")
        strategy_for(cfg)  # no error
    # an explicit override still wins, and the strategy then explains the conflict
    bad = resolve_config("gpu-fast", "cuda", None, {"strategy": "uncol", "lora_targets": "qv"})
    with pytest.raises(ValueError, match="lora_targets='none'"):
        strategy_for(bad)


def test_resolve_config_compile_rule_is_one_rule():
    from napari_synfoc.config import COMPILE_MIN_ITERATIONS

    short = resolve_config("gpu-fast", "cuda", None, {"iterations": 300})
    assert not short.compile
    long = resolve_config("gpu-fast", "cuda", None, {"iterations": COMPILE_MIN_ITERATIONS})
    assert long.compile and long.compile_mode == "reduce-overhead"
    forced = resolve_config("gpu-fast", "cuda", None, {"iterations": 300, "compile": True})
    assert forced.compile


def test_resolve_config_explains_bad_choices():
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        resolve_config("fast", "cpu")
    with pytest.raises(ValueError, match=r"unknown config setting\(s\) \['taux'\]"):
        resolve_config("tiny", "cpu", None, {"taux": 1})
    with pytest.raises(ValueError, match="tiny test profile"):
        resolve_config("tiny", "cpu", "litemedsam")


def test_resolve_config_auto_profile_follows_the_device():
    cfg = resolve_config("auto", "cpu")
    assert cfg.freeze_encoder and cfg.unet_size == 128 and cfg.device == "cpu"
    assert resolve_config(None, "cuda").precision == "bf16"


@pytest.mark.parametrize(
    ("profile", "device", "foundation", "checkpoint", "iterations", "adv"),
    [
        ("cpu-interactive", "cpu", "litemedsam", None, 300, {}),
        ("faithful", "cpu", "sam-vitb", "x.pth", 300, {}),
        ("gpu-fast", "cuda", "medsam-vitb", "x.pth", 300, {}),
        ("gpu-fast", "cuda", "litemedsam", None, 5000, {}),
        ("cpu-interactive", "cpu", "litemedsam", None, 50, {"ce_norm": "confident"}),
        ("auto", "cpu", "litemedsam", None, 40, {"alpha_mode": "constant"}),
        ("gpu-fast", "cuda", "litemedsam", None, 300, {"strategy": "uncol"}),
        ("auto", "cpu", "litemedsam", None, 100, {"strategy": "semisam+"}),
    ],
)
def test_cli_and_dock_build_the_same_config(
    profile, device, foundation, checkpoint, iterations, adv
):
    from napari_synfoc.app.task_builder import build_config
    from napari_synfoc.cli import build_parser, config_from_args

    argv = ["train", "--data", "D", "--labeled-domain", "A", "--n-labeled", "2", "--out", "O"]
    argv += ["--iterations", str(iterations), "--device", device, "--foundation", foundation]
    if profile != "auto":
        argv += ["--profile", profile]
    if checkpoint:
        argv += ["--checkpoint", checkpoint]
    for key, value in adv.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    cli = config_from_args(build_parser().parse_args(argv))
    dock = build_config(profile, device, foundation, checkpoint, iterations, dict(adv))
    direct = resolve_config(
        profile, device, foundation, {"iterations": iterations, "checkpoint": checkpoint, **adv}
    )
    assert cli == dock == direct


def test_run_iterations_and_estimate_per_profile():
    from napari_synfoc.config import run_estimate, run_iterations

    assert run_iterations("auto", "cpu") == run_iterations("cpu-interactive") == 300
    assert run_iterations("auto", "cuda") == run_iterations("gpu-fast") == 3000
    assert run_iterations("faithful") == 30000 and run_iterations("tiny") == 20
    with pytest.raises(ValueError, match="unknown profile"):
        run_iterations("fastest")
    # 300 x 0.76 s = 228 s -> 4 min; 30000 x 0.218 s = 6540 s -> 1.8 h; 100 x 0.5 s = 50 s
    assert run_estimate("cpu-interactive", 300).startswith("about 4 min (0.76 s/iteration")
    assert run_estimate("faithful", 30000).startswith("about 1.8 h (0.22 s/iteration")
    assert run_estimate("cpu-interactive", 100, 0.5) == (
        "about 50 s (0.50 s/iteration, measured here)"
    )
    assert run_estimate("tiny", 20) == ""
