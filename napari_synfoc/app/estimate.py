"""How long a run takes on THIS machine: seconds per iteration measured as the wall time between
iterations (the encoding done between them included), never a figure from another machine."""

from __future__ import annotations

import time
from collections.abc import Callable

# intervals between iterations needed before a rate is given (the first iteration, which carries
# the start, is never counted)
MIN_INTERVALS = 3


def _span(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def run_time_hint(iterations: int, s_per_iteration: float | None) -> str:
    """The text under Iterations: from the last run's measured rate, or when it will be known."""
    if s_per_iteration is None or not s_per_iteration > 0:
        return "Time: measured after the first iterations."
    return (
        f"about {_span(s_per_iteration * int(iterations))} ({s_per_iteration:.2f} s/iteration "
        "measured here in the last run, encoding included)"
    )


class SpeedMeter:
    """The running training's seconds per iteration, from the arrival times of its steps."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.times: list[float] = []
        self.iterations: list[int] = []

    def started(self) -> None:
        """A run started: forget the last one's steps."""
        self.times, self.iterations = [], []

    def step(self, iteration: int) -> None:
        """Iteration ``iteration`` (0-based) has just ended."""
        self.times.append(self.clock())
        self.iterations.append(int(iteration))

    def rate(self) -> float | None:
        """Wall seconds per iteration after the first one; None before enough steps."""
        if len(self.times) < MIN_INTERVALS + 2:
            return None
        done = self.iterations[-1] - self.iterations[1]
        return (self.times[-1] - self.times[1]) / done if done > 0 else None

    def remaining_text(self, total: int) -> str:
        """ "about N min left (...)" for a run of ``total`` iterations; "" before a rate."""
        rate = self.rate()
        if rate is None:
            return ""
        left = max(0, int(total) - self.iterations[-1] - 1)
        return (
            f"about {_span(rate * left)} left ({rate:.2f} s/iteration measured in this run, "
            "encoding included)"
        )
