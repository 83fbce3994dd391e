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


def _stack_text(frame, depth: int) -> str:
    """The ``depth`` innermost frames of a stack, innermost first, on one line."""
    stack = traceback.extract_stack(frame)[-depth:]
    return " <- ".join(
        f"{fs.name} ({fs.filename.rsplit('/', 1)[-1]}:{fs.lineno})" for fs in reversed(stack)
    )


class EventLoopProbe(QObject):
    """A precise repeating QTimer that records the wall-clock gaps between its ticks."""

    def __init__(
        self,
        interval_ms: int = 10,
        parent: QObject | None = None,
        stall_ms: float | None = None,
    ):
        """``stall_ms``: for gaps longer than this, record what the other threads were doing
        when the event loop woke up (in :attr:`stalls`): a hint at who held the GIL; and, from
        a watcher thread, what the event loop's own thread was running while the gap lasted
        (under ``"main"``, the innermost frames first: the code that blocked it)."""
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self.stall_ms = stall_ms
        self.stalls: list[tuple[float, dict[str, str]]] = []
        self._main = threading.get_ident()
        self._seen_main: str | None = None  # the watcher's sample of the current gap
        self._watching = threading.Event()
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(self.interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self._t0 = 0.0
        self.gaps_ms: list[float] = []

    def start(self) -> EventLoopProbe:
        """Start (or restart) recording."""
        self.gaps_ms = []
        self.stalls = []
        self._last = self._t0 = time.perf_counter()
        self._timer.start()
        if self.stall_ms is not None and not self._watching.is_set():
            self._watching.set()
            threading.Thread(target=self._watch, name="stall-watcher", daemon=True).start()
        return self

    def _watch(self) -> None:
        """Sample the event loop's thread once it is ``stall_ms / 2`` late (GIL permitting)."""
        late = self.stall_ms / 2000.0
        while self._watching.is_set():
            time.sleep(0.01)
            last = self._last
            if last is None or self._seen_main is not None:
                continue
            if time.perf_counter() - last > late:
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    self._seen_main = _stack_text(frame, 8)

    def stop(self) -> EventLoopProbe:
        """Stop recording; the gap up to now counts as well."""
        if self._timer.isActive():
            self._tick()
            self._timer.stop()
        self._watching.clear()
        return self

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            gap = (now - self._last) * 1000.0
            self.gaps_ms.append(gap)
            if self.stall_ms is not None and gap > self.stall_ms:
                who = self._other_threads()
                if self._seen_main is not None:
                    who["main"] = self._seen_main
                who["ended_at_s"] = f"{now - self._t0:.1f}"  # seconds after start()
                self.stalls.append((round(gap, 1), who))
        self._seen_main = None
        self._last = now

    @staticmethod
    def _other_threads(depth: int = 4) -> dict[str, str]:
        names = {t.ident: t.name for t in threading.enumerate()}
        me = threading.get_ident()
        out = {}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            out[names.get(ident, str(ident))] = _stack_text(frame, depth)
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
