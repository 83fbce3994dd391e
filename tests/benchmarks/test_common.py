"""The benchmarks' shared helpers: data paths, parser skeleton, stack config, report files."""

from __future__ import annotations

import pytest

from benchmarks import common as C


def test_data_paths_sit_under_the_shared_data_next_to_the_repository():
    assert C.FAZ_ROOT == C.SHARED_DATA / "faz_octa_5sites" / "data" / "FAZ"
    assert C.DRISHTI_ROOT == C.SHARED_DATA / "drishti_gs" / "Drishti-GS"
    assert C.SHARED_DATA == C.REPO_ROOT.parent / "shared" / "data"
    assert (C.REPO_ROOT / "pyproject.toml").is_file()


def test_data_folder_or_the_data_set_folder_itself(tmp_path):
    assert C.faz_root() == C.FAZ_ROOT and C.drishti_root() == C.DRISHTI_ROOT
    assert C.faz_root(tmp_path) == tmp_path / "faz_octa_5sites" / "data" / "FAZ"
    assert C.drishti_root(str(tmp_path)) == tmp_path / "drishti_gs" / "Drishti-GS"
    (tmp_path / "Domain1").mkdir()
    (tmp_path / "split_official.tsv").write_text("name\tsplit\n", encoding="utf-8")
    assert C.faz_root(tmp_path) == tmp_path and C.drishti_root(tmp_path) == tmp_path


def test_bench_parser_requires_out_and_has_quick(capsys):
    p = C.bench_parser("prog-x", "what it does", quick_help="fast")
    args = p.parse_args(["--out", "d"])
    assert args.out == "d" and args.quick is False and args.data == str(C.SHARED_DATA)
    assert p.parse_args(["--out", "d", "--data", "/x"]).data == "/x"
    assert p.parse_args(["--out", "d", "--quick"]).quick is True
    with pytest.raises(SystemExit):
        p.parse_args([])
    assert "--out" in capsys.readouterr().err
    assert "fast" in p.format_help() and p.prog == "prog-x"


def test_stack_config_is_binary_grey_with_overrides():
    cfg = C.stack_config("tiny", 7, "cpu", seed=99)
    assert (cfg.num_classes, cfg.in_channels) == (2, 1)
    assert (cfg.iterations, cfg.device, cfg.seed) == (7, "cpu", 99)


def test_write_report_writes_markdown_draws_png_and_prints(tmp_path, capsys):
    drawn = []

    def plot(path):
        drawn.append(path)
        path.write_bytes(b"png")

    C.write_report(tmp_path, "r", "# title\n", plot)
    assert (tmp_path / "r.md").read_text(encoding="utf-8") == "# title\n"
    assert drawn == [tmp_path / "r.png"] and (tmp_path / "r.png").exists()
    assert "# title" in capsys.readouterr().out
