"""Where napari and scripts import the dock from (``napari.yaml`` names this module).

The dock lives in :mod:`.dock`; its state and actions in :mod:`.controller` (Qt-free).
"""

from __future__ import annotations

from .dock import SynFoCWidget
from .slices import MARKED_KEY

__all__ = ["MARKED_KEY", "SynFoCWidget"]
