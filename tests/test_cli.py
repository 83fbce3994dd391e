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


def _args(*extra):
    return build_parser().parse_args(
        [
            "train",
            "--data",
            "D",
            "--labeled-domain",
            "A",
            "--n-labeled",
            "2",
            "--iterations",
            "5",
            "--out",
            "O",
            *extra,
        ]
    )


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
    rc = main(
        [
            "train",
            "--data",
            "nowhere",
            "--labeled-domain",
            "A",
            "--n-labeled",
            "1",
            "--iterations",
            "1",
            "--out",
            "o",
            "--foundation",
            "medsam-vitb",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "nowhere" in err or "needs a checkpoint" in err


def test_unknown_data_folder_is_reported(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--data",
            str(tmp_path / "none"),
            "--labeled-domain",
            "A",
            "--n-labeled",
            "1",
            "--iterations",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--profile",
            "tiny",
        ]
    )
    assert rc == 2
    assert "none" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train"], ["eval", "--data", "x"]])
def test_missing_required_options_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2


def test_benchmark_subcommands_delegate_lazily(monkeypatch):
    import sys
    import types

    from napari_synfoc import cli

    seen = {}
    for name, module in cli.DELEGATED_BENCHMARKS.items():
        fake = types.ModuleType(module)
        fake.main = lambda argv, name=name: seen.setdefault(name, list(argv)) and 0
        monkeypatch.setitem(sys.modules, module, fake)
    assert main(["benchmark", "interactive", "--quick", "--out", "x"]) == 0
    assert main(["benchmark", "prompts", "--out", "y"]) == 0
    assert seen == {"interactive": ["--quick", "--out", "x"], "prompts": ["--out", "y"]}
    args = build_parser().parse_args(["benchmark", "faz", "--out", "o"])
    assert args.which == "faz"
