"""Issue 22 item 4: the time under Iterations comes from a speed measured on this machine
(the wall time between iterations, encoding included), never from another machine's figure."""

from __future__ import annotations

from napari_synfoc.app.estimate import SpeedMeter, run_time_hint
from napari_synfoc.core.events import Encoding, Started, Step


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _step(i, total=300, seconds=0.76):
    # Step.seconds is the training step alone (0.76 s): the meter must not use it
    return Step(i, total, {"loss": 1.0}, 0.5, 0.1, 1.0, seconds)


def test_before_any_measurement_the_hint_says_when_it_will_know():
    assert run_time_hint(300, None) == "Time: measured after the first iterations."
    assert "typical" not in run_time_hint(300, None)


def test_rate_is_wall_time_between_iterations_encoding_included():
    clock = Clock()
    meter = SpeedMeter(clock)
    meter.started()
    assert meter.rate() is None
    # the first iteration ends 30 s after the start (models, first slices): not counted
    clock.t += 30.0
    meter.step(0)
    # then every iteration takes 2.31 s of wall time, encoding between steps included
    for i in range(1, 4):
        clock.t += 2.31
        meter.step(i)
    assert meter.rate() is None  # two intervals: not yet
    clock.t += 2.31
    meter.step(4)
    assert abs(meter.rate() - 2.31) < 1e-9
    assert meter.remaining_text(300) == (
        "about 11 min left (2.31 s/iteration measured in this run, encoding included)"
    )


def test_hint_from_the_last_run():
    assert run_time_hint(300, 2.31) == (
        "about 12 min (2.31 s/iteration measured here in the last run, encoding included)"
    )
    assert run_time_hint(20, 0.5) == (
        "about 10 s (0.50 s/iteration measured here in the last run, encoding included)"
    )
    assert run_time_hint(30000, 0.5).startswith("about 4.2 h")


def test_run_events_feed_the_meter_with_their_arrival_times(monkeypatch):
    from napari_synfoc.app.controller import AppController
    from napari_synfoc.app.jobs import JobRunner

    clock = Clock()
    ctl = AppController(jobs=JobRunner("sync"))
    ctl.speed.clock = clock
    ctl.run.begin()
    ctl.on_event(Started("cpu", "fp32", 3, 164, 300))
    for i in range(6):
        clock.t += 40.0 if i == 0 else 1.5
        ctl.on_event(Encoding(i, 167))
        clock.t += 0.81  # encoding 4 slices between steps
        ctl.on_event(_step(i))
    assert abs(ctl.speed.rate() - 2.31) < 1e-9  # 1.5 s + 0.81 s per iteration
    assert "2.31 s/iteration" in ctl.speed.remaining_text(300)
