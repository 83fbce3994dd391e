"""Voxel geometry in napari axis order, and the one I/O error class.

SimpleITK speaks (x, y, z); numpy arrays from ``sitk.GetArrayFromImage`` and napari layers speak
(z, y, x).  :class:`Geometry` always holds napari order, and converts at the SimpleITK boundary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Keys under which readers store the geometry in a layer's ``metadata``.
META_SPACING = "synfoc_spacing"
META_ORIGIN = "synfoc_origin"
META_DIRECTION = "synfoc_direction"
META_SOURCE = "synfoc_source"
# How the reader transposed/flipped the file's voxels: {"axes": [...], "flip": [...]}.
META_FILE_AXES = "synfoc_file_axes"


class SynFoCIOError(ValueError):
    """A file cannot be read or written; the message names the file and the problem."""


def io_error(path: str | os.PathLike, problem: str, verb: str = "read") -> SynFoCIOError:
    """``SynFoCIOError("cannot <verb> '<name>': <problem>")`` (the name without its folder)."""
    name = os.path.basename(os.path.normpath(os.fspath(path))) or os.fspath(path)
    return SynFoCIOError(f"cannot {verb} {name!r}: {problem}")


def plain_numbers(values: Any) -> str:
    """``(0.5, 0.5, 2)``: numbers as a user reads them (no ``np.float64(...)`` reprs)."""
    return "(" + ", ".join(f"{float(v):g}" for v in np.ravel(values)) + ")"


def os_problem(exc: OSError) -> str:
    """An ``OSError`` in words, without its ``[Errno N]`` prefix, with what to do."""
    import errno

    if exc.errno == errno.ENOSPC:
        return "the disk is full; free some space or choose another folder"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the folder cannot be written (read-only or no permission); choose another folder"
    return exc.strerror or str(exc)


@dataclass(frozen=True)
class Geometry:
    """Spacing, origin and direction of an N-D grid (N = 2 or 3), in napari order (z, y, x).

    ``direction[i][j]`` is the physical component along axis ``i`` of index axis ``j``, both in
    napari order, i.e. the SimpleITK direction matrix with rows and columns reversed.
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[tuple[float, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.spacing)
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        direction = self.direction
        d = np.eye(n) if direction is None or len(direction) == 0 else np.asarray(direction, float)
        if len(origin) != n or d.shape != (n, n):
            raise ValueError(
                f"inconsistent geometry: spacing has {n} axes, origin {len(origin)}, "
                f"direction shape {d.shape}"
            )
        if any(not np.isfinite(s) or s <= 0 for s in spacing):
            raise ValueError(f"spacing must be positive, got {plain_numbers(spacing)}")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in d))

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    @classmethod
    def identity(cls, ndim: int) -> Geometry:
        """Unit spacing, zero origin, identity direction."""
        return cls((1.0,) * ndim, (0.0,) * ndim)

    # --- SimpleITK boundary -------------------------------------------------------------
    @classmethod
    def from_sitk(cls, image: Any) -> Geometry:
        """The geometry of a ``SimpleITK.Image`` (converted from x, y, z order)."""
        n = image.GetDimension()
        d = np.asarray(image.GetDirection(), dtype=float).reshape(n, n)
        return cls(
            tuple(image.GetSpacing())[::-1],
            tuple(image.GetOrigin())[::-1],
            tuple(map(tuple, d[::-1, ::-1])),
        )

    def to_sitk(self, image: Any) -> Any:
        """Set this geometry on a ``SimpleITK.Image`` (in place) and return it."""
        if image.GetDimension() != self.ndim:
            raise ValueError(
                f"geometry has {self.ndim} axes but the image has {image.GetDimension()}"
            )
        image.SetSpacing(self.spacing[::-1])
        image.SetOrigin(self.origin[::-1])
        d = np.asarray(self.direction, dtype=float)[::-1, ::-1]
        image.SetDirection(tuple(d.ravel()))
        return image

    # --- napari boundary ----------------------------------------------------------------
    def affine_matrix(self) -> np.ndarray:
        """The ``(n+1, n+1)`` voxel-index -> patient-mm matrix (napari order)."""
        n = self.ndim
        m = np.eye(n + 1)
        m[:n, :n] = np.asarray(self.direction) @ np.diag(self.spacing)
        m[:n, n] = self.origin
        return m

    @classmethod
    def from_affine(cls, matrix: Any, what: str = "the layer") -> Geometry:
        """Spacing, origin and direction from a voxel -> world ``(n+1, n+1)`` matrix.

        ValueError when the linear part is not a scaled rotation/reflection (a shear, or a
        zero scale), which medical formats cannot store.
        """
        m = np.asarray(matrix, dtype=float)
        n = m.shape[0] - 1
        lin = m[:n, :n]
        spacing = np.linalg.norm(lin, axis=0)
        if np.any(spacing <= 0) or not np.all(np.isfinite(lin)):
            size = plain_numbers(spacing)
            raise ValueError(f"{what} has a zero or non-finite voxel size {size}")
        d = lin / spacing
        if not np.allclose(d.T @ d, np.eye(n), atol=1e-4):
            raise ValueError(
                f"{what} is sheared (its transform is not a rotation times a voxel size); "
                "medical formats store only spacing, origin and direction: remove the shear"
            )
        return cls(tuple(spacing), tuple(m[:n, n]), tuple(map(tuple, d)))

    def to_metadata(self, source: str | os.PathLike | None = None) -> dict[str, Any]:
        """``synfoc_source`` metadata (the path the layer came from), JSON friendly."""
        return {META_SOURCE: os.fspath(source)} if source is not None else {}

    def to_layer_kwargs(self, source: str | os.PathLike | None = None) -> dict[str, Any]:
        """napari layer kwargs putting the layer in patient coordinates (mm, LPS reversed).

        ``scale`` = spacing and ``affine`` = direction + origin, so world = D (s * index) + o:
        napari's world axes (0, 1, 2) are patient (S, P, L) in mm and the status bar shows
        millimetres.  Pass the same kwargs to layers drawn on this one.
        """
        n = self.ndim
        aff = np.eye(n + 1)
        aff[:n, :n] = self.direction
        aff[:n, n] = self.origin
        return {
            "scale": list(self.spacing),
            "translate": [0.0] * n,
            "affine": aff,
            "metadata": self.to_metadata(source),
        }

    @classmethod
    def from_layer_meta(cls, meta: dict[str, Any], ndim: int) -> Geometry:
        """Geometry of a napari layer's last ``ndim`` axes from its data-tuple ``meta``.

        Composes ``affine`` @ (translate, rotate, shear, scale) as napari does, so world
        coordinates are the patient position.  Layers saved by older versions (direction only
        in ``metadata['synfoc_direction']``, no rotation/affine) keep that direction.
        """
        full = _layer_matrix(meta, ndim)
        md = meta.get("metadata") or {}
        legacy = md.get(META_DIRECTION)
        if legacy is not None and np.allclose(full[:ndim, :ndim], np.diag(np.diag(full)[:ndim])):
            d = np.asarray(legacy, dtype=float)
            if d.shape == (ndim, ndim):
                spacing = tuple(np.diag(full)[:ndim])
                if all(s > 0 for s in spacing):
                    return cls(spacing, tuple(full[:ndim, ndim]), tuple(map(tuple, d)))
        return cls.from_affine(full, str(meta.get("name") or "the layer"))

    def allclose(self, other: Geometry, atol: float = 1e-5) -> bool:
        """True when both geometries agree within ``atol``."""
        return (
            self.ndim == other.ndim
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )


def _tail(values: Any, ndim: int, default: float) -> np.ndarray:
    if values is None:
        return np.full(ndim, default)
    v = np.asarray(values, dtype=float).ravel()
    return v[-ndim:] if v.size >= ndim else np.concatenate([np.full(ndim - v.size, default), v])


def _tail_matrix(m: Any, ndim: int) -> np.ndarray:
    """The bottom-right ``ndim`` x ``ndim`` block of a square matrix (identity when None)."""
    if m is None:
        return np.eye(ndim)
    a = np.asarray(m, dtype=float)
    if a.shape[0] < ndim:
        out = np.eye(ndim)
        out[ndim - a.shape[0] :, ndim - a.shape[0] :] = a
        return out
    return a[-ndim:, -ndim:]


def _layer_matrix(meta: dict[str, Any], ndim: int) -> np.ndarray:
    """napari's data -> world ``(ndim+1)``-square matrix (scale/translate/rotate/shear/affine)."""
    scale = _tail(meta.get("scale"), ndim, 1.0)
    translate = _tail(meta.get("translate"), ndim, 0.0)
    rotate = _tail_matrix(meta.get("rotate"), ndim)
    shear_in = meta.get("shear")
    shear = np.eye(ndim)
    if shear_in is not None:
        sh = np.asarray(shear_in, dtype=float)
        if sh.ndim == 2:
            shear = _tail_matrix(sh, ndim)
        elif sh.size:
            big = int(round((1 + np.sqrt(8 * sh.size + 1)) / 2))
            full = np.eye(big)
            full[np.triu(np.ones((big, big)), 1).astype(bool)] = sh
            shear = full[-ndim:, -ndim:]
    inner = np.eye(ndim + 1)
    inner[:ndim, :ndim] = rotate @ shear @ np.diag(scale)
    inner[:ndim, ndim] = translate
    aff_in = meta.get("affine")
    outer = np.eye(ndim + 1)
    if aff_in is not None:
        a = np.asarray(getattr(aff_in, "affine_matrix", aff_in), dtype=float)
        k = a.shape[0] - 1
        if k >= ndim:
            outer[:ndim, :ndim] = a[k - ndim : k, k - ndim : k]
            outer[:ndim, ndim] = a[k - ndim : k, k]
        else:
            outer[ndim - k : ndim, ndim - k : ndim] = a[:k, :k]
            outer[ndim - k : ndim, ndim] = a[:k, k]
    return outer @ inner


def geometry_from_layer(layer: Any) -> Geometry:
    """The patient geometry of a napari layer's grid (its spatial axes), from its transforms."""
    ndim = int(layer.ndim)
    meta = {
        "name": getattr(layer, "name", None),
        "scale": layer.scale,
        "translate": layer.translate,
        "rotate": getattr(layer, "rotate", None),
        "shear": getattr(layer, "shear", None),
        "affine": getattr(layer, "affine", None),
        "metadata": getattr(layer, "metadata", None),
    }
    return Geometry.from_layer_meta(meta, ndim)


def layer_kwargs(geometry: Geometry, source: str | os.PathLike | None = None) -> dict[str, Any]:
    """napari layer kwargs (scale, translate, affine, metadata) for ``geometry``."""
    return geometry.to_layer_kwargs(source)


# --- reorientation: the layer grid follows the patient axes --------------------------------
def patient_axes(direction: Any) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """``(axes, flip)``: the transpose and flips that make index axis ``i`` run along patient
    axis ``i`` in the positive direction (napari order (S, P, L))."""
    d = np.abs(np.asarray(direction, dtype=float))
    n = d.shape[0]
    axes = [-1] * n
    free_rows, free_cols = set(range(n)), set(range(n))
    for _ in range(n):  # greedy on the largest remaining cosine: always a permutation
        i, j = max(((i, j) for i in free_rows for j in free_cols), key=lambda ij: d[ij])
        axes[i] = j
        free_rows.discard(i)
        free_cols.discard(j)
    signed = np.asarray(direction, dtype=float)
    flip = tuple(bool(signed[i, axes[i]] < 0) for i in range(n))
    return tuple(axes), flip


def reorient(
    array: np.ndarray, geometry: Geometry, axes: Any, flip: Any
) -> tuple[np.ndarray, Geometry]:
    """Transpose ``array`` by ``axes`` then reverse the axes where ``flip``; the geometry
    follows so every voxel keeps its patient position (exactly, up to float rounding)."""
    axes = [int(a) for a in axes]
    flip = [bool(f) for f in flip]
    n = geometry.ndim
    arr = np.asarray(array).transpose(axes + list(range(n, np.ndim(array))))
    sl = tuple(slice(None, None, -1) if f else slice(None) for f in flip)
    arr = arr[sl]
    d = np.asarray(geometry.direction, dtype=float)
    sp = np.asarray(geometry.spacing, dtype=float)
    shape = np.shape(array)
    corner = np.zeros(n)
    for a, f in zip(axes, flip, strict=True):
        if f:
            corner[a] = shape[a] - 1
    origin = np.asarray(geometry.origin) + d @ (sp * corner)
    new_d = np.stack(
        [d[:, a] * (-1.0 if f else 1.0) for a, f in zip(axes, flip, strict=True)], axis=1
    )
    return arr, Geometry(tuple(sp[axes]), tuple(origin), tuple(map(tuple, new_d)))


def inverse_orientation(axes: Any, flip: Any) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """The ``(axes, flip)`` that undo :func:`reorient` with ``(axes, flip)``."""
    inv = tuple(int(i) for i in np.argsort(np.asarray(axes, dtype=int)))
    return inv, tuple(bool(flip[k]) for k in inv)


def file_array_and_geometry(
    data: Any, geometry: Geometry, metadata: dict[str, Any] | None
) -> tuple[np.ndarray, Geometry]:
    """Data on a layer grid back in the voxel order of the file it was read from.

    ``metadata`` is the source layer's (its ``synfoc_file_axes`` entry, written by the
    reader); without one, or when the axes do not fit, the layer grid is returned unchanged.
    """
    arr = np.asarray(data)
    rec = (metadata or {}).get(META_FILE_AXES)
    if not rec or len(rec.get("axes", ())) != geometry.ndim:
        return arr, geometry
    axes, flip = inverse_orientation(rec["axes"], rec["flip"])
    return reorient(arr, geometry, axes, flip)
