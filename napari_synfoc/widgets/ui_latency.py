"""Measure how responsive the Qt event loop stays: the longest gap between ticks of a 10 ms timer.

Usage::

    probe = EventLoopProbe(interval_ms=10)
    probe.start()
    ...  # train in the background while the event loop runs (e.g. widget.wait())
    probe.stop()
    print(probe.max_gap_ms, probe.percentile(99))

A frozen UI shows up as one long gap; a responsive one keeps gaps near the interval.
"""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer


class EventLoopProbe(QObject):
    """A precise repeating QTimer that records the wall-clock gaps between its ticks."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(self.interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.gaps_ms: list[float] = []

    def start(self) -> EventLoopProbe:
        """Start (or restart) recording."""
        self.gaps_ms = []
        self._last = time.perf_counter()
        self._timer.start()
        return self

    def stop(self) -> EventLoopProbe:
        """Stop recording; the gap up to now counts as well."""
        if self._timer.isActive():
            self._tick()
            self._timer.stop()
        return self

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps_ms.append((now - self._last) * 1000.0)
        self._last = now

    @property
    def max_gap_ms(self) -> float:
        """Longest gap between two ticks in milliseconds (0 before two ticks)."""
        return max(self.gaps_ms, default=0.0)

    @property
    def ticks(self) -> int:
        return len(self.gaps_ms)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the gaps in milliseconds."""
        return float(np.percentile(self.gaps_ms, q)) if self.gaps_ms else 0.0

    def summary(self) -> dict[str, float]:
        """max, p50, p99 of the gaps and the tick count, for a benchmark record."""
        return {
            "interval_ms": float(self.interval_ms),
            "ticks": float(self.ticks),
            "max_gap_ms": round(self.max_gap_ms, 2),
            "p50_gap_ms": round(self.percentile(50), 2),
            "p99_gap_ms": round(self.percentile(99), 2),
        }

    def __enter__(self) -> EventLoopProbe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
