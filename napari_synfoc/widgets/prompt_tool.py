"""The dock's prompt tool: napari layers, shortcuts and clicks around the controller's
:class:`~napari_synfoc.app.prompts.PromptController` (``dock.controller.prompts``).

Layers (:mod:`.prompt_layers`, created on first use with the image's scale and translate):
"SynFoC prompts" (Shapes: one rectangle per slice), "SynFoC points" (Points; the ``positive``
feature, green / red) and "SynFoC proposals" (Labels: box-propagation results waiting to be
accepted).  Every write into
the user's Labels layer goes through ``Labels.data_setitem``: one undo step (Ctrl-Z).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from ..app import slices
from ..app.slice_edit import SliceEdit
from .panels.prompt import EXTRA_KEYS, PROMPT_SHORTCUTS, PromptPanel
from .prompt_layers import (
    POINTS,
    PROMPT_LAYERS,
    PROMPTS,
    PROPOSALS,
    new_prompt_layer,
    prompts_on,
)

__all__ = ["POINTS", "PROMPTS", "PROMPT_LAYERS", "PROPOSALS", "PromptTool"]


class PromptTool:
    """Wires the prompt panel, the prompt layers and the controller to the dock."""

    def __init__(self, dock: Any, panel: PromptPanel):
        self.dock = dock
        self.viewer = dock.viewer
        self.panel = panel
        self.controller = dock.controller.prompts
        self.last_latency: float | None = None  # seconds, prompt -> mask shown (last prompt)
        self._bound: list[Any] = []
        self._fix_on = False
        panel.action.connect(self.run_action)
        panel.fix_toggled.connect(self.set_fix_mode)
        panel.mode_combo.currentTextChanged.connect(self._set_mode)
        panel.fill_check.toggled.connect(self._set_volume)
        self._set_volume(panel.fill_between)
        self._actions = {
            "box_mode": self.box_mode,
            "positive": lambda: self.point_mode(True),
            "negative": lambda: self.point_mode(False),
            "segment": self.segment,
            "clear": self.clear,
            "undo": self.undo,
            "propagate": self.propagate,
            "from_models": self.propose_from_models,
            "stop_propagation": self.controller.propagation.stop,
            "accept_slice": self.accept_slice,
            "accept_all": self.accept_all,
            "accept_all_train": self.accept_all_and_train,
        }

    # ------------------------------------------------------------------ helpers
    def _say(self, text: str, error: bool = False) -> None:
        self.dock.controller.say(text, error, notify=error)

    def _set_mode(self, mode: str) -> None:
        self.controller.mode = mode

    def _set_volume(self, volume: bool) -> None:
        """The fill box says the slices form a volume: the review ranking then also spreads its
        picks in z (``review.z_spread``) and the quality estimate may use the continuity rule
        (the config's ``CONTINUITY``; never on a stack); the table is ranked again at once."""
        review = self.dock.controller.review
        review.set_volume(volume)
        if review.maps is not None and hasattr(self.dock, "refresh_ranking"):
            self.dock.refresh_ranking()

    def run_action(self, key: str) -> Any:
        """Run a panel action by name (a button or a shortcut); errors become messages."""
        try:
            return self._actions[key]()
        except Exception as exc:  # noqa: BLE001 - a button must never crash napari
            self._say(f"{key}: {type(exc).__name__}: {exc}", error=True)
            return None

    def _image(self):
        """The dock's image layer; prompts see it through the dock's intensity choice."""
        img = self.dock.image_combo.value
        self.controller.window = self.dock.data_panel.intensity_window(img)
        return img

    def _labels(self):
        return self.dock.labels_combo.value

    def _z(self) -> int:
        lab = self._labels() or self._image()
        return self.dock.current_slice(lab) if lab is not None else 0

    def _layer(self, name: str, kind: str, create: bool = True):
        """The prompt layer ``name`` ("shapes", "points" or "labels"), created on first use with
        the geometry of the labels (or image) layer; None when absent and not ``create``."""
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        ref = self._labels() or self._image()
        if not create or ref is None:
            return None
        layer = new_prompt_layer(name, kind, ref)
        self.viewer.add_layer(layer)
        if kind == "shapes":
            layer.events.data.connect(self._on_shapes_data)
        elif kind == "points":
            layer.events.data.connect(self._on_points_data)
        if kind != "labels":
            self._bind(layer)
        return layer

    def _bind(self, layer) -> None:
        for key, short in PROMPT_SHORTCUTS.items():
            for k in (short, *EXTRA_KEYS.get(key, ())):
                layer.bind_key(k, lambda _ly, a=key: self.run_action(a), overwrite=True)
        self._bound.append(layer)

    def _on_shapes_data(self, event) -> None:
        if self.panel.auto and str(getattr(event, "action", "")) == "added":
            QTimer.singleShot(0, self.segment)

    def _on_points_data(self, event) -> None:
        if self.panel.auto and str(getattr(event, "action", "")) == "added":
            QTimer.singleShot(0, self.segment)

    # ------------------------------------------------------------------ prompt modes
    def box_mode(self) -> None:
        """Select "SynFoC prompts" in rectangle mode (drag a box on the slice)."""
        layer = self._layer(PROMPTS, "shapes")
        if layer is None:
            self._say("Open an image first: the box is drawn on it.", error=True)
            return
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def point_mode(self, positive: bool) -> None:
        """Select "SynFoC points" in add mode; new points are positive or negative."""
        layer = self._layer(POINTS, "points")
        if layer is None:
            self._say("Open an image first: points are placed on it.", error=True)
            return
        layer.feature_defaults["positive"] = bool(positive)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"

    def _prompts_on(self, z: int):
        """(box vertices or None, points, point labels, points on other slices)."""
        shapes = self._layer(PROMPTS, "shapes", create=False)
        return prompts_on(shapes, self._layer(POINTS, "points", create=False), z)

    def segment(self, z: int | None = None) -> int:
        """Segment slice ``z`` (default: current) from its box and points; px changed."""
        t0 = time.perf_counter()
        z = self._z() if z is None else int(z)
        img, lab = self._image(), self._labels()
        box, pts, labs, other = self._prompts_on(z)
        if box is None and pts is None and other:
            self._say(
                f"The points are on slice(s) {other}, not on slice {z}: place them on this "
                "slice (or go to their slice).",
                error=True,
            )
            return 0
        pe = self.controller.prompt(
            None if img is None else img.data, None if lab is None else lab.data, z, box=box,
            points=pts, point_labels=labs, cls=self.panel.cls,
            rgb=bool(getattr(img, "rgb", False)),
        )  # fmt: skip
        n = self._apply(pe)
        if pe is not None:
            self.last_latency = time.perf_counter() - t0
        return n

    def clear(self) -> None:
        """Remove the box and points of the current slice; forget the last mask."""
        z = self._z()
        shapes = self._layer(PROMPTS, "shapes", create=False)
        if shapes is not None and len(shapes.data):
            keep = [v for v in shapes.data if v.shape[1] == 3 and np.any(np.round(v[:, 0]) != z)]
            types = ["rectangle"] * len(keep)
            shapes.data = []
            if keep:
                shapes.add(keep, shape_type=types)
        points = self._layer(POINTS, "points", create=False)
        if points is not None and len(points.data):
            d = np.asarray(points.data)
            here = np.ones(len(d), bool) if d.shape[1] == 2 else np.round(d[:, 0]) == z
            points.selected_data = set(np.nonzero(here)[0].tolist())
            points.remove_selected()
        self.controller.forget()
        self._say(f"Prompts of slice {z} cleared.")

    def undo(self) -> None:
        """napari's undo on the Labels layer (the last prompt or accept)."""
        lab = self._labels()
        if lab is not None:
            lab.undo()

    def _apply(self, pe: SliceEdit | None) -> int:
        """Write ``pe`` into the Labels layer as one undo step; mark emptied slices labelled."""
        lab = self._labels()
        if pe is None or lab is None:
            return 0
        if pe.edit.size:
            lab.data_setitem(pe.edit.indices, pe.edit.new_values)
        if pe.empty_slices:
            slices.set_marked(lab, [*slices.marked(lab), *pe.empty_slices])
            self.dock.refresh_labeled()
        return pe.edit.size

    # ------------------------------------------------------------------ fix disagreements
    def set_fix_mode(self, on: bool) -> None:
        """Clicks on the canvas fix M_d regions while ``on`` (the Labels layer in pan/zoom)."""
        cbs = self.viewer.mouse_drag_callbacks
        if on and not self._fix_on:
            cbs.append(self._on_click)
            lab = self._labels()
            if lab is not None:
                self.viewer.layers.selection.active = lab
                lab.mode = "pan_zoom"
        elif not on and self._on_click in cbs:
            cbs.remove(self._on_click)
        self._fix_on = on
        if self.panel.fix_btn.isChecked() != on:
            self.panel.fix_btn.setChecked(on)

    def _on_click(self, _viewer, event):
        start = np.asarray(event.position, dtype=float)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = True
            yield
        if not moved or np.allclose(event.position, start):
            self.fix_at(event.position, negative="Shift" in {str(m) for m in event.modifiers})

    def fix_at(self, world_position, negative: bool = False) -> int:
        """Fix the disagreement region under ``world_position`` (viewer coordinates) with the
        panel's choice; the number of pixels changed."""
        lab, img = self._labels(), self._image()
        if lab is None:
            self._say("Choose a Labels layer first.", error=True)
            return 0
        pos = np.asarray(lab.world_to_data(world_position), dtype=float)
        z = 0 if lab.ndim == 2 else int(round(pos[0]))
        maps = self.dock.controller.review.maps
        choice = self.panel.fix_choice
        if choice == "reprompt":
            pe = self.controller.reprompt_from_ensemble(
                None if img is None else img.data, lab.data, z, pos, not negative, maps,
                cls=self.panel.cls, rgb=bool(getattr(img, "rgb", False)),
            )  # fmt: skip
        else:
            keep = self.dock.review.keep_existing.isChecked()
            pe = self.controller.fix_region(lab.data, z, pos, maps, choice, keep)
        return self._apply(pe)

    # ------------------------------------------------------------------ propagation
    def propagate(self) -> bool:
        """Propagate the boxes of "SynFoC prompts" in the background into "SynFoC proposals"."""
        img, lab = self._image(), self._labels()
        shapes = self._layer(PROMPTS, "shapes", create=False)
        data = [] if shapes is None else list(shapes.data)
        started = self.controller.propagation.start(
            None if img is None else img.data, None if lab is None else np.shape(lab.data), data,
            cls=self.panel.cls, rgb=bool(getattr(img, "rgb", False)),
            on_slice=self._on_proposal, on_finished=self._update,
        )  # fmt: skip
        return self._proposals_started(started)

    def _proposals_started(self, started: bool) -> bool:
        """A propagation (or proposals from the models) started: clear the proposals layer and
        reset the bar to its slices."""
        if started:
            prop = self._layer(PROPOSALS, "labels")
            prop.data[...] = 0
            prop.refresh()
            self.panel.set_progress(0, len(self.controller.propagation.plan))
        self._update()
        return started

    def propose_from_models(self) -> bool:
        """Proposals from the trained models on every predicted, unlabelled slice (LiteMedSAM
        boxed by the ensemble's parts of the panel's class) into "SynFoC proposals"."""
        img, lab = self._image(), self._labels()
        review = self.dock.controller.review
        maps = review.maps  # maps of another shape: the controller says so
        done = set(self.dock.labeled_slices(lab)) if lab is not None else set()
        n = 0 if maps is None else len(maps.ensemble_label)
        todo = [
            z
            for z in range(n)
            if z not in done and (review.covered is None or z in review.covered)
        ]
        self.controller.propagation.within_labelled_extent = self.panel.within_extent
        self.controller.propagation.fill_between = self.panel.fill_between
        started = self.controller.propagation.start_from_models(
            None if img is None else img.data, None if lab is None else np.shape(lab.data),
            None if maps is None else maps.ensemble_label, todo, cls=self.panel.cls,
            rgb=bool(getattr(img, "rgb", False)),
            labels=None if lab is None else lab.data, labeled=sorted(done),
            on_slice=self._on_proposal, on_finished=self._update,
        )  # fmt: skip
        return self._proposals_started(started)

    def _on_proposal(self, z: int, mask: np.ndarray, done: int, total: int) -> None:
        prop = self._layer(PROPOSALS, "labels")
        cls = self.controller.propagation.cls
        prop.data[z] = np.where(mask, cls, 0).astype(prop.data.dtype)
        prop.refresh()
        self.panel.set_progress(done, total)

    def _update(self) -> None:
        p = self.controller.propagation
        self.panel.set_state(p.running, len(p.proposals), not self.dock.controller.busy)

    def _accept(self, which) -> int:
        lab = self._labels()
        pe = self.controller.propagation.accept(None if lab is None else lab.data, which)
        n = self._apply(pe)
        if pe is not None:
            prop = self._layer(PROPOSALS, "labels", create=False)
            if prop is not None:
                for z in pe.slices:
                    prop.data[z] = 0
                prop.refresh()
            self.dock.refresh_labeled()
        self._update()
        return n

    def accept_slice(self, z: int | None = None) -> int:
        """Accept the proposal of slice ``z`` (default: current): one undo step."""
        return self._accept([self._z() if z is None else int(z)])

    def accept_all(self) -> int:
        """Accept every proposal: one undo step; the slices count as labelled."""
        return self._accept(None)

    def accept_all_and_train(self) -> bool:
        """Accept every proposal, then Train (Retrain when a model exists); True if it started."""
        if not self.controller.propagation.proposals:
            self._say("No proposals to accept: Propagate boxes first.", error=True)
            return False
        self.accept_all()
        if self.controller.propagation.proposals:  # the accept failed (message shown)
            return False
        if self.dock.controller.model.checkpoint is not None:
            return self.dock.retrain()
        return self.dock.train()

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        """Stop a propagation, leave fix mode, unbind the layers' shortcuts."""
        self.controller.propagation.stop()
        self.set_fix_mode(False)
        for layer in self._bound:
            for key, short in PROMPT_SHORTCUTS.items():
                for k in (short, *EXTRA_KEYS.get(key, ())):
                    layer.bind_key(k, None)
        self._bound = []
