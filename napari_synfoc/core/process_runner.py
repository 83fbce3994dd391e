"""Training in a child process: a crash, an out-of-memory kill or a hang in training cannot take
the caller (napari, with the user's unsaved labels) down, and its memory goes back on exit.

:func:`train_in_child` runs :func:`napari_synfoc.core.interactive.train_on_stack` in a
``spawn``-started child and yields the same typed events. The task's arrays go through ``.npy``
files in a private temp folder (the child memory-maps them); large prediction arrays come back
the same way. The parent never imports torch or the models for this.

Stop escalates: a stop message first (the trainer saves a checkpoint and ends with Cancelled);
if the child has not finished after ``stop_timeout_s``, SIGTERM, then SIGKILL to the child's
process group and every descendant found in ``/proc``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any

import numpy as np

from .events import Cancelled, CheckpointSaved, Done, Event, Failed, Predictions, Progress, Step

# Prediction arrays above this many bytes travel through a file instead of the pipe.
FILE_TRANSFER_BYTES = 1 << 20
_STOP = "stop"
# After each Predictions event the child waits (at most this long) for the parent's "resume",
# sent when the parent asks for the next event: while napari builds or updates the overlay
# layers, the training does not take both cores from the GUI thread.
_RESUME = "resume"
PREDICTION_PAUSE_S = 5.0
# What a start is busy with before training reports itself (Progress events, step k of 3).
START_STAGES = (
    "Starting the training process",
    "Loading the training libraries (torch)",
    "Preparing the slices, building the models and loading their weights",
)
_LIVE: weakref.WeakSet = weakref.WeakSet()  # child Process objects still running


@dataclasses.dataclass(frozen=True)
class _ArrayFile:
    """A placeholder for an array written to ``path`` (read back and deleted by the parent)."""

    path: str


# ----------------------------------------------------------------------------- process tree
def descendant_pids(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (default: this process), from ``/proc`` (Linux).

    Zombies are left out: they hold no memory and are reaped by their parent.
    """
    pid = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # fields after the ')' that closes the command name: state, ppid, ...
            rest = stat[stat.rfind(")") + 2 :].split()
            if rest[0] in ("Z", "X"):
                continue
            children.setdefault(int(rest[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_tree(proc, term_grace_s: float = 2.0) -> None:
    """SIGTERM the child, then SIGKILL its process group and every descendant; reap it."""
    if proc.pid is None:
        return
    tree = descendant_pids(proc.pid)
    if proc.exitcode is None:
        with contextlib.suppress(OSError):
            proc.terminate()
        proc.join(term_grace_s)
    tree = set(tree) | set(descendant_pids(proc.pid))
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own group (setpgrp)
    if proc.exitcode is None:
        with contextlib.suppress(OSError):
            proc.kill()
    for pid in tree:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    proc.join(5.0)


@atexit.register
def _kill_live_children() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            _kill_tree(proc, term_grace_s=0.5)


# ----------------------------------------------------------------------------- task transfer
def _write_task(task, folder: Path) -> dict[str, Any]:
    """The task's fields: arrays as ``.npy`` files in ``folder``, the rest as they are."""
    spec: dict[str, Any] = {"class": (type(task).__module__, type(task).__qualname__)}
    fields: dict[str, Any] = {}
    for i, f in enumerate(dataclasses.fields(task)):
        value = getattr(task, f.name)
        if isinstance(value, np.ndarray):
            path = folder / f"{i}_{f.name}.npy"
            np.save(path, value, allow_pickle=False)
            fields[f.name] = _ArrayFile(str(path))
        elif isinstance(value, list | tuple) and value and isinstance(value[0], np.ndarray):
            paths = []
            for j, arr in enumerate(value):
                path = folder / f"{i}_{f.name}_{j}.npy"
                np.save(path, np.asarray(arr), allow_pickle=False)
                paths.append(_ArrayFile(str(path)))
            fields[f.name] = paths
        else:
            fields[f.name] = value
    spec["fields"] = fields
    return spec


def _read_task(spec: dict[str, Any]):
    import importlib

    module, name = spec["class"]
    cls = getattr(importlib.import_module(module), name)

    def load(v):
        if isinstance(v, _ArrayFile):
            return np.load(v.path, mmap_mode="r", allow_pickle=False)
        if isinstance(v, list) and v and isinstance(v[0], _ArrayFile):
            return [load(x) for x in v]
        return v

    return cls(**{k: load(v) for k, v in spec["fields"].items()})


# ----------------------------------------------------------------------------- the child
def _picklable_exception(exc: BaseException | None) -> BaseException | None:
    import pickle

    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - replaced by a plain copy of its text
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child_main(spec, cfg, kwargs, folder, events_w, stop_r, fault) -> None:
    """Entry point of the training process (spawned; imports torch only here)."""
    os.setpgrp()  # own process group: a stop kills the child and its DataLoader workers at once
    # the start stages the user sees while nothing else is reported yet (issue 23 item 15)
    events_w.send(Progress(START_STAGES[1], 2, len(START_STAGES)))
    # OpenMP reads this when torch loads: waiting threads sleep instead of spinning on a core
    # that the UI or another process needs
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .device import apply_child_cpu_policy

    apply_child_cpu_policy()
    stop = threading.Event()
    resume = threading.Event()

    def watch_parent() -> None:
        try:
            while True:
                msg = stop_r.recv()
                if msg == _STOP:
                    stop.set()
                    resume.set()
                elif msg == _RESUME:
                    resume.set()
        except (EOFError, OSError):  # the parent is gone: do not train on as an orphan
            stop.set()
            time.sleep(5.0)
            os._exit(3)

    threading.Thread(target=watch_parent, name="synfoc-parent-watch", daemon=True).start()
    n_files = 0

    def send(event) -> None:
        nonlocal n_files
        if isinstance(event, Predictions):
            arrays = {}
            for name in ("fm_prob", "unet_prob"):
                arr = getattr(event, name)
                if isinstance(arr, np.ndarray) and arr.nbytes > FILE_TRANSFER_BYTES:
                    path = os.path.join(folder, f"pred_{n_files}_{name}.npy")
                    n_files += 1
                    np.save(path, arr, allow_pickle=False)
                    arr = _ArrayFile(path)
                arrays[name] = arr
            event = dataclasses.replace(event, **arrays)
        elif isinstance(event, Failed):
            event = dataclasses.replace(event, exception=_picklable_exception(event.exception))
        events_w.send(event)

    from .device import is_oom
    from .interactive import train_on_stack
    from .steps import failure_message, oom_message

    iteration = 0
    try:
        send(Progress(START_STAGES[2], 3, len(START_STAGES)))
        task = _read_task(spec)
        for event in train_on_stack(task, cfg, should_stop=stop.is_set, **kwargs):
            if isinstance(event, Step):
                iteration = event.iteration + 1
            if isinstance(event, Failed) and event.exception is not None:
                if is_oom(event.exception) and "out of memory" not in event.message:
                    event = dataclasses.replace(
                        event, message=oom_message(f"at iteration {event.iteration}")
                    )
            if isinstance(event, Predictions):
                resume.clear()
            send(event)
            if fault is not None:
                fault(event)
            if isinstance(event, Predictions):  # the parent is showing them: give it the CPU
                resume.wait(PREDICTION_PAUSE_S)
    except BaseException as exc:  # noqa: BLE001 - anything reaches the parent as a Failed event
        with contextlib.suppress(Exception):  # failure_message words out of memory too
            send(Failed(failure_message(exc, iteration), iteration, None, exc))
    finally:
        with contextlib.suppress(Exception):
            events_w.close()


# ----------------------------------------------------------------------------- the parent
_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_module_hidden():
    """Start the child without re-running the caller's ``__main__`` (a script without a
    ``__name__ == "__main__"`` guard, napari's launcher, a notebook): the child's entry point
    lives in this package and needs nothing from it."""
    import sys

    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    with _START_LOCK:
        try:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def describe_exit(exitcode: int | None) -> str:
    """How a child process ended, for the user (signal name and likely cause)."""
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return f"was killed by signal {-exitcode}"
        what = {
            signal.SIGKILL: "; the system may have run out of memory (try a lighter profile)",
            signal.SIGSEGV: " (a crash in native code)",
            signal.SIGBUS: " (a crash in native code)",
            signal.SIGABRT: " (a native library aborted)",
            signal.SIGILL: " (a crash in native code)",
        }.get(sig, "")
        return f"was killed by {sig.name} (signal {-exitcode}){what}"
    return f"exited unexpectedly with code {exitcode}"


def _load_arrays(event):
    if isinstance(event, Predictions):
        arrays = {}
        for name in ("fm_prob", "unet_prob"):
            arr = getattr(event, name)
            if isinstance(arr, _ArrayFile):
                path = arr.path
                arr = np.load(path, allow_pickle=False)
                with contextlib.suppress(OSError):
                    os.unlink(path)
            arrays[name] = arr
        event = dataclasses.replace(event, **arrays)
    return event


@dataclasses.dataclass
class _ChildJob:
    """One training child and what the parent knows of it (shared by the helpers below)."""

    folder: Path
    proc: Any = None
    events_r: Any = None
    events_w: Any = None
    stop_r: Any = None
    stop_w: Any = None
    last_ckpt: Path | None = None
    iteration: int = 0
    finished: bool = False


def train_in_child(
    task,
    cfg,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    stop_timeout_s: float = 30.0,
    close_timeout_s: float = 3.0,
    exit_timeout_s: float = 15.0,
    poll_s: float = 0.1,
    fault: Callable[[Event], None] | None = None,
    **train_on_stack_kwargs,
) -> Iterator[Event]:
    """Run :func:`~napari_synfoc.core.interactive.train_on_stack` in a ``spawn`` child process
    and yield its events; always ends with exactly one Done, Cancelled or Failed.

    ``should_stop`` is polled every ``poll_s`` seconds; when it turns true the child is asked to
    stop (it saves a checkpoint and sends Cancelled). If it has not finished ``stop_timeout_s``
    later it is terminated, then killed with its children, and Cancelled carries the last
    checkpoint seen. A child that dies yields Failed naming the signal or exit code. Closing the
    generator early stops the child the same way, waiting at most ``close_timeout_s`` for it to
    save before killing it; after its last event the child gets ``exit_timeout_s`` to exit before
    it is killed. After each Predictions event the child pauses until the caller asks for the
    next event (at most ``PREDICTION_PAUSE_S``), so showing them does not compete with training
    for the CPU. ``fault`` (tests only) is a picklable function the child calls after
    each event it sends.
    """
    job = _ChildJob(Path(tempfile.mkdtemp(prefix="synfoc-job-")))
    try:
        _start_child(job, task, cfg, train_on_stack_kwargs, fault)
        yield Progress(START_STAGES[0], 1, len(START_STAGES))  # the child boots Python
        yield from _relay_events(job, should_stop, stop_timeout_s, poll_s)
    finally:
        _reap_child(job, close_timeout_s, exit_timeout_s)
        for conn in (job.events_r, job.events_w, job.stop_r, job.stop_w):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        shutil.rmtree(job.folder, ignore_errors=True)


def _start_child(job: _ChildJob, task, cfg, train_on_stack_kwargs: dict, fault) -> None:
    """Write the task into ``job.folder``, open the pipes and start the ``spawn`` child."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    spec = _write_task(task, job.folder)
    job.events_r, job.events_w = ctx.Pipe(duplex=False)
    job.stop_r, job.stop_w = ctx.Pipe(duplex=False)
    job.proc = ctx.Process(
        target=_child_main,
        args=(
            spec,
            cfg,
            train_on_stack_kwargs,
            str(job.folder),
            job.events_w,
            job.stop_r,
            fault,
        ),
        name="synfoc-training",
    )
    with _main_module_hidden():
        job.proc.start()
    _LIVE.add(job.proc)
    job.events_w.close()  # the child holds the only write end: EOF means it is gone
    job.stop_r.close()


def _tell(job: _ChildJob, message: str) -> None:
    """Send the child ``_STOP`` (it saves a checkpoint and sends Cancelled) or ``_RESUME`` (go
    on after a Predictions event); a child already gone is not an error."""
    with contextlib.suppress(OSError):
        job.stop_w.send(message)


def _relay_events(
    job: _ChildJob, should_stop: Callable[[], bool], stop_timeout_s: float, poll_s: float
) -> Iterator[Event]:
    """Yield the child's events until its final one; stop it when ``should_stop`` turns true
    (killing it after ``stop_timeout_s``); yield Failed if it dies without a final event."""
    stop_deadline: float | None = None
    while True:
        if stop_deadline is None and should_stop():
            _tell(job, _STOP)
            stop_deadline = time.monotonic() + stop_timeout_s
        if stop_deadline is not None and time.monotonic() > stop_deadline:
            _kill_tree(job.proc)
            job.finished = True
            yield Cancelled(job.iteration, job.last_ckpt)
            return
        ready = mp_connection.wait([job.events_r, job.proc.sentinel], timeout=poll_s)
        if job.events_r in ready:
            event = _receive_event(job)
            if event is not None:
                yield event
                if isinstance(event, Predictions):
                    _tell(job, _RESUME)
                if job.finished:
                    return
                continue
        elif job.proc.sentinel not in ready:
            continue
        # the child is gone (or its pipe broke) without a final event
        job.proc.join(5.0)
        job.finished = True
        yield _died_event(job)
        return


def _receive_event(job: _ChildJob) -> Event | None:
    """The child's next event (None when its pipe is closed or broken); tracks the iteration,
    the last checkpoint and whether the event is final."""
    try:
        event = job.events_r.recv()
    except (EOFError, OSError):
        return None
    if event is None:
        return None
    event = _load_arrays(event)
    if isinstance(event, Step):
        job.iteration = event.iteration + 1
    elif isinstance(event, CheckpointSaved):
        job.last_ckpt = Path(event.path)
    job.finished = isinstance(event, Done | Cancelled | Failed)
    return event


def _died_event(job: _ChildJob) -> Failed:
    """Failed for a child that exited without a final event, naming how and what is kept."""
    kept = (
        f"; the last checkpoint '{job.last_ckpt}' is kept"
        if job.last_ckpt is not None
        else "; no checkpoint was written yet"
    )
    return Failed(
        f"the training process {describe_exit(job.proc.exitcode)} at iteration "
        f"{job.iteration}. Your labels are untouched{kept}.",
        job.iteration,
        job.last_ckpt,
    )


def _reap_child(job: _ChildJob, close_timeout_s: float, exit_timeout_s: float) -> None:
    """Make sure the child and its descendants are gone: ask it to stop if it was closed early,
    give it time to exit, then kill it and its process group."""
    proc = job.proc
    if proc is None or proc.pid is None:
        return
    if proc.exitcode is None and not job.finished:  # closed early: ask, then force
        _tell(job, _STOP)
        proc.join(close_timeout_s)
    if proc.exitcode is None and job.finished:  # it sent its last event: let it exit
        proc.join(exit_timeout_s)
    if proc.exitcode is None:
        _kill_tree(proc, term_grace_s=1.0)
    proc.join()
    # descendants that outlived it (e.g. DataLoader workers in its process group)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    _LIVE.discard(proc)
