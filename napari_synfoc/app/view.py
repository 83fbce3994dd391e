"""What the application tells its front end (:class:`ControllerView`), and the one place its
parts report through (:class:`Notices`)."""

from __future__ import annotations

from typing import Any

from ..core.events import Step
from ..core.review import ReviewMaps


class ControllerView:
    """What the controller tells its front end.  Every method is a no-op; the dock overrides."""

    def message(self, text: str, error: bool = False, notify: bool = True) -> None:
        """A message for the user (``notify``: also as a napari notification)."""

    def status(self, text: str) -> None:
        """The one-line status of the running job."""

    def progress(self, low: int, high: int, value: int) -> None:
        """A determinate progress bar: ``value`` in ``[low, high]``."""

    def encoding(self, done: int, total: int) -> None:
        """Frozen-encoder progress (a second determinate bar); ``done >= total``: hide it."""

    def run_started(self, first: int, last: int) -> None:
        """Training runs from iteration ``first`` to ``last`` (the loss plot's x range)."""

    def step(self, event: Step) -> None:
        """One training iteration ended."""

    def show_maps(self, maps: ReviewMaps, target: Any) -> bool:
        """Show ``maps`` for ``target``; True while overlay layers are still being built."""
        return False

    def changed(self) -> None:
        """Run state, checkpoint or maps changed (buttons, ranking)."""

    def finished(self) -> None:
        """A job ended (after the controller's own bookkeeping)."""


class Notices:
    """The front end's view, shared by the controller's parts, and the last message said.

    :meth:`silence` swaps in a silent view (the front end is gone) for every part at once.
    """

    def __init__(self, view: ControllerView | None = None):
        self.view = view or ControllerView()
        self.last_message = ""

    def say(self, text: str, error: bool = False, notify: bool = True) -> None:
        """Show ``text`` (``error``: as an error; ``notify``: also as a notification)."""
        self.last_message = text
        self.view.message(text, error, notify)

    def silence(self) -> None:
        self.view = ControllerView()
