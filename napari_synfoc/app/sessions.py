"""The controller's sessions part (Qt-free; ``controller.sessions``): save and load sessions,
predict an image with the model, export labels and review maps."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.review import ReviewMaps, stack_features
from ..core.task import channel_problem, nonfinite_problem
from .jobs import JobRunner
from .messages import Refusal, failure_text
from .process_tweaks import avoid_triton_llvm_clash
from .review import Review
from .state import ModelState, RunState
from .view import Notices


def _write_reason(exc: Exception, where: str | Path) -> str | None:
    """Why writing ``where`` failed, in words: a file-system error (raised, or the cause of the
    writer's error), or a folder that is not there; None for any other problem."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(cause, OSError):
        return cause.strerror or str(cause)
    folder = Path(where).parent
    if folder.is_file():
        return f"'{folder}' is a file, not a folder"
    if not folder.exists():
        return f"the folder '{folder}' does not exist"
    return None


@contextlib.contextmanager
def _writing(what: str, where: str | Path):
    """Turn a file-system error while writing ``what`` into one message naming ``where`` (the
    writer's own errors too: they name the file but not what to do)."""
    try:
        yield
    except (OSError, ValueError) as exc:
        reason = _write_reason(exc, where)
        if reason is None:
            raise
        raise ValueError(
            f"Could not write {what} to '{where}': {reason}. Choose a folder you can write to; "
            "nothing was changed (labels and predictions are still in napari)."
        ) from exc


def _size(shape: tuple[int, ...]) -> str:
    return " × ".join(str(int(s)) for s in shape)


def other_size_notice(
    trained: tuple[int, ...], current: tuple[int, ...], labeled: list[int], name: str | None
) -> str:
    """What a session trained on an image of shape ``trained`` does on one of ``current``."""
    img = f"'{name}'" if name else "the selected image"
    listed = ", ".join(str(int(z)) for z in labeled) or "none"
    return (
        f"It was trained on an image of {_size(trained)} voxels; {img} is {_size(current)}. "
        f"Predict runs the model on {img} as it is (each slice resized to the model's input). "
        f"Retrain continues from the model, trained on the slices you label in {img}. The "
        f"session's labelled slices ({listed}) belong to the other image: they are not marked "
        "here."
    )


class Sessions:
    """Save / load sessions, predict an image, export labels and maps.

    It reads and sets the controller's ``model``, reports through ``notices``, runs predictions
    on ``jobs`` (their outcome in ``run``) and hands predicted maps to ``review``.
    """

    def __init__(
        self, notices: Notices, model: ModelState, run: RunState, jobs: JobRunner, review: Review
    ):
        self.notices, self.model, self.run, self.jobs, self.review = (
            notices, model, run, jobs, review,
        )  # fmt: skip

    def say(self, text: str, error: bool = False, notify: bool = True) -> None:
        self.notices.say(text, error, notify)

    # ------------------------------------------------------------------ sessions
    def save(self, path: str | Path) -> Path:
        """Save both models, the config and the labelled-slice list to ``path`` (atomic)."""
        m = self.model
        if m.checkpoint is None:
            raise ValueError("nothing to save yet: train first")
        from ..core.interactive import save_session

        out = save_session(m.checkpoint, path, m.labeled, m.image_shape, intensity=m.intensity)
        self.say(f"Session saved to {out}.", notify=False)
        return Path(out)

    def load(
        self, path: str | Path, labels: np.ndarray | None = None,
        image_shape: tuple[int, ...] | None = None, image_name: str | None = None,
    ) -> tuple[dict[str, Any], list[int]]:  # fmt: skip
        """Load a session: Retrain continues from it, Predict uses it.

        Returns the session info and the session's labelled slices that are empty in
        ``labels`` (when its shape matches the session's image): the caller marks them labelled.
        ``image_shape`` (spatial, of the image in use): when it is not the session's, the
        message says so and what Predict and Retrain do, and no slice is marked.
        """
        from ..core.interactive import read_session

        info = read_session(path)
        m = self.model
        m.checkpoint = Path(path)
        m.config = dict(info["config"])
        shape = tuple(info.get("image_shape") or ())
        empty: list[int] = []
        other = bool(shape) and image_shape is not None and tuple(image_shape) != shape
        if not other and labels is not None and shape and tuple(np.shape(labels)) == shape:
            data = np.asarray(labels)
            n = 1 if data.ndim == 2 else data.shape[0]
            empty = [
                int(z) for z in info["labeled_slices"]
                if 0 <= z < n and not (data if data.ndim == 2 else data[z]).any()
            ]  # fmt: skip
        m.labeled = list(info["labeled_slices"])
        m.image_shape = shape
        m.intensity = info.get("intensity")
        self.say(
            f"Loaded session {Path(path).name}: {info['iteration']} iterations, "
            f"{len(info['labeled_slices'])} labelled slice(s), foundation "
            f"{info['config'].get('foundation')}. "
            + (
                other_size_notice(shape, tuple(image_shape), info["labeled_slices"], image_name)
                if other
                else "Retrain continues from it; Predict uses it."
            ),
            notify=other,
        )
        self.notices.view.changed()
        return info, empty

    # ------------------------------------------------------------------ predict and export
    def predict(
        self, image: np.ndarray, rgb: bool, device: str = "auto", target: Any = None,
        name: str = "image", window: tuple[float, float] | None = None,
    ) -> bool:  # fmt: skip
        """Predict ``image`` with the latest or loaded model in the background; False if not.

        ``window``: the intensity window for ``image`` (None: percentile mapping)."""
        if self.jobs.busy:
            self.say("Busy: wait for the running job to end.", error=True)
            return False
        if self.model.checkpoint is None:
            self.say("No model yet: train first or load a session.", error=True)
            return False
        channels = (self.model.config or {}).get("in_channels")
        problem = channel_problem(np.shape(image), rgb, channels, name) if channels else None
        if problem:  # known at once from the model's config: no job, one message
            self.say(problem, error=True)
            return False
        ckpt, run, notices = self.model.checkpoint, self.run, self.notices

        def predict() -> tuple[ReviewMaps, np.ndarray]:
            from ..core.interactive import predict_stack_maps

            bad_values = nonfinite_problem(image, name, rgb, action="predicting")
            if bad_values:  # the same check and words as Train's, in the worker (every voxel)
                raise Refusal(bad_values)
            # chunk by chunk: never the whole stack's probabilities in napari's memory
            maps = predict_stack_maps(ckpt, image, rgb=rgb, device=device, window=window)
            return maps, stack_features(image, rgb)

        def done(result: tuple[ReviewMaps, np.ndarray]) -> None:
            if self.review.set_maps(result[0], target, features=result[1]):
                return
            run.overlays_ready.set()

        def failed(exc: BaseException) -> None:
            run.outcome = "failed"
            self.say(failure_text("Prediction failed", exc), error=True)

        def finished() -> None:
            run.gc.release()
            if run.outcome != "failed":
                run.outcome = "done"
                self.say(f"Predicted '{name}' with {Path(ckpt).name}.", notify=False)
            notices.view.status(f"Idle (prediction took {time.perf_counter() - run.t0:.1f} s).")
            notices.view.changed()
            notices.view.finished()

        run.t0 = time.perf_counter()
        run.outcome = None
        avoid_triton_llvm_clash()
        run.gc.hold()
        notices.view.status(f"Predicting '{name}'…")
        notices.view.changed()
        self.jobs.start_call(predict, done, failed, finished)
        return True

    def export_labels(
        self, path: str | Path, labels: np.ndarray, geometry: Any, metadata: Any = None
    ) -> str:
        """Write ``labels`` with ``geometry`` (an ``io.geometry.Geometry``, atomic); the path.

        ``metadata``: the source layer's (its file axes: the voxels go back in that file's
        order, as napari's File > Save does)."""
        from ..io.geometry import file_array_and_geometry
        from ..io.writers import write_volume

        arr, geom = file_array_and_geometry(np.asarray(labels), geometry, metadata)
        with _writing("the labels", path):
            out = write_volume(path, arr, geom, labels=True)
        self.say(f"Labels written to {out}.", notify=False)
        return out

    def export_predictions(
        self,
        folder: str | Path,
        geometry: Any,
        two_d: bool = False,
        suffix: str = ".nii.gz",
        metadata: Any = None,
    ) -> list[str]:
        """Write the six review maps into ``folder`` with ``geometry``; the paths.

        ``metadata``: the image layer's (the maps go back in its file's voxel order)."""
        from ..io.geometry import file_array_and_geometry
        from ..io.writers import write_volume

        m = self.review.maps
        if m is None:
            raise ValueError("no predictions to export: train or predict first")
        folder = Path(folder)
        with _writing("the predictions", folder):
            folder.mkdir(parents=True, exist_ok=True)
        files = {
            "medsam_prediction": (m.fm_label, True),
            "unet_prediction": (m.unet_label, True),
            "ensemble_prediction": (m.ensemble_label, True),
            "consensus": (m.consensus, True),
            "divergence": (m.divergence, True),
            "disagreement": (m.heat, False),
        }
        out = []
        for stem, (arr, is_label) in files.items():
            data, geom = file_array_and_geometry(arr[0] if two_d else arr, geometry, metadata)
            with _writing("the predictions", folder):
                out.append(write_volume(folder / f"{stem}{suffix}", data, geom, labels=is_label))
        self.say(f"Wrote {len(out)} prediction files to {folder}.", notify=False)
        return out
