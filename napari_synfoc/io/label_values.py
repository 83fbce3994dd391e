"""Is a volume a label map?  By its name, or by its values (a float segmentation file).

:func:`as_label_map` turns a file named like a label map into integer class indices when that
loses nothing, and otherwise returns a note saying why it stays an image and what to do.
"""

from __future__ import annotations

import os

import numpy as np

# A label-named file with more distinct values than this is not taken as a label map.
MAX_LABEL_VALUES = 1000
# An unnamed volume with at most this many distinct whole values >= 0 looks like labels.
FEW_VALUES = 16
_SAMPLE = 1 << 20


def _whole(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "iub":
        return True
    return bool(np.isfinite(arr).all() and np.array_equal(arr, np.floor(arr)))


def _fmt(v: float) -> str:
    return f"{float(v):g}"


def _to_integers(arr: np.ndarray) -> np.ndarray:
    top = int(arr.max()) if arr.size else 0
    return arr.astype(np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32)


def as_label_map(
    arr: np.ndarray, path: str | os.PathLike, named_label: bool
) -> tuple[np.ndarray | None, str | None]:
    """``(labels, None)`` when ``arr`` is a label map, else ``(None, note or None)``.

    ``named_label``: the file name says label map (see ``is_label_name``).  Integer arrays so
    named are labels as they are; float ones become unsigned integers when every value is a
    whole number >= 0 and there are at most :data:`MAX_LABEL_VALUES` of them (loss-free).
    A volume not so named whose values are a few whole numbers >= 0 gets a note saying how to
    open it as labels.  Reads a sample first, so large scans cost one strided pass.
    """
    name = os.path.basename(os.fspath(path))
    a = np.asarray(arr)
    if a.size == 0 or a.dtype.kind not in "iubf":
        return None, None
    if named_label:
        if a.dtype.kind in "iu":
            return a, None
        if a.dtype.kind == "b":
            return a.astype(np.uint8), None
        if not _whole(a):
            bad = a[~(np.isfinite(a) & (a == np.floor(a)))].flat[0]
            return None, (
                f"'{name}' is named like a label map but holds values that are not whole "
                f"numbers (e.g. {_fmt(bad)}): opened as an image. Labels are whole numbers "
                "0, 1, 2, ...; if it is a probability map, threshold it first."
            )
        values = np.unique(a)
        if values[0] < 0 or len(values) > MAX_LABEL_VALUES:
            return None, (
                f"'{name}' is named like a label map but holds {len(values)} different values "
                f"from {_fmt(values[0])} to {_fmt(values[-1])}: opened as an image. If it is a "
                "label map, right-click its layer > Convert to Labels."
            )
        return _to_integers(a), None
    if a.ndim != 3:
        return None, None
    sample = a.ravel()[:: max(1, a.size // _SAMPLE)]
    few = np.unique(sample)
    if len(few) > FEW_VALUES or few[0] < 0 or not _whole(few):
        return None, None
    values = np.unique(a)
    if len(values) > FEW_VALUES or values[0] < 0 or not _whole(values) or len(values) < 2:
        return None, None
    ext = ".nii.gz" if name.lower().endswith(".nii.gz") else os.path.splitext(name)[1]
    stem = name[: len(name) - len(ext)]
    shown = ", ".join(_fmt(v) for v in values)
    return None, (
        f"'{name}' holds only the values {shown}: if it is a label map, right-click its layer "
        f"> Convert to Labels, or name the file like {stem}_seg{ext} to open it as labels."
    )
