"""The "SynFoC" dock: label a few slices, train in the background, review, fix, retrain.

The dock builds the panels (:mod:`.panels`), binds the keys (:mod:`.dock_keys`) and forwards
the scripting API to the Qt-free :class:`~napari_synfoc.app.controller.AppController`, which
holds the state (sessions, Predict and export: :class:`.dock_session.DockSessions`, as
``dock.sessions``).  Training runs in a child process by default, its events read by a light
thread (``backend="thread"``: in a thread of napari's process; ``"sync"``: synchronously; or
``SYNFOC_BACKEND``, see :mod:`napari_synfoc.app.jobs`); the worker never touches Qt, and torch is
never imported when napari loads the dock.

Scripting::

    dock, w = viewer.window.add_plugin_dock_widget("napari-synfoc", "SynFoC")
    w.train(iterations=20)      # returns at once
    w.wait()                    # processes Qt events until training has ended
    w.next_uncertain(); w.accept("ensemble"); w.retrain(); w.wait()
    w.sessions.save("run.pt")
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QEventLoop, QTimer
from qtpy.QtWidgets import QApplication, QWidget

from ..app import slices
from ..app.controller import AppController
from ..app.process_tweaks import hide_library_notices, warm_up_imports
from ..app.run_request import RunRequest
from .dock_keys import DockKeys
from .dock_layout import build_layout
from .dock_view import DockView
from .job_layers import JobLayers
from .overlay_builder import OverlayBuilder
from .qt_jobs import qt_job_runner


class SynFoCWidget(QWidget):
    """Dock widget: train SynFoC from a partly labelled layer and review MedSAM vs U-Net.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are read and where the overlays are shown.
    backend : str, optional
        Where training runs: "process" (default), "thread" or "sync" (see
        :mod:`napari_synfoc.app.jobs`).

    Attributes
    ----------
    controller : AppController
        The Qt-free state and actions (``run``, ``model``, ``review``, ``sessions``,
        ``prompts``).
    sessions : DockSessions
        Save / load session, Predict and export with the dock's layers.
    """

    def __init__(self, napari_viewer, parent=None, backend: str | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = AppController(DockView(self), qt_job_runner(backend))
        ctl = self.controller  # not self: called while the C++ widget is being deleted
        self.destroyed.connect(lambda *_: ctl.detach())  # the viewer closed during a run
        self.overlay_builder = OverlayBuilder(napari_viewer, self.controller.overlays_built, self)
        self.job_layers = JobLayers()
        build_layout(self)
        self.update_buttons()
        self.keys = DockKeys(
            napari_viewer,
            {
                "next_uncertain": lambda: self.next_uncertain(),
                "mark_labeled": lambda: self.mark_current_slice(),
                "accept_medsam": lambda: self.accept("medsam"),
                "accept_unet": lambda: self.accept("unet"),
                "accept_ensemble": lambda: self.accept("ensemble"),
            },
        )
        self.keys.bind()
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        self.model_panel.show_profile()
        self.refresh_labeled()
        # the child imports the engine; napari's process only needs torch (device check)
        warm_up_imports(engine=self.controller.jobs.backend != "process")
        hide_library_notices()  # napari would show them as pop-ups
        # File > Open on .nii.gz/.mha/.nrrd/.dcm then uses this plugin without asking (a choice
        # the user already made in napari's reader dialog is kept).
        from ..io.readers import prefer_synfoc_reader

        prefer_synfoc_reader()

    # ------------------------------------------------------------------ buttons and messages
    def update_buttons(self) -> None:
        c = self.controller
        has_ckpt = c.model.checkpoint is not None
        self.run_panel.set_state(c.busy, c.running, c.run.stop_flag.is_set(), has_ckpt)
        self.session_panel.set_state(c.busy, has_ckpt, c.review.maps is not None)

    def on_labels_painted(self) -> None:
        """The user painted: the run in progress is told, the slice list refreshes soon."""
        self.controller.labels_edited()
        self.label_refresh_timer.start()

    def _say(self, text: str, error: bool = False, notify: bool = True) -> None:
        self.controller.say(text, error, notify)

    # ------------------------------------------------------------------ state (read-only)
    @property
    def is_training(self) -> bool:
        """True from ``train()`` until the run has ended (done, cancelled or failed)."""
        return self.controller.running

    outcome = property(lambda self: self.controller.run.outcome, doc='"done", "cancelled"...')
    last_message = property(lambda self: self.controller.last_message, doc="last message shown")
    event_counts = property(lambda self: self.controller.run.event_counts, doc="events of the run")
    prediction_updates = property(lambda self: self.controller.review.updates)
    last_init_checkpoint = property(lambda self: self.controller.model.init_checkpoint)

    def set_profile(self, name: str) -> None:
        """Choose the compute profile ("auto", "tiny", "cpu-interactive", ...) by name."""
        self.model_panel.set_profile(name)

    def advanced_overrides(self) -> dict[str, Any]:
        """Config overrides from the Advanced section: only the fields the user changed."""
        return self.model_panel.advanced.overrides()

    # ------------------------------------------------------------------ labelled slices
    def labeled_slices(self, labels_layer: Any = None) -> list[int]:
        """Slices of the labels layer that count as labelled right now (painted or marked)."""
        return slices.layer_labeled_slices(labels_layer or self.labels_combo.value)

    def refresh_labeled(self) -> None:
        """Redraw the labelled-slice list and the review table."""
        layer = self.labels_combo.value
        labeled = self.labeled_slices(layer)
        self.data_panel.show_labeled(labeled, slices.empty_marked(layer, labeled))
        self.refresh_review(labeled if self._maps_labels_layer() is not None else [])

    def refresh_review(self, labeled: list[int] | None = None) -> None:
        """Redraw the review table and its "U-Net only" rows from one scan of the labels (a
        500 x 512² volume: about 19 ms a scan); ``labeled`` as in :meth:`refresh_ranking`."""
        labeled = self.review_labeled() if labeled is None else labeled
        self.refresh_ranking(labeled)
        self.mark_unet_only(labeled)

    def _maps_labels_layer(self) -> Any:
        """The labels layer that matches the current maps (None if none fits)."""
        lab = self.labels_combo.value
        fits = lab is not None and self.controller.review.maps_fit(np.shape(lab.data))
        return lab if fits else None

    def review_labeled(self) -> list[int]:
        """The labelled slices of the labels layer that fits the maps (none when none fits)."""
        lab = self._maps_labels_layer()
        return self.labeled_slices(lab) if lab is not None else []

    def refresh_ranking(self, labeled: list[int] | None = None) -> None:
        """Redraw the review table: estimate, ranking and rows (``labeled``: the labelled
        slices of the labels layer that fits the maps, when the caller has them already)."""
        labeled = self.review_labeled() if labeled is None else labeled
        review = self.controller.review
        lab = self._maps_labels_layer()
        quality = None
        if review.maps is not None:  # before the table: the "gain" ranking reads it
            data = None if lab is None else lab.data
            quality = review.quality(data, labeled, self.controller.model.labeled).predicted
        order, scores = review.table(labeled)
        if order:
            self.review.set_ranking(order, scores, labeled, quality)

    def mark_unet_only(self, labeled: list[int]) -> None:
        """Rows "U-Net only" in the review table for the slices that hold only the U-Net's
        prediction so far (the frozen encoder has not reached them; they are not ranked);
        ``labeled`` as in :meth:`refresh_ranking`."""
        only = self.controller.unet_only_slices
        if not only:
            return
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QTableWidgetItem

        table = self.review.table
        done = set(labeled)
        shown = set(self.review.ranked_slices())
        status = table.columnCount() - 1
        for z in only:
            if z in done or z in shown:
                continue
            row = table.rowCount()
            table.insertRow(row)
            for col in range(table.columnCount()):
                text = str(z) if col == 0 else "U-Net only" if col == status else ""
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, int(z))
                table.setItem(row, col, item)

    def current_slice(self, layer: Any = None) -> int:
        """Index of the slice shown now, in the data of ``layer`` (default: the labels layer)."""
        layer = layer or self.labels_combo.value or self.image_combo.value
        return slices.current_slice(self.viewer, layer)

    def goto_slice(self, z: int) -> None:
        """Show slice ``z`` of the image (no-op for a 2D image)."""
        layer = self.controller.review.target or self.image_combo.value or self.labels_combo.value
        if slices.goto_slice(self.viewer, layer, int(z)):
            self.review.select_slice(int(z))

    def mark_current_slice(self, z: int | None = None) -> list[int]:
        """Toggle "labelled (all background)" for slice ``z`` (default: the current one)."""
        layer = self.labels_combo.value
        if layer is None:
            self._say("Choose a Labels layer first.", error=True)
            return []
        z = self.current_slice(layer) if z is None else int(z)
        marked = set(slices.marked(layer))
        if z in marked:
            marked.discard(z)
            self._say(f"Slice {z} is no longer marked as labelled.", notify=False)
        else:
            marked.add(z)
            self._say(f"Slice {z} counts as labelled (background where unpainted).", notify=False)
        out = slices.set_marked(layer, marked)
        self.refresh_labeled()
        return out

    # ------------------------------------------------------------------ training
    def retrain(self, image_layer=None, labels_layer=None, iterations=None) -> bool:
        """Train again, warm-starting from the latest checkpoint with the current labels, for
        the Retrain iterations (``iterations`` sets that spin box)."""
        return self.train(image_layer, labels_layer, iterations, warm_start=True)

    def train(
        self, image_layer=None, labels_layer=None, iterations=None, warm_start=False
    ) -> bool:
        """Start training in the background and return at once (True if it started).

        ``None`` means the dock's current selection (layers) or spin-box value (iterations:
        Iterations, or Retrain iterations when ``warm_start``).
        The labels are copied now, so edits made while training runs go to the next run.
        """
        if self.controller.busy and not self.controller.stopping:
            self._say("Training is already running: stop it first.", error=True)
            return False
        if image_layer is not None:
            self.image_combo.set_value(image_layer)
        if labels_layer is not None:
            self.labels_combo.set_value(labels_layer)
        img = image_layer or self.image_combo.value
        lab = labels_layer or self.labels_combo.value
        if iterations is not None:  # Train's or Retrain's spin box
            spin = self.model_panel.retrain_spin if warm_start else self.iterations_spin
            spin.setValue(int(iterations))
        if img is not None and getattr(img, "multiscale", False):
            self._say(f"Image '{img.name}' is multiscale: pick a single-resolution image.", True)
            return False
        extra = self.data_panel.extra_images()
        task = slices.task_from_layers(img, lab, extra, self.data_panel.intensity_window(img))
        self.loss_plot.clear()
        started = self.controller.start_run(RunRequest(
            task, self.model_panel.retrain_params() if warm_start else self.model_panel.params(),
            folder=self.data_panel.folder(),
            predict_every=self.predict_every_spin.value(), warm_start=warm_start, target=img,
            image_name=getattr(img, "name", None), labels_name=getattr(lab, "name", None),
            overlays_exist=self.overlay_builder.overlays_exist(),
            view_slice=None if img is None else self.current_slice(img),
            intensity_mode=self.data_panel.intensity_mode(),
        ))  # fmt: skip
        if started:
            self.job_layers.remember(img, lab)
        self.update_buttons()
        return started

    def _on_layer_removed(self, event: Any) -> None:
        """A layer was deleted: if the running training read it, say so at once (on the next
        turn of the event loop: a closing viewer removes every layer first, then deletes the
        dock, which detaches the controller, so closing napari says nothing)."""
        layer, jobs = event.value, self.job_layers
        kind = "image" if layer is jobs.image else "labels" if layer is jobs.labels else None
        if kind is None:
            return
        ctl, name = self.controller, layer.name

        def say() -> None:
            if ctl.input_deleted(kind, name):  # False once detached: self may be gone
                jobs.told.add(kind)
                self.update_buttons()

        QTimer.singleShot(0, say)

    def _disconnect_layers(self) -> None:
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.viewer.layers.events.removed.disconnect(self._on_layer_removed)

    def layers_gone(self) -> str:
        """A message when the last job's image or labels layer was deleted while it ran."""
        return self.job_layers.gone(self.viewer.layers)

    def stop(self) -> None:
        """Ask training to stop; it ends within one iteration with a Cancelled event."""
        self.controller.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the running job (training or prediction) has ended.

        Returns True if it ended, False on ``timeout`` seconds.
        """
        app = QApplication.instance()
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while self.controller.busy or self.overlay_builder.busy():
            if deadline is not None and time.monotonic() > deadline:
                return False
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return True

    # ------------------------------------------------------------------ review
    def ranking(self) -> list[int]:
        """Unlabelled slices by descending disagreement (empty before predictions exist)."""
        return self.controller.review.ranking(self.review_labeled())

    def next_uncertain(self) -> int | None:
        """Go to the most uncertain unlabelled slice not visited since the last predictions."""
        z = self.controller.review.next_uncertain(self.review_labeled())
        if z is not None:
            self.goto_slice(z)
        return z

    def accept(self, source: str = "ensemble", slice_index: int | None = None) -> int:
        """Write the ``source`` prediction of one slice into the labels (one undoable step).

        Returns the number of voxels changed.

        ``source`` is "medsam", "unet" or "ensemble"; the slice defaults to the current one.
        """
        lab = self.labels_combo.value  # the controller says what is wrong with it, if any
        z = 0 if lab is None else self.current_slice(lab) if slice_index is None else slice_index
        keep = self.review.keep_existing.isChecked()
        data = None if lab is None else lab.data
        edit = self.controller.review.accept(data, int(z), source, keep)
        return self.apply_edit(lab, edit)

    def accept_above(self, q: float | None = None) -> int:
        """Accept the ensemble on every unlabelled slice estimated at Dice >= ``q`` (default:
        the review panel's q) as one undoable step; the number of voxels changed."""
        lab = self.labels_combo.value
        q = float(self.review.accept_q.value() if q is None else q)
        edit = self.controller.review.accept_above(
            None if lab is None else lab.data, q, self.review_labeled(),
            self.controller.model.labeled,
        )  # fmt: skip
        return self.apply_edit(lab, edit)

    def apply_edit(self, lab: Any, edit: Any) -> int:
        """Write a :class:`~napari_synfoc.app.slice_edit.SliceEdit` into the Labels layer ``lab``
        as one undo step, mark its emptied slices labelled; the number of voxels changed."""
        if edit is None or lab is None:
            return 0
        if edit.size:
            lab.data_setitem(edit.edit.indices, edit.edit.new_values)
        if edit.empty_slices:
            slices.set_marked(lab, [*slices.marked(lab), *edit.empty_slices])
        self.refresh_labeled()
        return edit.size

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        """Stop training, unbind shortcuts, disconnect from the viewer, remove temp files."""
        if self.controller.running:
            self.stop()
            self.wait(timeout=30)
        self.keys.unbind()
        self._disconnect_layers()
        self.data_panel.disconnect_viewer()
        self.loss_plot.stop()
        self.overlay_builder.close()
        self.prompts.cleanup()
        self.controller.cleanup()

    def detach(self) -> None:
        """The dock is gone while napari runs on: stop the job without waiting, show nothing
        more (the controller's view goes silent), let go of the viewer."""
        self.controller.detach()
        self.keys.unbind()
        self._disconnect_layers()
        self.data_panel.disconnect_viewer()
        self.loss_plot.stop()
        self.overlay_builder.close()

    def closeEvent(self, event) -> None:
        self.cleanup()
        super().closeEvent(event)

    def event(self, event) -> bool:
        # napari's dock close button un-parents this widget (remove_dock_widget) without closing
        # it; the viewer closing deletes it (``destroyed``, connected in __init__)
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif getattr(self, "_docked", False):
                self._docked = False
                self.detach()
        return super().event(event)
