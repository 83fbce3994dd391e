"""Read medical volumes and 2D images with their geometry (Qt-free), plus the napari reader.

Volumes (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``) and DICOM series folders go
through SimpleITK; 2D ``.png``/``.jpg`` through PIL and ``.tif``/``.tiff`` through SimpleITK.
Arrays come back in napari axis order (z, y, x) with a :class:`Geometry` in the same order.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_synfoc.io.geometry import (
    META_DIRECTION,
    META_FILE_AXES,
    Geometry,
    SynFoCIOError,
    io_error,
    patient_axes,
    reorient,
)
from napari_synfoc.io.hounsfield import CT_WINDOWS, suggested_window
from napari_synfoc.io.label_values import as_label_map

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE2D_SUFFIXES = PIL_SUFFIXES + TIFF_SUFFIXES
SUPPORTED_SUFFIXES = VOLUME_SUFFIXES + DICOM_SUFFIXES + IMAGE2D_SUFFIXES
# The medical patterns napari's built-in reader also claims: see prefer_synfoc_reader().
MEDICAL_PATTERNS = tuple(f"*{s}" for s in VOLUME_SUFFIXES + DICOM_SUFFIXES)

# A file is a label map when its stem ends like these (case-insensitive), e.g. ``case1_seg``,
# ``liver-mask``, ``benign (4)_mask_1``, or when it sits in a folder named like a label folder.
_LABEL_STEM = re.compile(
    r"(?:^|[_\-. ])(seg|segmentation|label|labels|mask|gt)(?:[_\-]\d+)?$", re.IGNORECASE
)
_LABEL_DIRS = {
    "mask", "masks", "label", "labels", "labelstr", "labelsts", "gt", "seg", "segs",
    "segmentation", "segmentations",
}  # fmt: skip

LayerData = tuple[Any, dict[str, Any], str]


# --- names ---------------------------------------------------------------------------------
def file_suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix we dispatch on (``.nii.gz`` counts as one suffix)."""
    name = os.path.basename(os.fspath(path)).lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return os.path.splitext(name)[1]


def file_stem(path: str | os.PathLike) -> str:
    """The file name without folder and without its (possibly double) suffix."""
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    suffix = file_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def is_label_name(path: str | os.PathLike) -> bool:
    """True when the name says "label map": stem ending ``_seg/_label(s)/_mask/_gt`` (any case,
    optionally followed by ``_<number>``) or a parent folder named ``mask(s)``, ``label(s)``,
    ``labelsTr``, ``gt``, ``seg(mentation)(s)``."""
    p = os.path.normpath(os.fspath(path))
    if _LABEL_STEM.search(file_stem(p)):
        return True
    parent = os.path.basename(os.path.dirname(p)).lower()
    return parent in _LABEL_DIRS


def supported(path: str | os.PathLike) -> bool:
    """True for the file types this module reads, and for DICOM-looking folders."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return looks_like_dicom_dir(p)
    return file_suffix(p) in SUPPORTED_SUFFIXES


def looks_like_dicom_dir(folder: str | os.PathLike) -> bool:
    """True for an empty folder or one with a DICOM-looking file (``.dcm``/``.ima``/no suffix,
    or the ``DICM`` magic); a folder of PNGs is left to other readers."""
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    except OSError:
        return False
    files = [e for e in entries if e.is_file()]
    if not entries:
        return True
    for e in files[:64]:
        name = e.name.lower()
        if name.endswith(DICOM_SUFFIXES) or _has_dicm_magic(e.path):
            return True
    return False


def _has_dicm_magic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


# --- error text ----------------------------------------------------------------------------
def _itk_reason(exc: BaseException) -> str:
    """The useful part of a SimpleITK/ITK exception message, on one line."""
    keep = []
    for line in str(exc).splitlines():
        line = line.strip()
        if not line or line.startswith("Exception thrown in SimpleITK"):
            continue
        if re.match(r"^/\S+\.(cxx|h|hxx|cpp):\d+:?$", line):
            continue
        if "No such file or directory" in line:
            continue
        line = re.sub(r"^(sitk::ERROR|ITK ERROR|itk::ERROR):\s*", "", line)
        line = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", line)
        line = re.sub(r"^\[nrrd\]\s*", "", line)
        if line and not line.endswith(":"):
            keep.append(line)
    text = "; ".join(keep[-2:]) if keep else type(exc).__name__
    if "Unable to determine ImageIO reader" in text:
        text = "no image reader recognises its contents"
    return text[:240]


def _reason(exc: BaseException) -> str:
    """An exception's text for a user: an ``OSError``'s ``strerror`` (no ``[Errno N]``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _corrupt(path: str, detail: str) -> SynFoCIOError:
    return io_error(path, f"file is truncated or corrupt ({detail})")


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise io_error(path, "file not found")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise io_error(path, "file is empty (0 bytes)")


# --- NIfTI completeness (ITK reads truncated NIfTI files silently, padding with zeros) -----
def _check_nifti_complete(path: str) -> None:
    gz = path.lower().endswith(".gz")
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            head = f.read(540)
            need = _nifti_expected_bytes(head)
            if need is None:
                return
            if gz:
                total = len(head)
                while chunk := f.read(1 << 22):
                    total += len(chunk)
            else:
                total = os.path.getsize(path)
    except (EOFError, OSError, zlib.error) as e:
        raise _corrupt(path, f"compressed stream is incomplete: {_reason(e)}") from e
    if total < need:
        raise _corrupt(path, f"holds {total} of the {need} bytes its header announces")


def _nifti_expected_bytes(head: bytes) -> int | None:
    """vox_offset + voxel bytes from a NIfTI-1/2 header, or None when it cannot tell."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    n = dims[0]
    if not 1 <= n <= 7 or bitpix <= 0 or any(d < 1 for d in dims[1 : n + 1]):
        return None
    voxels = int(np.prod(dims[1 : n + 1], dtype=np.int64))
    return max(offset, 348) + voxels * bitpix // 8


def _check_mhd_data_file(path: str) -> None:
    """A MetaImage header's detached data file must exist next to it."""
    try:
        with open(path, "rb") as f:
            header = f.read(4096).decode("latin-1")
    except OSError as e:
        raise io_error(path, _reason(e)) from e
    m = re.search(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", header, re.MULTILINE)
    if not m:
        raise _corrupt(path, "the header has no ElementDataFile entry")
    data = m.group(1)
    if data.upper() in ("LOCAL", "LIST") or "%" in data:
        return
    if not os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(path)), data)):
        raise io_error(path, f"its data file {data!r} is missing (it must sit next to the .mhd)")


# --- readers -------------------------------------------------------------------------------
def _sitk_read(path: str) -> Any:
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(path)
    except RuntimeError as e:
        raise _corrupt(path, _itk_reason(e)) from e


def _array_problem(img: Any, allow_rgb: bool) -> str | None:
    """Why a ``SimpleITK.Image`` cannot become a layer (4D, vector voxels), or None."""
    dim = img.GetDimension()
    size_zyx = tuple(img.GetSize())[::-1]
    ncomp = img.GetNumberOfComponentsPerPixel()
    if dim > 3:
        return (
            f"{dim}D images (shape {size_zyx}) are not supported; "
            "split it into 3D volumes (e.g. one per time point) first"
        )
    if ncomp > 1 and not (allow_rgb and dim == 2 and ncomp in (2, 3, 4)):
        return (
            f"it holds {ncomp} values per voxel (a vector or colour {dim}D image); "
            "only scalar volumes and 2D grey/RGB images are supported"
        )
    return None


def _image_to_array(img: Any, path: str, allow_rgb: bool) -> tuple[np.ndarray, Geometry]:
    import SimpleITK as sitk

    problem = _array_problem(img, allow_rgb)
    if problem is not None:
        raise io_error(path, problem)
    arr = sitk.GetArrayFromImage(img)
    return arr, Geometry.from_sitk(img)


def _dicom_to_array(img: Any) -> tuple[tuple[np.ndarray, Geometry] | None, str | None]:
    """``((array, geometry), None)`` for a DICOM image, or ``(None, problem)``.

    Grey images give (Z, Y, X) -- a single 2D slice (1, Y, X) -- and colour ones (ultrasound,
    photographs) (Z, Y, X, 3), alpha dropped, with a 3-axis geometry either way.
    """
    import SimpleITK as sitk

    ncomp = img.GetNumberOfComponentsPerPixel()
    if img.GetDimension() == 3 and ncomp in (3, 4):
        arr = sitk.GetArrayFromImage(img)[..., :3]
        return (np.ascontiguousarray(arr), Geometry.from_sitk(img)), None
    problem = _array_problem(img, allow_rgb=False)
    if problem is not None:
        return None, problem
    return (sitk.GetArrayFromImage(img), Geometry.from_sitk(img)), None


class DicomSeries:
    """One DICOM series of a folder: GDCM's id, a readable name, its files (sorted) and its
    number of slices (frames of multi-frame files counted)."""

    def __init__(self, uid: str, files: Sequence[str], name: str, n_slices: int = 0) -> None:
        self.uid = uid
        self.files = list(files)
        self.name = name
        self.n_slices = int(n_slices) or len(self.files)

    @property
    def label(self) -> str:
        """The series as a picker shows it: ``"T1 axial (24 slices)"``, ``"Scout (1 slice)"``."""
        n = self.n_slices
        return f"{self.name} ({n} slice{'' if n == 1 else 's'})"

    def __repr__(self) -> str:
        return f"DicomSeries({self.name!r}, {len(self.files)} files, {self.n_slices} slices)"


def _dicom_info(path: str) -> tuple[str, tuple[int, ...], int] | None:
    """(series name, (rows, columns), frames) of one DICOM file, None when unreadable.  The
    name is its SeriesDescription, else "series <SeriesNumber>", else its SeriesInstanceUID."""
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetFileName(path)
    try:
        r.ReadImageInformation()
    except RuntimeError:
        return None

    def tag(key: str) -> str:
        return r.GetMetaData(key).strip() if r.HasMetaDataKey(key) else ""

    if tag("0008|103e"):
        name = tag("0008|103e")
    elif tag("0020|0011"):
        name = f"series {tag('0020|0011')}"
    else:
        name = tag("0020|000e") or os.path.basename(path)
    size = r.GetSize()
    frames = int(size[2]) if len(size) > 2 else 1
    return name, tuple(int(v) for v in size[:2][::-1]), max(frames, 1)


def list_dicom_series(folder: str | os.PathLike) -> tuple[list[DicomSeries], list[str]]:
    """The DICOM series of ``folder`` (not recursive), largest first, and the names of the
    files in none of them (not DICOM, unreadable).

    GDCM groups the files (series UID and its series details); each group is further split
    by image size, so slices of different sizes never form one volume.  Two series with the
    same name get their image size appended (and ``#2``, ``#3``... when that is not enough).
    """
    import SimpleITK as sitk

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise io_error(folder, "not a folder")
    found: list[tuple[str, list[str], str, tuple[int, ...], int]] = []
    for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder, True):
        groups: dict[tuple[str, tuple[int, ...]], list[tuple[str, int]]] = {}
        for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, sid, True):
            info = _dicom_info(f)
            if info is not None:
                groups.setdefault(info[:2], []).append((f, info[2]))
        for k, ((name, size), members) in enumerate(groups.items()):
            files = [f for f, _ in members]
            frames = sum(n for _, n in members)
            found.append((f"{sid}#{k}" if len(groups) > 1 else sid, files, name, size, frames))
    used = {os.path.realpath(f) for _, files, _, _, _ in found for f in files}
    left = sorted(
        e.name
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and os.path.realpath(e.path) not in used
    )
    names = [name for _, _, name, _, _ in found]
    series = []
    for sid, files, name, size, frames in found:
        if names.count(name) > 1:
            name = f"{name} ({size[0]}x{size[1]})"
        series.append(DicomSeries(sid, files, name, frames))
    taken = [s.name for s in series]
    seen: dict[str, int] = {}
    for s in series:
        if taken.count(s.name) > 1:
            seen[s.name] = seen.get(s.name, 0) + 1
            s.name = f"{s.name} #{seen[s.name]}"
    series.sort(key=lambda s: -s.n_slices)
    return series, left


def _file_list(files: Sequence[str], most: int = 5) -> str:
    names = [os.path.basename(f) for f in files]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


class DicomSeriesError(SynFoCIOError):
    """One series of a DICOM folder cannot be read; ``detail`` names it, its files and why."""

    def __init__(self, folder: str, detail: str) -> None:
        super().__init__(str(io_error(folder, detail)))
        self.detail = detail


def read_dicom_files(
    files: Sequence[str], what: str, series_name: str | None = None
) -> tuple[np.ndarray, Geometry]:
    """Read one DICOM series (its file names in order) as (Z, Y, X) + geometry.

    A single file (one 2D slice, or a multi-frame file) is read on its own: one slice gives
    (1, Y, X); colour images give (Z, Y, X, 3).  Raises :class:`DicomSeriesError` naming the
    series, its files and the reason.
    """
    import SimpleITK as sitk

    files = list(files)
    label = f"series {series_name!r} ({_file_list(files)})" if series_name else "DICOM series"
    try:
        if len(files) == 1:
            img = sitk.ReadImage(files[0])
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            img = reader.Execute()
    except RuntimeError as e:
        raise DicomSeriesError(what, f"{label} is unreadable ({_itk_reason(e)})") from e
    result, problem = _dicom_to_array(img)
    if result is None:
        if img.GetDimension() > 3 and len(files) > 1:
            problem = (
                f"its {len(files)} files are each multi-frame, so together they form a 4D "
                f"image (shape {tuple(img.GetSize())[::-1]}), which is not supported; "
                "open one file at a time"
            )
        raise DicomSeriesError(what, f"{label}: {problem}")
    return result


def _no_series_error(folder: str) -> SynFoCIOError:
    n = sum(1 for e in os.scandir(folder) if e.is_file())
    what = "the folder is empty" if n == 0 else f"none of its {n} files is a readable DICOM image"
    return io_error(folder, f"no DICOM series found ({what})")


def left_out_message(folder: str, left: Sequence[str], opened: str) -> str:
    """The message naming the files of ``folder`` that were not opened."""
    shown = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
    return (
        f"{os.path.basename(os.path.normpath(folder))}: {len(left)} file(s) not opened "
        f"({opened}): {shown}"
    )


def read_dicom_series(
    folder: str | os.PathLike, series: int | str | None = None
) -> tuple[np.ndarray, Geometry]:
    """Read one DICOM series of ``folder`` as (Z, Y, X) + geometry.

    ``series``: an index into :func:`list_dicom_series` (largest first), GDCM's series id or
    the series name; None = the largest.  Files left out are named in a ``UserWarning``.
    """
    folder = os.fspath(folder)
    all_series, left = list_dicom_series(folder)
    if not all_series:
        raise _no_series_error(folder)
    if series is None:
        chosen = all_series[0]
    elif isinstance(series, int):
        if not 0 <= series < len(all_series):
            raise io_error(folder, f"series {series} does not exist ({len(all_series)} found)")
        chosen = all_series[series]
    else:
        match = [s for s in all_series if series in (s.uid, s.name)]
        if not match:
            raise io_error(
                folder,
                f"no series {series!r}; found: {', '.join(s.name for s in all_series)}",
            )
        chosen = match[0]
    others = [f for s in all_series if s is not chosen for f in s.files]
    skipped = sorted(left + [os.path.basename(f) for f in others])
    if skipped:
        warnings.warn(
            left_out_message(folder, skipped, f"series {chosen.name!r} was read"), stacklevel=2
        )
    return read_dicom_files(chosen.files, folder, chosen.name)


def _read_pil(path: str) -> tuple[np.ndarray, Geometry]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P" and not is_label_name(path):
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            arr = np.asarray(im)
    except UnidentifiedImageError as e:
        raise io_error(path, "not a valid image file (PIL cannot identify it)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise _corrupt(path, _reason(e)) from e
    return arr, Geometry.identity(2)


def _finish_2d(arr: np.ndarray, path: str) -> np.ndarray:
    """Grey -> (Y, X); RGB(A) -> (Y, X, 3); grey+alpha -> grey; equal-channel label RGB -> grey."""
    if arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[-1] not in (3, 4):
        arr = arr[0]  # single-page TIFF read as (1, Y, X)
    if arr.ndim == 3:
        c = arr.shape[-1]
        if c == 2:
            arr = arr[..., 0]
        elif c == 4:
            arr = arr[..., :3]
        elif c != 3:
            raise io_error(path, f"unexpected 2D image shape {arr.shape}")
    if (
        arr.ndim == 3
        and is_label_name(path)
        and np.array_equal(arr[..., 0], arr[..., 1])
        and (np.array_equal(arr[..., 0], arr[..., 2]))
    ):
        arr = arr[..., 0]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a volume, DICOM series folder or 2D image as ``(array, Geometry)`` in (z, y, x) order.

    2D images give (Y, X) or (Y, X, 3) for RGB with a 2-axis geometry.  Raises
    :class:`SynFoCIOError` (a ``ValueError``) naming the file for unsupported types, missing,
    empty, truncated or corrupt files, 4D data and empty DICOM folders.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        return read_dicom_series(p)
    suffix = file_suffix(p)
    if suffix not in SUPPORTED_SUFFIXES:
        raise io_error(
            p,
            f"unsupported file type {suffix or '(no suffix)'!r}; supported: "
            f"{', '.join(SUPPORTED_SUFFIXES)} and DICOM series folders",
        )
    _check_file(p)
    if suffix in PIL_SUFFIXES:
        arr, geom = _read_pil(p)
        return _finish_2d(arr, p), geom
    if suffix == ".mhd":
        _check_mhd_data_file(p)
    img = _sitk_read(p)
    if suffix in DICOM_SUFFIXES:
        result, problem = _dicom_to_array(img)
        if result is None:
            raise io_error(p, problem or "unreadable DICOM image")
        return result
    if suffix in TIFF_SUFFIXES:
        if img.GetDimension() == 3 and img.GetSize()[2] == 1:
            img = img[:, :, 0]
        arr, geom = _image_to_array(img, p, allow_rgb=True)
        if arr.ndim == 3 and geom.ndim == 3:
            raise io_error(
                p, f"multi-page TIFF (shape {arr.shape}) is not supported; use a volume format"
            )
        return _finish_2d(arr, p), geom
    if suffix in (".nii", ".nii.gz"):
        _check_nifti_complete(p)
    return _image_to_array(img, p, allow_rgb=False)


def check_labels_match(
    image_shape: Sequence[int],
    labels_shape: Sequence[int],
    *,
    rgb: bool = False,
    image_name: str = "the image",
    labels_name: str = "the label map",
) -> None:
    """Raise :class:`SynFoCIOError` unless a label map has the image's voxel grid.

    ``rgb=True`` drops the image's trailing channel axis before comparing.
    """
    img = tuple(int(s) for s in image_shape)
    if rgb:
        img = img[:-1]
    lab = tuple(int(s) for s in labels_shape)
    if img != lab:
        raise SynFoCIOError(
            f"label map {labels_name} has shape {lab} but {image_name} has shape {img}; "
            "a label map must match its image voxel for voxel"
        )


# --- napari --------------------------------------------------------------------------------
def _layer(
    arr: np.ndarray,
    geom: Geometry,
    name: str,
    source: str,
    label_name: bool,
    check_values: bool = True,
) -> LayerData:
    """One layer-data tuple in patient coordinates; volumes are transposed/flipped so their
    index axes follow the patient axes (S, P, L) and the views open upright.

    A single slice (1, Y, X) that is not axial (a sagittal MR, a radiograph) is shown face-on:
    its layer has no rotation (napari would show it edge-on, Y slices one pixel wide) and its
    patient direction goes in ``metadata['synfoc_direction']``, where the writers find it.
    """
    rgb = arr.ndim == geom.ndim + 1
    file_axes = None
    face_on = None
    if geom.ndim == 3:
        axes, flip = patient_axes(geom.direction)
        if arr.shape[0] == 1 and (axes[0] != 0 or rgb):
            face_on = geom
            geom = Geometry(geom.spacing, geom.origin)
        elif not rgb and (axes != (0, 1, 2) or any(flip)):
            arr, geom = reorient(arr, geom, axes, flip)
            file_axes = {"axes": list(axes), "flip": list(flip)}
    kwargs = geom.to_layer_kwargs(source=source)
    if file_axes is not None:
        kwargs["metadata"][META_FILE_AXES] = file_axes
    if face_on is not None and not np.allclose(face_on.direction, np.eye(3)):
        kwargs["metadata"][META_DIRECTION] = [list(row) for row in face_on.direction]
    kwargs["name"] = name
    if not rgb and check_values:
        labels, note = as_label_map(arr, source, label_name)
        if note:
            warnings.warn(note, stacklevel=3)
        if labels is not None:
            return (labels, kwargs, "labels")
    if rgb:
        kwargs["rgb"] = True
    else:
        ct = suggested_window(arr)
        if ct is not None:  # shown in the CT window, not grey on grey over -1024..3000 HU
            kwargs["contrast_limits"] = list(CT_WINDOWS[ct])
    return (arr, kwargs, "image")


def read_layer_data(path: str | os.PathLike, series: int | None = None) -> list[LayerData]:
    """Read ``path`` into napari layer-data tuples with patient geometry (napari ``affine``).

    A DICOM folder gives one layer per series (named by its description), and a
    ``UserWarning`` names the files that belong to no series; ``series`` (an index into
    :func:`list_dicom_series`) reads that one series only, and the warning then also names the
    other series' files.
    """
    p = os.fspath(path)
    src = os.path.abspath(p)
    if os.path.isdir(p):
        all_series, left = list_dicom_series(p)
        if not all_series:
            raise _no_series_error(p)
        if series is not None:
            arr, geom = read_dicom_series(p, int(series))  # warns about the files left out
            name = all_series[int(series)].name
            return [_layer(arr, geom, name, src, False, check_values=False)]
        if left:
            warnings.warn(
                left_out_message(p, left, "not part of any readable DICOM series"), stacklevel=2
            )
        out, failed = [], []
        for s in all_series:
            try:
                arr, geom = read_dicom_files(s.files, p, s.name)
            except DicomSeriesError as exc:
                failed.append(exc.detail)
                continue
            out.append(_layer(arr, geom, s.name, src, False, check_values=False))
        if not out:
            raise io_error(p, "no readable DICOM series: " + "; ".join(failed))
        if failed:
            warnings.warn(
                f"{os.path.basename(os.path.normpath(p))}: {len(failed)} of {len(all_series)} "
                "series not opened: " + "; ".join(failed),
                stacklevel=2,
            )
        return out
    arr, geom = read_volume(p)
    return [_layer(arr, geom, file_stem(p), src, is_label_name(p))]


def prefer_synfoc_reader() -> list[str]:
    """Make napari open the medical file types with this plugin without asking.

    napari's built-in reader claims the same patterns, so napari would show its "choose a
    reader" dialog; this records the plugin as the preferred reader in napari's settings for
    each of :data:`MEDICAL_PATTERNS` that has no preference yet (a user's choice is kept).
    Returns the patterns set.  Needs napari (imported lazily).
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    added = [pat for pat in MEDICAL_PATTERNS if pat not in current]
    if added:
        current.update({pat: "napari-synfoc" for pat in added})
        plugins.extension2reader = current
    return added


def on_activate(context: Any = None) -> None:
    """npe2 ``on_activate``: napari loads the plugin (first use of any of its commands).

    Records SynFoC as the preferred reader for the medical file types (a user's choice is
    kept), so ``viewer.open(path, plugin=None)``, File > Open and drag and drop read them here
    without asking.  napari's own ``viewer.open(path)`` defaults to ``plugin="napari"`` (its
    built-in reader) whatever the preference: from a script pass ``plugin="napari-synfoc"``
    (or ``plugin=None``).  Never raises: a settings problem must not stop the plugin loading.
    """
    del context
    try:
        prefer_synfoc_reader()
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        warnings.warn(
            f"SynFoC could not set itself as the medical-image reader: {exc}", stacklevel=2
        )


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader: a function reading ``path`` when we support it, else ``None``."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(supported(p) for p in paths):
        return None
    return _read_paths


def _read_paths(path: str | list[str]) -> list[LayerData]:
    paths = path if isinstance(path, (list, tuple)) else [path]
    out: list[LayerData] = []
    for p in paths:
        out.extend(read_layer_data(p))
    from napari_synfoc.io.view import upright_current_viewer

    upright_current_viewer()  # coronal/sagittal views with the head at the top
    return out
