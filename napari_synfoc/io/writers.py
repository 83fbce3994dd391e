"""Write volumes with their full geometry (Qt-free), plus the napari layer writers.

Every save is atomic: the file is written under a temporary name in the target folder and then
moved over the target with ``os.replace``, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from napari_synfoc.io.geometry import (
    Geometry,
    SynFoCIOError,
    file_array_and_geometry,
    io_error,
    os_problem,
)
from napari_synfoc.io.readers import file_suffix

WRITE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


def _labels_dtype(arr: np.ndarray) -> np.dtype:
    """The smallest integer type that holds a label map's values (unsigned when possible)."""
    if arr.dtype == bool:
        return np.dtype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise SynFoCIOError(f"label maps must hold integers, got {arr.dtype}")
    if arr.size == 0:
        return np.dtype(np.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    for t in (np.uint8, np.uint16, np.uint32) if lo >= 0 else (np.int8, np.int16, np.int32):
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return np.dtype(t)
    return np.dtype(np.int64)


def write_volume(
    path: str | os.PathLike,
    array: Any,
    geometry: Geometry | None = None,
    *,
    labels: bool = False,
    rgb: bool = False,
    compress: bool = True,
) -> str:
    """Write ``array`` ((Z, Y, X), (Y, X) or (Y, X, 3) with ``rgb``) to ``path`` atomically.

    ``geometry`` (napari order; default identity) sets spacing, origin and direction.  With
    ``labels=True`` the values are stored in the smallest integer type that holds them.
    The format follows the suffix: ``.nii.gz``, ``.nii``, ``.mha``, ``.nrrd``.  Returns the
    path written; raises :class:`SynFoCIOError` naming the file on any problem.
    """
    import SimpleITK as sitk

    p = os.fspath(path)
    suffix = file_suffix(p)
    if suffix not in WRITE_SUFFIXES:
        raise io_error(
            p, f"unsupported file type {suffix or '(no suffix)'!r}; use one of "
            f"{', '.join(WRITE_SUFFIXES)}", verb="write",
        )  # fmt: skip
    arr = np.asarray(array)
    if labels:
        arr = arr.astype(_labels_dtype(arr), copy=False)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    spatial = arr.ndim - 1 if rgb else arr.ndim
    if spatial not in (2, 3):
        raise io_error(p, f"only 2D and 3D data can be written, got shape {arr.shape}", "write")
    if geometry is None:
        geometry = Geometry.identity(spatial)
    if geometry.ndim != spatial:
        raise io_error(
            p, f"geometry has {geometry.ndim} axes but the data {arr.shape} has {spatial}",
            "write",
        )  # fmt: skip
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr), isVector=rgb)
    geometry.to_sitk(img)

    folder = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(folder):
        raise io_error(p, f"folder {folder!r} does not exist", "write")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".synfoc-tmp-", suffix=suffix, dir=folder)
        os.close(fd)
        sitk.WriteImage(img, tmp, useCompression=compress and suffix != ".nii")
        os.replace(tmp, p)
    except OSError as e:
        raise io_error(p, f"{os_problem(e)} (in folder {folder!r})", "write") from e
    except RuntimeError as e:
        raise io_error(p, f"writing failed ({str(e).strip().splitlines()[-1]})", "write") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return p


# --- napari writers: single-layer signature (path, data, meta) -> list[str] ----------------
def _file_grid(data: Any, meta: dict[str, Any], rgb: bool) -> tuple[np.ndarray, Geometry]:
    """The layer's data and patient geometry, back in the voxel order of its source file."""
    arr = np.asarray(data)
    ndim = arr.ndim - (1 if rgb else 0)
    try:
        geom = Geometry.from_layer_meta(meta, ndim)
    except ValueError as e:
        raise SynFoCIOError(f"cannot write layer {meta.get('name', '')!r}: {e}") from None
    return file_array_and_geometry(arr, geom, meta.get("metadata"))


def napari_write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for a Labels layer: patient geometry from the layer's transforms (affine,
    scale, translate...), voxels in the order of the file the layer was read from."""
    arr, geom = _file_grid(data, meta, False)
    return [write_volume(path, arr, geom, labels=True)]


def napari_write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for an Image layer (grey, or 2D RGB): geometry as for labels."""
    rgb = bool(meta.get("rgb", False))
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]  # full resolution
    arr, geom = _file_grid(data, meta, rgb)
    return [write_volume(path, arr, geom, rgb=rgb)]
