"""Shared test fixtures (keep them small and generic)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Import torch and torchvision (and with them triton) before any test opens a napari
    viewer: triton's LLVM segfaults when Mesa's libLLVM (software OpenGL under Xvfb) is loaded
    first. The widget guards its own imports (widgets/process_tweaks.avoid_triton_llvm_clash)."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    # The embedding cache and the encoder's ONNX export go to a folder of this test session
    # (training children inherit it), not into the user's cache.
    if "NAPARI_SYNFOC_CACHE_DIR" not in os.environ:
        config._synfoc_cache = tempfile.mkdtemp(prefix="synfoc-test-cache-")
        os.environ["NAPARI_SYNFOC_CACHE_DIR"] = config._synfoc_cache


# Fixtures that open a napari viewer (or a Qt widget): such a test costs 2-20 s on a 2-core CPU.
_GUI_FIXTURES = ("make_napari_viewer", "qtbot")


def pytest_collection_modifyitems(config, items):
    """Tests that open a viewer or a Qt widget are ``gui`` and ``slow``: the fast loop
    (``pytest -m "not slow"``) is the Qt-free core, app and I/O; CI runs everything."""
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in _GUI_FIXTURES):
            item.add_marker(pytest.mark.gui)
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config):
    folder = getattr(config, "_synfoc_cache", None)
    if folder:
        os.environ.pop("NAPARI_SYNFOC_CACHE_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _rotation_xyz(deg_z: float, deg_x: float) -> np.ndarray:
    """A proper rotation (det +1) in SimpleITK (x, y, z) order: about z, then about x."""
    a, b = math.radians(deg_z), math.radians(deg_x)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


@pytest.fixture
def oblique_sitk_volume():
    """A small int16 SimpleITK volume with a non-trivial geometry, and that geometry.

    Returns ``(image, expected)``; ``expected`` holds napari-order (z, y, x) ``array``,
    ``spacing`` = (2.5, 0.8, 0.7), ``origin`` = (-30.0, 12.5, 40.25) and the 3x3 ``direction``
    (SimpleITK's matrix with rows and columns reversed).
    """
    import SimpleITK as sitk

    rng = np.random.default_rng(7)
    arr = rng.integers(-200, 1200, size=(5, 9, 11)).astype(np.int16)  # (z, y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))  # (x, y, z)
    img.SetOrigin((40.25, 12.5, -30.0))
    d_xyz = _rotation_xyz(30.0, 20.0)
    img.SetDirection(tuple(d_xyz.ravel()))
    expected = {
        "array": arr,
        "spacing": (2.5, 0.8, 0.7),
        "origin": (-30.0, 12.5, 40.25),
        "direction": d_xyz[::-1, ::-1],
    }
    return img, expected


def _write_dicom_series(
    folder, arr, spacing_xyz, origin_xyz, series_uid="1.2.826.0.1.3680043.8.498.1"
):
    """Write (Z, Y, X) int16 ``arr`` as one DICOM CT series, one file per slice."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)

    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study_uid = "1.2.826.0.1.3680043.8.498.2"
    for k in range(arr.shape[0]):
        sl = sitk.GetImageFromArray(arr[k])
        sl.SetSpacing(spacing_xyz[:2])
        pos = (origin_xyz[0], origin_xyz[1], origin_xyz[2] + k * spacing_xyz[2])
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0010|0010": "Synthetic^Phantom",
            "0010|0020": "SYN0001",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in pos),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing_xyz[1]:g}\\{spacing_xyz[0]:g}",
            "0018|0050": f"{spacing_xyz[2]:g}",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"S{series_uid.rsplit('.', 1)[-1]}_IM{k:04d}.dcm"))
        writer.Execute(sl)


@pytest.fixture
def write_dicom_series():
    """``write(folder: Path, arr (Z, Y, X) int16, spacing_xyz, origin_xyz)``: one CT series,
    one ``.dcm`` file per slice, axial orientation (SimpleITK/GDCM)."""
    return _write_dicom_series


DICOM_UID = "1.2.826.0.1.3680043.8.498.77"


def _write_dicom_slice(
    path, arr2d, z, spacing=(0.5, 0.5), thickness=2.0, uid=DICOM_UID, desc="", k=1
):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr2d.astype(np.int16))
    img.SetSpacing(spacing)
    tags = {
        "0008|0060": "CT",
        "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
        "0008|0018": f"{uid}.{k}.{arr2d.shape[0]}",
        "0020|000d": "1.2.826.0.1.3680043.8.498.2",
        "0020|000e": uid,
        "0020|0013": str(k),
        "0020|0032": f"0\\0\\{z:g}",
        "0020|0037": "1\\0\\0\\0\\1\\0",
        "0028|0030": f"{spacing[1]:g}\\{spacing[0]:g}",
        "0018|0050": f"{thickness:g}",
    }
    if desc:
        tags["0008|103e"] = desc
    for key, value in tags.items():
        img.SetMetaData(key, value)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    w.SetFileName(str(path))
    w.Execute(img)


@pytest.fixture
def write_dicom_slice():
    """Write one CT DICOM slice with SimpleITK: (path, arr2d, z, spacing, thickness, uid,
    desc, k)."""
    return _write_dicom_slice


# ---- synthetic stacks and prompt boxes (tests/app and tests/widgets)
STACK_SIZE = 64  # slices are STACK_SIZE x STACK_SIZE


def _disc_stack(seed: int = 0, z: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:STACK_SIZE, :STACK_SIZE]
    img = rng.normal(0.2, 0.05, (z, STACK_SIZE, STACK_SIZE)).astype(np.float32)
    gt = np.zeros((z, STACK_SIZE, STACK_SIZE), np.int32)
    for i in range(z):
        disc = (yy - 32) ** 2 + (xx - 28 - i) ** 2 < (10 + i) ** 2
        img[i][disc] += 0.6
        gt[i][disc] = 1
    return img, gt


@pytest.fixture
def disc_stack():
    """``make(seed=0, z=6)``: a float32 (z, 64, 64) stack with a bright disc per slice (moving
    and growing with the slice) and its int32 ground truth."""
    return _disc_stack


def _prompt_image(z: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:STACK_SIZE, :STACK_SIZE]
    img = rng.normal(0.2, 0.05, (z, STACK_SIZE, STACK_SIZE)).astype(np.float32)
    for i in range(z):
        img[i][(yy - 32) ** 2 + (xx - 30 - i) ** 2 < (9 + i) ** 2] += 0.6
    return img


@pytest.fixture
def prompt_image():
    """A float32 (6, 64, 64) stack with a bright disc per slice, for the prompt tests."""
    return _prompt_image()


def _rect(z, r0, c0, r1, c1) -> np.ndarray:
    return np.array([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]], float)


@pytest.fixture
def rect():
    """``rect(z, r0, c0, r1, c1)``: napari rectangle vertices (z, row, col) on slice z."""
    return _rect
