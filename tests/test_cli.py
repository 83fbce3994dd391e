"""The napari-synfoc command line: version, option parsing, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from napari_synfoc import __version__
from napari_synfoc.cli import build_parser, config_from_args, main


def test_version_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "napari_synfoc.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == f"napari-synfoc {__version__}"


def _train_argv(data="D", out="O", n_labeled=2, iterations=5, *extra) -> list[str]:
    """``train`` options with labelled domain A, then ``extra``."""
    return [
        "train", "--data", str(data), "--labeled-domain", "A", "--n-labeled", str(n_labeled),
        "--iterations", str(iterations), "--out", str(out), *extra,
    ]  # fmt: skip


def _args(*extra):
    return build_parser().parse_args(_train_argv("D", "O", 2, 5, *extra))


def test_train_options_map_onto_the_config():
    cfg = config_from_args(
        _args("--profile", "tiny", "--batch", "3", "--seed", "9", "--no-cdcr", "--fixes"),
        num_classes=3,
    )
    assert (cfg.batch_labeled, cfg.batch_unlabeled, cfg.seed, cfg.iterations) == (3, 3, 9, 5)
    assert (
        cfg.num_classes == 3
        and not cfg.use_cdcr
        and cfg.teacher_bn == "eval"
        and cfg.ce_norm == "confident"
    )
    sup = config_from_args(_args("--profile", "tiny", "--baseline", "suponly"))
    assert sup.suponly
    vitb = config_from_args(
        _args("--profile", "faithful", "--foundation", "sam-vitb", "--checkpoint", "x.pth")
    )
    assert vitb.fm_size == 512 and vitb.lora_targets == "qv" and not vitb.freeze_encoder


def test_missing_checkpoint_for_vitb_is_a_clear_error(capsys):
    rc = main(_train_argv("nowhere", "o", 1, 1, "--foundation", "medsam-vitb"))
    assert rc == 2
    err = capsys.readouterr().err
    assert "nowhere" in err or "needs a checkpoint" in err


def test_unknown_data_folder_is_reported(tmp_path, capsys):
    rc = main(_train_argv(tmp_path / "none", tmp_path / "o", 1, 1, "--profile", "tiny"))
    assert rc == 2
    assert "none" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train"], ["eval", "--data", "x"]])
def test_missing_required_options_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2


def test_every_config_option_is_named_after_its_field():
    from napari_synfoc import cli
    from napari_synfoc.config import SynFoCConfig, field_meta

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    by_dest = {}
    for action in train._actions:
        by_dest.setdefault(action.dest, set()).update(action.option_strings)
    for name in cli.MODEL_FIELDS + cli.METHOD_FIELDS + ("iterations",):
        assert hasattr(SynFoCConfig(), name), name
        assert "--" + name.replace("_", "-") in by_dest[name], name
        choices = field_meta(name)["choices"]
        action = next(a for a in train._actions if a.dest == name)
        if choices is not None:
            assert tuple(action.choices) == choices, name
    # the older names are aliases of the same fields, and nothing else renames a field
    assert {"--unet-size", "--size"} <= by_dest["unet_size"]
    assert {"--num-workers", "--workers"} <= by_dest["num_workers"]
    assert {"--use-smc", "--no-use-smc", "--no-smc"} == by_dest["use_smc"]
    assert {"--use-cdcr", "--no-use-cdcr", "--no-cdcr"} == by_dest["use_cdcr"]
    assert not any(opt in by_dest for opt in ("size", "workers", "no_smc", "no_cdcr"))


def test_defaults_come_from_the_config_not_the_cli():
    from napari_synfoc.config import SynFoCConfig, resolve_config

    args = _args("--profile", "tiny")
    assert args.seed is None and args.unet_size is None and args.use_smc is None
    cfg = config_from_args(args)
    assert cfg == resolve_config("tiny", "auto", None, {"iterations": 5})
    assert cfg.seed == SynFoCConfig().seed == 1337


def test_generated_options_and_aliases_reach_the_config():
    new = config_from_args(
        _args("--profile", "tiny", "--unet-size", "32", "--num-workers", "1", "--no-use-smc",
              "--unet-features", "2,4,8,16,32", "--tau", "0.9", "--compile")
    )  # fmt: skip
    old = config_from_args(
        _args("--profile", "tiny", "--size", "32", "--workers", "1", "--no-smc",
              "--unet-features", "2,4,8,16,32", "--tau", "0.9", "--compile")
    )  # fmt: skip
    assert new == old
    assert (new.unet_size, new.num_workers, new.use_smc) == (32, 1, False)
    assert new.unet_features == (2, 4, 8, 16, 32) and new.tau == 0.9 and new.compile is True
    # --batch sets both sizes; an explicit --batch-unlabeled wins over it
    b = config_from_args(_args("--profile", "tiny", "--batch", "3", "--suponly",
                               "--batch-unlabeled", "1"))  # fmt: skip
    assert (b.batch_labeled, b.batch_unlabeled, b.suponly) == (3, 1, True)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--unet-features", "16,x"], "comma-separated numbers"),
        (["--alpha-mode", "loud"], "invalid choice"),
        (["--seed", "one"], "invalid int"),
    ],
)
def test_bad_option_values_exit_2_with_a_message(extra, message, capsys):
    with pytest.raises(SystemExit) as e:
        _args(*extra)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_out_of_range_value_is_a_clear_error():
    with pytest.raises(ValueError, match=r"tau must lie in \[0.0, 1.0\], not 1.5"):
        config_from_args(_args("--profile", "tiny", "--tau", "1.5"))


def test_benchmarks_are_not_subcommands_of_the_installed_cli(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["benchmark", "faz", "--out", "o"])
    assert e.value.code == 2 and "invalid choice: 'benchmark'" in capsys.readouterr().err
    assert "python -m benchmarks" in build_parser().format_help()
    args = build_parser().parse_args(["bench", "--quick", "--out", "b.json", "--no-overlay"])
    assert (args.quick, args.no_overlay, args.out, args.profiles) == (True, True, "b.json", None)
