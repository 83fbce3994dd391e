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
