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

import sys
import threading
import time
import traceback

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer


class EventLoopProbe(QObject):
    """A precise repeating QTimer that records the wall-clock gaps between its ticks."""

    def __init__(
        self,
        interval_ms: int = 10,
        parent: QObject | None = None,
        stall_ms: float | None = None,
    ):
        """``stall_ms``: for gaps longer than this, record what the other threads were doing
        when the event loop woke up (in :attr:`stalls`): a hint at who held the GIL."""
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self.stall_ms = stall_ms
        self.stalls: list[tuple[float, dict[str, str]]] = []
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(self.interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.gaps_ms: list[float] = []

    def start(self) -> EventLoopProbe:
        """Start (or restart) recording."""
        self.gaps_ms = []
        self.stalls = []
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
            gap = (now - self._last) * 1000.0
            self.gaps_ms.append(gap)
            if self.stall_ms is not None and gap > self.stall_ms:
                self.stalls.append((round(gap, 1), self._other_threads()))
        self._last = now

    @staticmethod
    def _other_threads(depth: int = 4) -> dict[str, str]:
        names = {t.ident: t.name for t in threading.enumerate()}
        me = threading.get_ident()
        out = {}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            stack = traceback.extract_stack(frame)[-depth:]
            out[names.get(ident, str(ident))] = " <- ".join(
                f"{fs.name} ({fs.filename.rsplit('/', 1)[-1]}:{fs.lineno})"
                for fs in reversed(stack)
            )
        return out

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
