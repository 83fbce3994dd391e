"""Training in a child process: faults in the child leave the caller running, with a clear
message, the last checkpoint kept and no process left behind.

The fault functions below run inside the child (``train_in_child(fault=...)`` calls them after
each event it sends); they are module-level so the spawned child can import them.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.foreign_load import disc_task
from napari_synfoc.config import make_config
from napari_synfoc.core.checkpoint import load_checkpoint
from napari_synfoc.core.events import (
    Cancelled,
    CheckpointSaved,
    Done,
    Failed,
    Started,
    Step,
)
from napari_synfoc.core.process_runner import descendant_pids, train_in_child

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # each test starts a training process


def _stack(z=4, size=32, seed=0):
    return disc_task(z, size, seed)


def _cfg(**over):
    over.setdefault("iterations", 30)
    return make_config("tiny", device="cpu", **over)


_BASELINE: set[int] = set()  # e.g. the Xvfb that pytest-xvfb starts


def _children() -> list[int]:
    """Live descendants of this process started by the test, except multiprocessing's resource
    tracker (one per process for its lifetime, started by every ``spawn``)."""
    out = []
    for pid in descendant_pids():
        if pid in _BASELINE:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            out.append(pid)
    return out


def _wait_no_children(timeout=10.0) -> list[int]:
    end = time.monotonic() + timeout
    while _children() and time.monotonic() < end:
        time.sleep(0.1)
    return _children()


@pytest.fixture(autouse=True)
def _no_orphans():
    _BASELINE.clear()
    _BASELINE.update(descendant_pids())
    yield
    assert _wait_no_children(5.0) == [], "the test left a process behind"


# ------------------------------------------------------------------ faults run in the child
def fault_segfault(event):
    if isinstance(event, Step) and event.iteration == 1:
        import ctypes

        ctypes.string_at(0)  # SIGSEGV, as a crash in a native library


def fault_memory_error(event):
    if isinstance(event, Step) and event.iteration == 1:
        raise MemoryError("Unable to allocate 41.2 GiB for an array")


def fault_cuda_oom_in_trainer(event):
    """From the next iteration on, the training step fails as CUDA does when memory runs out."""
    if isinstance(event, Started):
        from napari_synfoc.core.trainer import SynFoCTrainer

        def oom(self, *a, **k):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

        SynFoCTrainer.train_step = oom


def fault_hang(event):
    if isinstance(event, Step) and event.iteration == 1:
        time.sleep(600)  # stuck (e.g. a deadlocked native call): the stop request goes unheard


# ------------------------------------------------------------------ tests
def test_a_normal_run_in_a_child_leaves_the_parent_lean(tmp_path):
    """Run in a fresh interpreter: the parent never imports torch, gets every event typed,
    large prediction arrays through files, and its RSS comes back after the run."""
    script = tmp_path / "run.py"
    script.write_text(
        f"""
import gc, json, sys
import numpy as np
from napari_synfoc.config import make_config
from napari_synfoc.core.interactive import StackTask
from napari_synfoc.core.process_runner import descendant_pids, train_in_child

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

rng = np.random.default_rng(0)
lab = (rng.random((10, 128, 128)) > 0.7).astype(np.uint8)
task = StackTask((0.3 + 0.5 * lab).astype(np.float32), lab, [0, 1])
before = rss_mb()
names, shapes = [], []
cfg = make_config("tiny", device="cpu", iterations=3)
for e in train_in_child(task, cfg, predict_every=2, out_dir={str(tmp_path)!r}):
    names.append(type(e).__name__)
    if type(e).__name__ == "Predictions":
        shapes.append(list(e.fm_prob.shape) + [str(e.unet_prob.dtype)])
    del e
gc.collect()
kids = [p for p in descendant_pids()
        if b"resource_tracker" not in open(f"/proc/{{p}}/cmdline", "rb").read()]
print(json.dumps({{"names": names, "shapes": shapes, "torch": "torch" in sys.modules,
    "before": before, "after": rss_mb(), "children": kids}}))
""",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=110, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # the three start stages (issue 23 item 15), then the trainer's own events
    assert res["names"][:4] == ["Progress"] * 3 + ["Started"], res["names"]
    assert res["names"][-1] == "Done", res["names"]
    assert res["names"].count("Step") == 3
    assert res["shapes"] and all(s == [10, 2, 128, 128, "float32"] for s in res["shapes"])
    assert res["torch"] is False
    assert res["children"] == []
    # prediction arrays (10x2x128x128 float32, 1.3 MB each) went through files and were freed
    assert res["after"] - res["before"] < 30, res
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("synfoc-job-*/pred_*"))


def test_sigkill_mid_iteration_gives_a_clear_failure_and_keeps_the_checkpoint(tmp_path):
    events = []
    for e in train_in_child(_stack(), _cfg(checkpoint_every=1), out_dir=tmp_path, predict_every=0):
        events.append(e)
        if isinstance(e, Step) and e.iteration == 2:
            (child,) = _children()
            os.kill(child, signal.SIGKILL)
    last = events[-1]
    assert isinstance(last, Failed)
    assert "SIGKILL" in last.message and "labels are untouched" in last.message
    assert last.checkpoint is not None and str(last.checkpoint) in last.message
    assert load_checkpoint(last.checkpoint)["iteration"] >= 1


def test_native_crash_in_the_child_is_named(tmp_path):
    events = list(train_in_child(_stack(), _cfg(), out_dir=tmp_path, fault=fault_segfault))
    last = events[-1]
    assert isinstance(last, Failed), last
    assert "SIGSEGV" in last.message and "native" in last.message
    assert "labels are untouched" in last.message
    assert [e.iteration for e in events if isinstance(e, Step)] == [0, 1]


def test_memory_error_in_the_child_suggests_a_lighter_profile(tmp_path):
    last = list(train_in_child(_stack(), _cfg(), out_dir=tmp_path, fault=fault_memory_error))[-1]
    assert isinstance(last, Failed)
    assert "out of memory" in last.message and "cpu-interactive" in last.message
    assert isinstance(last.exception, MemoryError)


def test_cuda_oom_in_the_training_step_suggests_a_lighter_profile(tmp_path):
    events = list(
        train_in_child(_stack(), _cfg(), out_dir=tmp_path, fault=fault_cuda_oom_in_trainer)
    )
    last = events[-1]
    assert isinstance(last, Failed)
    assert "out of memory at iteration 0" in last.message and "lighter" in last.message
    assert not any(isinstance(e, Step) for e in events)


def test_stop_saves_a_checkpoint_and_a_new_run_starts_at_once(tmp_path):
    stop = {"now": False}
    events = []
    for e in train_in_child(
        _stack(), _cfg(), should_stop=lambda: stop["now"], out_dir=tmp_path / "a", poll_s=0.02
    ):
        events.append(e)
        if isinstance(e, Step) and e.iteration == 1:
            stop["now"] = True
    last = events[-1]
    assert isinstance(last, Cancelled) and 2 <= last.iteration <= 4
    assert isinstance(events[-2], CheckpointSaved)
    assert load_checkpoint(last.checkpoint)["iteration"] == last.iteration
    # Train again at once, warm-started from what Stop saved
    again = list(
        train_in_child(
            _stack(), _cfg(iterations=2), init_checkpoint=last.checkpoint, out_dir=tmp_path / "b"
        )
    )
    assert isinstance(again[-1], Done), again[-1]


def test_a_child_that_ignores_stop_is_killed_after_the_timeout(tmp_path):
    stop = {"now": False}
    events = []
    t_stop = None
    for e in train_in_child(
        _stack(),
        _cfg(checkpoint_every=1),
        should_stop=lambda: stop["now"],
        stop_timeout_s=1.0,
        out_dir=tmp_path,
        fault=fault_hang,
        predict_every=0,
    ):
        events.append(e)
        if isinstance(e, Step) and e.iteration == 1:
            stop["now"] = True
            t_stop = time.monotonic()
    waited = time.monotonic() - t_stop
    last = events[-1]
    assert isinstance(last, Cancelled)
    assert last.iteration == 2 and last.checkpoint is not None
    assert 0.9 < waited < 8.0, waited
    assert _children() == []  # killed and reaped before the generator returned


@pytest.mark.parametrize("how", ["close", "garbage-collect"])
def test_leaving_the_generator_early_stops_and_reaps_the_child(tmp_path, how):
    gen = train_in_child(_stack(), _cfg(iterations=500), out_dir=tmp_path, close_timeout_s=5.0)
    for e in gen:
        if isinstance(e, Step):
            break
    assert len(_children()) == 1
    t0 = time.monotonic()
    if how == "close":
        gen.close()
    else:
        del gen
        gc.collect()
    assert _children() == [], "the child outlived its generator"
    assert time.monotonic() - t0 < 8.0
    # the child was asked first, so it saved where it stopped
    assert (tmp_path / "synfoc_checkpoint.pt").is_file()


def test_two_runners_are_independent(tmp_path):
    a = train_in_child(_stack(seed=1), _cfg(iterations=3), out_dir=tmp_path / "a")
    b = train_in_child(_stack(seed=2), _cfg(iterations=3), out_dir=tmp_path / "b")
    ea, eb = [next(a)], [next(b)]  # both children start
    assert len(_children()) == 2
    ea += list(a)
    eb += list(b)
    assert isinstance(ea[-1], Done) and isinstance(eb[-1], Done)
    assert ea[-1].checkpoint != eb[-1].checkpoint


def test_invalid_task_fails_in_the_child_with_the_validator_message(tmp_path):
    task = _stack()
    task.labeled_slices = []
    last = list(train_in_child(task, _cfg(), out_dir=tmp_path))[-1]
    assert isinstance(last, Failed) and "no labelled slice" in last.message


def test_exit_descriptions_name_the_signal():
    from napari_synfoc.core.process_runner import describe_exit

    assert "SIGABRT" in describe_exit(-signal.SIGABRT) and "native" in describe_exit(-6)
    assert "SIGKILL" in describe_exit(-9) and "out of memory" in describe_exit(-9)
    assert "code 3" in describe_exit(3)


def fault_log_time(event):
    """Append (event type, monotonic time) to the file named by SYNFOC_TEST_EVENT_LOG."""
    with open(os.environ["SYNFOC_TEST_EVENT_LOG"], "a", encoding="utf-8") as f:
        f.write(f"{type(event).__name__} {time.monotonic()}\n")


def test_the_child_pauses_after_predictions_until_the_next_event_is_asked_for(
    tmp_path, monkeypatch
):
    """While the caller holds a Predictions event (napari building the overlays), the child
    sends nothing more; it goes on when the next event is asked for."""
    log = tmp_path / "events.log"
    monkeypatch.setenv("SYNFOC_TEST_EVENT_LOG", str(log))
    held = []
    events = train_in_child(
        _stack(), _cfg(iterations=6), out_dir=tmp_path, predict_every=2, fault=fault_log_time
    )
    for event in events:
        if type(event).__name__ == "Predictions" and not held:
            time.sleep(1.5)  # the GUI is busy with the overlays
            held.append(time.monotonic())
    assert held, "no Predictions event came"
    rows = [line.split() for line in log.read_text().splitlines()]
    first_pred = next(i for i, (name, _) in enumerate(rows) if name == "Predictions")
    t_pred = float(rows[first_pred][1])
    nxt = float(rows[first_pred + 1][1])
    assert nxt >= held[0] - 0.05, (t_pred, nxt, held[0])  # nothing sent while held
    assert nxt - t_pred >= 1.4
    assert rows[-1][0] == "Done"
