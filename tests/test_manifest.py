"""The npe2 manifest: valid in the editable install and in a built wheel."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari.yaml"
PKG_MANIFEST = REPO / "napari_synfoc" / "napari.yaml"
WIDGET_CMD = "napari-synfoc.synfoc_widget"


def _run(cmd, **kw):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=300, env=env, **kw
    )


def test_package_manifest_is_symlink_to_top_level():
    assert PKG_MANIFEST.is_symlink()
    assert os.readlink(PKG_MANIFEST) == "../napari.yaml"
    assert PKG_MANIFEST.read_bytes() == MANIFEST.read_bytes()


def test_npe2_validate_editable_install():
    res = _run([sys.executable, "-m", "npe2", "validate", "napari-synfoc"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout


def test_manifest_contributions():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-synfoc")
    assert pm.name == "napari-synfoc" and pm.display_name == "SynFoC"
    c = pm.contributions
    [reader] = c.readers
    assert reader.accepts_directories
    assert set(reader.filename_patterns) == {
        "*.nii", "*.nii.gz", "*.mha", "*.mhd", "*.nrrd", "*.dcm", "*.dicom", "*.ima",
        "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff",
    }  # fmt: skip
    writers = {tuple(w.layer_types): set(w.filename_extensions) for w in c.writers}
    assert writers[("labels",)] == writers[("image",)] == {".nii.gz", ".nii", ".mha", ".nrrd"}
    [sample] = c.sample_data
    assert sample.key == "synfoc_demo"
    assert sample.display_name == "SynFoC demo: mixed-scanner stack"
    [widget] = c.widgets
    assert widget.command == WIDGET_CMD and widget.display_name == "SynFoC"
    cmds = {cmd.id: cmd.python_name for cmd in c.commands}
    assert cmds[WIDGET_CMD] == "napari_synfoc.widgets.dock:SynFoCWidget"
    # every I/O command resolves to a real callable
    for cid, py in cmds.items():
        if cid == WIDGET_CMD:
            continue
        mod, attr = py.split(":")
        assert callable(getattr(importlib.import_module(mod), attr)), py


def test_reader_is_offered_and_preferred_for_medical_files(tmp_path, monkeypatch):
    """npe2 offers our reader for medical files, but napari's built-in reader claims the same
    patterns (and npe2's order between the two is not ours to set), so napari would ask;
    prefer_synfoc_reader() records our plugin as the preferred reader for them, keeping a choice
    the user already made."""
    import napari.settings
    from napari.plugins.utils import get_preferred_reader
    from napari.settings import NapariSettings, get_settings
    from npe2 import PluginManager

    from napari_synfoc.io.readers import MEDICAL_PATTERNS, prefer_synfoc_reader

    pm = PluginManager.instance()
    pm.discover()
    for name in ("x.nii.gz", "x.nii", "x.mha", "x.mhd", "x.nrrd", "x.dcm", str(tmp_path)):
        readers = [r.plugin_name for r in pm.iter_compatible_readers([name])]
        assert "napari-synfoc" in readers, (name, readers)
    assert "napari" in [r.plugin_name for r in pm.iter_compatible_readers(["x.nii.gz"])]

    # a private, never-saved settings object: the user's napari settings file is not touched
    monkeypatch.setattr(napari.settings, "_SETTINGS", NapariSettings(config_path=None))
    plugins = get_settings().plugins
    plugins.extension2reader = {"*.nrrd": "someone-else"}
    added = prefer_synfoc_reader()
    assert "*.nrrd" not in added and set(added) == set(MEDICAL_PATTERNS) - {"*.nrrd"}
    assert get_preferred_reader(str(tmp_path / "scan.nii.gz")) == "napari-synfoc"
    assert get_preferred_reader(str(tmp_path / "one.dcm")) == "napari-synfoc"
    assert get_preferred_reader(str(tmp_path / "x.nrrd")) == "someone-else"
    assert prefer_synfoc_reader() == []  # idempotent


def test_widget_command_resolves():
    from napari_synfoc.widgets.dock import SynFoCWidget

    first = next(iter(inspect.signature(SynFoCWidget).parameters))
    assert first == "napari_viewer"


def test_manifest_file_is_plain_yaml():
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert data["name"] == "napari-synfoc"


def _copy_source(dst: Path) -> Path:
    """Copy the source tree as a clean checkout has it (the package and everything beside it:
    benchmarks/, tests/, resources/; symlinks kept as symlinks) so the build never touches
    REPO and the wheel test sees what setuptools could pick up."""
    src = dst / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "napari.yaml", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    for folder in ("napari_synfoc", "benchmarks", "tests", "resources"):
        shutil.copytree(
            REPO / folder,
            src / folder,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    assert (src / "napari_synfoc" / "napari.yaml").is_symlink()
    assert (src / "benchmarks" / "__init__.py").is_file()  # a package setuptools could find
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree (``pip wheel``, no build isolation)."""
    if not (REPO / "README.md").exists():
        pytest.fail("README.md is missing but pyproject.toml declares readme = 'README.md'")
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(tmp)
    dist = tmp / "dist"
    res = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(dist), str(src)]
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    [whl] = list(dist.glob("napari_synfoc-*.whl"))
    return whl


@pytest.mark.slow  # builds the wheel (about 15 s); CI runs it
def test_wheel_holds_the_package_and_its_manifest_only(wheel):
    """Benchmarks, tests, resources and docs stay out of the wheel; the manifest (a real file,
    not the symlink), the licence and the entry points are in; one version everywhere."""
    from napari_synfoc import __version__

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        tops = {n.split("/")[0] for n in names}
        assert tops == {"napari_synfoc", f"napari_synfoc-{__version__}.dist-info"}, tops
        assert not [n for n in names if n.startswith("napari_synfoc/bench")]
        assert not [n for n in names if "benchmarks" in n or "/tests/" in n]
        assert "napari_synfoc/machine_check.py" in names  # bench --quick stays installed
        info = zf.getinfo("napari_synfoc/napari.yaml")
        mode = info.external_attr >> 16
        assert not stat.S_ISLNK(mode), "the wheel holds a symlink, not the manifest"
        assert zf.read(info) == MANIFEST.read_bytes()
        [ep] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        eps = zf.read(ep).decode()
        assert "[napari.manifest]" in eps and "napari-synfoc = napari_synfoc:napari.yaml" in eps
        assert "napari-synfoc = napari_synfoc.cli:main" in eps
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
        assert f"\nVersion: {__version__}\n" in metadata
        assert "License-Expression: Apache-2.0" in metadata
        [lic] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(lic) == (REPO / "LICENSE").read_bytes()
    assert b"Apache License" in (REPO / "LICENSE").read_bytes()[:200]


@pytest.mark.slow
def test_wheel_installs_and_its_manifest_validates(wheel, tmp_path):
    venv = tmp_path / "venv"
    res = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    assert res.returncode == 0, res.stderr
    vpy = venv / "bin" / "python"
    res = _run([str(vpy), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # npe2 and the runtime dependencies come from the project's venv, *after* the fresh venv's
    # own site-packages (a .pth path line is appended, and the editable finder there is not run)
    vsite = _run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    (Path(vsite) / "zz_project_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )

    check = (
        "import napari_synfoc, npe2, pathlib;"
        "p = pathlib.Path(napari_synfoc.__file__).resolve();"
        f"assert str(p).startswith({str(venv.resolve())!r}), p;"
        "m = p.parent / 'napari.yaml';"
        "assert m.is_file() and not m.is_symlink(), m;"
        "pm = npe2.PluginManifest.from_distribution('napari-synfoc');"
        "print(pm.name, pm.display_name, len(pm.contributions.readers))"
    )
    res = _run([str(vpy), "-c", check], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["napari-synfoc", "SynFoC", "1"]
    res = _run([str(vpy), "-m", "npe2", "validate", "napari-synfoc"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout
