"""The dock's keyboard shortcuts: bound on the viewer when the dock opens, unbound when it goes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tooltips import SHORTCUTS


class DockKeys:
    """Binds the dock's actions (named as in :data:`.tooltips.SHORTCUTS`) to the viewer's keys.

    ``unbind`` only removes the keys still bound to these actions, so a binding another plugin
    (or a second dock) made since is left alone.
    """

    def __init__(self, viewer: Any, actions: dict[str, Callable[[], Any]]):
        self.viewer = viewer
        # napari calls a key binding with the viewer; the actions take no argument
        self.bindings = {key: (lambda _v, fn=fn: fn()) for key, fn in actions.items()}

    def bind(self) -> None:
        """Bind every action's key, replacing what the viewer had bound to it."""
        for key, fn in self.bindings.items():
            self.viewer.bind_key(SHORTCUTS[key], fn, overwrite=True)

    def unbind(self) -> None:
        """Unbind the keys still bound to this dock's actions (once; later calls do nothing)."""
        from napari.utils.key_bindings import coerce_keybinding

        for key, fn in self.bindings.items():
            if self.viewer.keymap.get(coerce_keybinding(SHORTCUTS[key])) is fn:
                self.viewer.bind_key(SHORTCUTS[key], None)
        self.bindings = {}
