"""A training task on an image stack held in memory, and the ONE validator for it.

The dock, the scripting API, the child process and the benchmarks build a :class:`StackTask`
and call :func:`validate_task` before training; everything downstream trusts its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Label values at or above this are almost surely a mask saved as 0/255, not class indices.
MAX_CLASS_INDEX = 254
# Largest slice (pixels) accepted for training: 2048 x 2048.
MAX_SLICE_PIXELS = 2048 * 2048


@dataclass
class StackTask:
    """A stack with a few labelled slices, plus optional unlabelled stacks from other scanners.

    ``image``: (Z, Y, X), (Z, Y, X, 3) when ``rgb``, (Y, X) or (Y, X, 3).  ``labels``: integers
    with the image's spatial shape; only ``labeled_slices`` count (an all-background slice counts
    when listed).  ``intensity_window``: a fixed (lo, hi) intensity window for the model's input
    (None: the default percentile mapping, see :mod:`~napari_synfoc.core.intensity`).
    """

    image: np.ndarray
    labels: np.ndarray | None
    labeled_slices: list[int]
    rgb: bool = False
    extra_unlabeled: list[np.ndarray] = field(default_factory=list)
    num_classes: int | None = None
    intensity_window: tuple[float, float] | None = None

    def stack(self) -> np.ndarray:
        """The image as a stack: (Z, Y, X) or (Z, Y, X, 3)."""
        img = np.asarray(self.image)
        if img.ndim == (3 if self.rgb else 2):
            img = img[None]
        return img

    def stack_labels(self) -> np.ndarray | None:
        """The labels as a (Z, Y, X) stack, or None."""
        if self.labels is None:
            return None
        lab = np.asarray(self.labels)
        return lab[None] if lab.ndim == 2 else lab

    def resolved_num_classes(self) -> int:
        """K: ``num_classes`` or the largest label on a labelled slice + 1 (at least 2)."""
        if self.num_classes is not None:
            return int(self.num_classes)
        lab = self.stack_labels()
        if lab is None or not self.labeled_slices:
            return 2
        top = int(lab[list(self.labeled_slices)].max())
        return max(2, top + 1)


def _name(kind: str, name: str | None) -> str:
    return f"{kind} '{name}'" if name else f"the {kind.lower()}"


def _first_slice(mask_per_slice: np.ndarray, slices: list[int]) -> int:
    return slices[int(np.flatnonzero(mask_per_slice)[0])]


def nonfinite_problem(
    image: np.ndarray, image_name: str | None = None, rgb: bool = False, action: str = "training"
) -> str | None:
    """NaN or infinite values in ``image``, naming the first slice holding one; None if none.

    The ONE check for Train (:func:`image_values_problem`) and Predict (``action``: what the
    user must fill or mask them before, e.g. "predicting")."""
    img = np.asarray(image)
    if img.dtype.kind != "f":
        return None
    if img.ndim == (3 if rgb else 2):
        img = img[None]
    finite = np.isfinite(img)
    if finite.all():
        return None
    per_slice = ~finite.reshape(img.shape[0], -1).all(1)
    z = int(np.flatnonzero(per_slice)[0])
    return (
        f"{_name('Image', image_name)} has NaN or infinite values on slice {z} "
        f"({int(per_slice.sum())} slice(s) in all): fill or mask them before {action}."
    )


def image_values_problem(task: StackTask, image_name: str | None = None) -> str | None:
    """The passes over every voxel that ``validate_task(..., image_values=False)`` leaves out
    (NaN/Inf, a constant image), with :func:`validate_task`'s message; None when they pass.

    For a task whose shapes and labels were already checked (a GUI worker thread)."""
    img_n = _name("Image", image_name)
    img = task.stack()
    problem = nonfinite_problem(img, image_name)
    if problem:
        return problem
    if img.size and img.min() == img.max():
        return (
            f"{img_n} is constant (every pixel is {float(img.flat[0]):g}): there is nothing to "
            "learn; pick the layer that holds the scan."
        )
    return None


# --- image channels vs a trained model's (issue 23: Predict, predict_stack) -----------------
def looks_like_colour(shape: tuple[int, ...]) -> bool:
    """True for a (Y, X, 3|4) shape: a colour image, not a stack of slices 3 pixels wide."""
    return len(shape) == 3 and shape[-1] in (3, 4) and shape[-1] < min(shape[:2])


def channel_problem(
    image_shape: tuple[int, ...], rgb: bool, model_channels: int, image_name: str | None = None
) -> str | None:
    """Why an image cannot go through a model trained on ``model_channels`` channels (1 grey,
    3 colour), in the user's words, or None.  The ONE check for the dock's Predict and
    :func:`~napari_synfoc.core.interactive.predict_stack`."""
    shape = tuple(int(s) for s in image_shape)
    img_n = _name("Image", image_name)
    model = "colour (RGB)" if int(model_channels) == 3 else "grey"
    if not rgb and looks_like_colour(shape):
        return (
            f"{img_n} has shape {shape}: it looks like a colour (RGB) image, which would be read "
            f"as {shape[0]} slices {shape[1]}×{shape[2]} pixels. Open it as an RGB image; the "
            f"model was trained on {model} images."
        )
    if int(model_channels) == (3 if rgb else 1):
        return None
    kind = "a colour (RGB)" if rgb else "a grey"
    fix = (
        "convert the image to grey, or train a new model on it"
        if rgb
        else "open the colour version of the image, or train a new model on it"
    )
    return f"{img_n} is {kind} image but the model was trained on {model} images: {fix}."


def validate_task(
    task: StackTask,
    image_name: str | None = None,
    labels_name: str | None = None,
    *,
    image_values: bool = True,
) -> str | None:
    """A readable problem with ``task`` (naming the layer, the slice and what to do), or None.

    ``image_name`` / ``labels_name``: the napari layer names, used in the messages.
    ``image_values=False`` skips the passes over every voxel (NaN/Inf, constant image) so a GUI
    thread can check shapes and labels at once; the full check then runs in the worker.
    """
    img_n, lab_n = _name("Image", image_name), _name("Labels", labels_name)
    if task.image is None:
        return "Choose an Image layer (a 2D image or a (Z, Y, X) stack) to train on."
    problem = _image_layout_problem(task, img_n)
    if problem:
        return problem
    spatial = tuple(task.stack().shape[:3])
    problem = _slice_size_problem(spatial, img_n)
    if problem:
        return problem
    if task.labels is None:
        return (
            f"Choose a Labels layer: paint the structure on a few slices of {img_n} "
            "(Layers > New Labels layer), then train."
        )
    lab = task.stack_labels()
    slices = sorted({int(z) for z in task.labeled_slices})
    problem = (
        _labels_layout_problem(task, lab, spatial, img_n, lab_n)
        or _labelled_slices_problem(lab, slices, spatial[0], img_n, lab_n)
        or _label_values_problem(task, lab, slices, lab_n)
    )
    if problem:
        return problem
    problem = image_values_problem(task, image_name) if image_values else None
    if problem:
        return problem
    return _window_problem(task, img_n) or _unlabelled_data_problem(
        task, spatial[0], len(slices), img_n
    )


def _image_layout_problem(task: StackTask, img_n: str) -> str | None:
    """A problem with the image's dtype or number of axes (given ``task.rgb``), or None."""
    raw = np.asarray(task.image)
    shape = tuple(raw.shape)
    if raw.dtype.kind not in "biuf":
        return f"{img_n} holds {raw.dtype} values: SynFoC needs a numeric grey or RGB image."
    if task.rgb and (raw.ndim not in (3, 4) or shape[-1] not in (3, 4)):
        return (
            f"{img_n} has shape {shape}: an RGB image must be (Y, X, 3) or (Z, Y, X, 3); "
            "untick RGB for a grey stack."
        )
    if not task.rgb and raw.ndim not in (2, 3):
        hint = (
            " (a trailing axis of 3 looks like colour: mark the layer RGB)"
            if shape[-1:] == (3,)
            else "; pick one time point or channel (e.g. Image > Split stack)"
            if raw.ndim == 4
            else ""
        )
        return (
            f"{img_n} has shape {shape}: SynFoC needs a 2D image (grey or RGB) or a "
            f"(Z, Y, X) stack{hint}."
        )
    return None


def _slice_size_problem(spatial: tuple[int, ...], img_n: str) -> str | None:
    """A problem when the (Z, Y, X) stack's slices exceed :data:`MAX_SLICE_PIXELS`, or None."""
    n_z, n_y, n_x = spatial
    if n_y * n_x > MAX_SLICE_PIXELS:
        mb = 2 * n_z * n_y * n_x * 4 / 2**20
        return (
            f"{img_n} has {n_y}×{n_x} slices: SynFoC works at 256 px and the overlays at this "
            f"size need about {mb:.0f} MB per class; downsample the image (e.g. bin 4×4) or "
            "crop it to the structure first."
        )
    return None


def _labels_layout_problem(
    task: StackTask, lab: np.ndarray, spatial: tuple[int, ...], img_n: str, lab_n: str
) -> str | None:
    """A problem when the labels' shape does not match the image or they are not integers."""
    if tuple(lab.shape) != spatial:
        raw_ndim = np.asarray(task.image).ndim
        shown = spatial if raw_ndim - int(task.rgb) == 3 else spatial[1:]
        return (
            f"{lab_n} have shape {tuple(np.shape(task.labels))} but {img_n} has "
            f"{'spatial ' if task.rgb else ''}shape {shown}: pick the Labels layer that belongs "
            "to this image."
        )
    if lab.dtype.kind not in "iub":
        return (
            f"{lab_n} hold {lab.dtype} values: labels must be integer class indices "
            "(0 = background, 1, 2, ...); convert the layer to integers."
        )
    return None


def _labelled_slices_problem(
    lab: np.ndarray, slices: list[int], n_z: int, img_n: str, lab_n: str
) -> str | None:
    """A problem when no slice is labelled or a labelled slice is outside the stack."""
    if not slices:
        if not lab.any():
            return (
                f"{lab_n} are empty: paint the structure on at least one slice (or mark an "
                "all-background slice as labelled) before training."
            )
        return (
            f"{lab_n} have no labelled slice: paint the structure on at least one slice (or "
            "mark an all-background slice as labelled)."
        )
    bad = [z for z in slices if not 0 <= z < n_z]
    if bad:
        return f"Labelled slice(s) {bad} are outside {img_n}'s slices 0..{n_z - 1}."
    return None


def _label_values_problem(
    task: StackTask, lab: np.ndarray, slices: list[int], lab_n: str
) -> str | None:
    """A problem with the values on the labelled slices (negative, 0/255 mask, too many
    classes, background only), or None."""
    flat = lab[slices].reshape(len(slices), -1)
    if lab.dtype.kind == "i" and (flat.min(1) < 0).any():
        z = _first_slice(flat.min(1) < 0, slices)
        return (
            f"{lab_n} on slice {z} hold negative values (min {int(lab[z].min())}): class "
            "indices start at 0 (background)."
        )
    top = flat.max(1)
    if (top > MAX_CLASS_INDEX).any():
        z = _first_slice(top > MAX_CLASS_INDEX, slices)
        return (
            f"{lab_n} on slice {z} use the value {int(lab[z].max())}: labels are class indices "
            "(0 = background, 1, 2, ...), not a 0/255 mask; divide the mask by 255."
        )
    if task.num_classes is not None and (top >= int(task.num_classes)).any():
        z = _first_slice(top >= int(task.num_classes), slices)
        return (
            f"{lab_n} on slice {z} use the class {int(lab[z].max())} but the task has "
            f"{int(task.num_classes)} classes (0..{int(task.num_classes) - 1})."
        )
    if not top.any():
        return (
            f"{lab_n}: the labelled slice(s) {slices} hold only background (0): paint the "
            "structure (class 1, 2, ...) on at least one of them."
        )
    return None


def _window_problem(task: StackTask, img_n: str) -> str | None:
    """A problem with ``task.intensity_window`` (see :func:`~.intensity.check_window`), or None."""
    if task.intensity_window is not None:
        from .intensity import check_window

        try:
            check_window(task.intensity_window)
        except ValueError as exc:
            return f"{img_n}: {exc}"
    return None


def _unlabelled_data_problem(task: StackTask, n_z: int, n_labelled: int, img_n: str) -> str | None:
    """A problem with the extra unlabelled images, or when nothing unlabelled is left."""
    for k, extra in enumerate(task.extra_unlabeled, start=1):
        e = np.asarray(extra)
        ok = e.ndim in (3, 4) and e.shape[-1] in (3, 4) if task.rgb else e.ndim in (2, 3)
        if not ok:
            return (
                f"Extra unlabelled image {k} has shape {tuple(e.shape)}: it must be "
                f"{'an RGB' if task.rgb else 'a grey'} image or stack like {img_n}."
            )
    if n_z - n_labelled + len(task.extra_unlabeled) == 0:
        return (
            f"Every slice of {img_n} is labelled and no extra unlabelled data was given: "
            "SynFoC learns from unlabelled slices too; leave slices unlabelled or add images "
            "from other scanners."
        )
    return None
