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


class SynFoCIOError(ValueError):
    """A file cannot be read or written; the message names the file and the problem."""


def io_error(path: str | os.PathLike, problem: str, verb: str = "read") -> SynFoCIOError:
    """``SynFoCIOError("cannot <verb> '<name>': <problem>")`` (the name without its folder)."""
    name = os.path.basename(os.path.normpath(os.fspath(path))) or os.fspath(path)
    return SynFoCIOError(f"cannot {verb} {name!r}: {problem}")


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
            raise ValueError(f"spacing must be positive, got {spacing}")
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
    def to_metadata(self, source: str | os.PathLike | None = None) -> dict[str, Any]:
        """The ``synfoc_*`` metadata entries (plain lists, JSON friendly)."""
        meta: dict[str, Any] = {
            META_SPACING: list(self.spacing),
            META_ORIGIN: list(self.origin),
            META_DIRECTION: [list(r) for r in self.direction],
        }
        if source is not None:
            meta[META_SOURCE] = os.fspath(source)
        return meta

    def to_layer_kwargs(self, source: str | os.PathLike | None = None) -> dict[str, Any]:
        """``scale``, ``translate`` and ``metadata`` for a napari layer with this geometry."""
        return {
            "scale": list(self.spacing),
            "translate": list(self.origin),
            "metadata": self.to_metadata(source),
        }

    @classmethod
    def from_layer_meta(cls, meta: dict[str, Any], ndim: int) -> Geometry:
        """Geometry of a napari layer from its data-tuple ``meta`` (scale, translate, metadata).

        Spacing and origin come from the layer's ``scale``/``translate`` (what the user sees);
        the direction from ``metadata['synfoc_direction']`` when it fits ``ndim`` axes, else
        identity.  Missing entries fall back to the ``synfoc_*`` metadata, then to defaults.
        """
        md = meta.get("metadata") or {}

        def pick(key: str, md_key: str, default: float) -> tuple[float, ...]:
            for cand in (meta.get(key), md.get(md_key)):
                if cand is not None and len(cand) >= ndim:
                    return tuple(float(v) for v in list(cand)[-ndim:])
            return (default,) * ndim

        spacing = pick("scale", META_SPACING, 1.0)
        origin = pick("translate", META_ORIGIN, 0.0)
        direction = md.get(META_DIRECTION)
        d = np.asarray(direction, dtype=float) if direction is not None else None
        if d is None or d.shape != (ndim, ndim):
            d = np.eye(ndim)
        return cls(spacing, origin, tuple(map(tuple, d)))

    def allclose(self, other: Geometry, atol: float = 1e-5) -> bool:
        """True when both geometries agree within ``atol``."""
        return (
            self.ndim == other.ndim
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )
