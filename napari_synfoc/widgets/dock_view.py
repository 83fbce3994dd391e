"""How the dock shows what the controller reports (the :class:`ControllerView` of the dock)."""

from __future__ import annotations

from typing import Any

from ..app.view import ControllerView


class DockView(ControllerView):
    """What the controller's notices do in the dock."""

    def __init__(self, dock: Any):
        self.dock = dock

    def message(self, text, error=False, notify=True):
        self.dock.run_panel.show_message(text, error)
        if notify:
            from napari.utils.notifications import show_error, show_info

            (show_error if error else show_info)(text)

    def status(self, text):
        self.dock.status.setText(text)

    def progress(self, low, high, value):
        self.dock.run_panel.set_progress(low, high, value)

    def encoding(self, done, total):
        self.dock.run_panel.set_encoding(done, total)

    def run_started(self, first, last):
        self.dock.loss_plot.set_run(first, last)

    def step(self, event):
        self.dock.loss_plot.add_point(event.iteration + 1, event.losses, event.alpha)
        self.dock.model_panel.show_time_left(
            self.dock.controller.speed.remaining_text(event.total)
        )

    def show_maps(self, maps, target):
        d = self.dock
        pending = d.overlay_builder.show(
            maps, target, d.labels_combo.value, at_once=d.controller.jobs.synchronous
        )
        d.review.set_enabled(True)
        d.refresh_review()
        return pending

    def changed(self):
        self.dock.update_buttons()

    def finished(self):
        gone = self.dock.layers_gone()  # removed while the job ran: say what became of the run
        if gone:  # a pop-up only for a deletion not already said while it ran
            untold = self.dock.job_layers.gone(self.dock.viewer.layers, untold=True)
            self.dock.controller.say(gone, error=True, notify=bool(untold))
        self.dock.refresh_labeled()
        self.dock.loss_plot.redraw()
        self.dock.model_panel.note_rate(self.dock.controller.speed.rate())
