"""Shows review maps as overlay layers, building missing layers in small GUI steps.

Adding a napari layer costs 60-130 ms of the GUI thread on a slow machine, and updating a large
one's data ~70 ms, so layers are added or updated one per event-loop turn (a new layer's costly
parts hidden until a later turn finishes them): the event loop handles input, paints and timers
between them instead of freezing for all five.
A Labels overlay's painting-tool visuals (~80-130 ms each on a 2-core machine) are built only
when the user makes that layer the active one, to paint on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer

from . import overlays

# Delay between two steps of building the overlay layers. Not 0: Qt runs a chain of zero-delay
# single shots back to back (they are posted events), without servicing timers or input between.
OVERLAY_TURN_MS = 1


class OverlayBuilder(QObject):
    """Puts maps on screen; ``on_built()`` runs once no layer is left to build."""

    def __init__(self, viewer: Any, on_built: Callable[[], None], parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.on_built = on_built
        self.maps: Any = None
        self.image_layer: Any = None
        self.below: Any = None
        self.pending: list[str] = []
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(OVERLAY_TURN_MS)
        self.timer.timeout.connect(self.step)
        viewer.layers.selection.events.active.connect(self._on_active)

    def _on_active(self, event: Any) -> None:
        """Finish a deferred overlay layer when the user activates it (its painting tools)."""
        layer = event.value
        if layer is not None and layer in overlays.unfinished_layers(self.viewer):
            overlays.finish_layer(layer)

    def overlays_exist(self) -> bool:
        """True if every overlay layer exists (training then need not wait for the GUI)."""
        return all(name in self.viewer.layers for name in overlays.OVERLAY_NAMES)

    def show(self, maps: Any, image_layer: Any, below: Any, at_once: bool = False) -> bool:
        """Show ``maps`` on ``image_layer``'s grid; True while layers are left to build or
        update.

        Each layer is updated or built by its own :meth:`step` (setting a whole volume's data
        on a Labels layer costs ~70 ms on a 2-core machine for 500 slices of 256²), or all now
        with ``at_once``.
        """
        if image_layer is None or image_layer not in self.viewer.layers:
            return False
        self.maps, self.image_layer, self.below = maps, image_layer, below
        if at_once:
            self.pending = overlays.update_overlays(self.viewer, maps, image_layer, below=below)
        else:
            self.pending = list(overlays.OVERLAY_NAMES)
        if self.work_left():
            self.timer.start()
            return True
        return False

    def step(self) -> None:
        """Update or add one overlay layer, or finish one added layer; re-arm while work is
        left."""
        layer = self.image_layer
        if self.maps is None or layer is None or layer not in self.viewer.layers:
            self.pending = []  # no maps, or their image is gone
        if self.pending:
            name, self.pending = self.pending[0], self.pending[1:]
            overlays.update_overlays(  # one name, max_new=1: nothing is left missing
                self.viewer, self.maps, layer, below=self.below, names=[name], max_new=1,
                defer=True,
            )  # fmt: skip
        else:
            for lay in overlays.unfinished_layers(self.viewer, tools=False)[:1]:
                overlays.finish_layer(lay)
        if self.work_left():
            self.timer.start()
        else:
            self.on_built()

    def work_left(self) -> bool:
        return bool(self.pending or overlays.unfinished_layers(self.viewer, tools=False))

    def busy(self) -> bool:
        """True while the step timer still has layers to build or finish."""
        return self.timer.isActive() and self.work_left()

    def close(self) -> None:
        """Stop stepping and finish any half-built layer."""
        self.timer.stop()
        with contextlib.suppress(Exception):  # closed twice, or the viewer is gone
            self.viewer.layers.selection.events.active.disconnect(self._on_active)
        for layer in overlays.unfinished_layers(self.viewer):
            overlays.finish_layer(layer)
