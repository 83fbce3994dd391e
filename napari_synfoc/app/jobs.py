"""One job runner for the application: a background thread, or synchronous for tests and scripts.

A job is an event generator (training: every yielded event reaches ``on_event``) or a plain call
(prediction: its result reaches ``on_result``).  One job at a time.

Backends:

- ``"thread"``: a background thread started by the runner's ``threads`` hook.  The dock passes
  :func:`napari_synfoc.widgets.qt_jobs.qt_threads` (napari's ``thread_worker``: callbacks arrive
  in the GUI thread through Qt signals); the default, :func:`plain_thread`, needs no event loop
  and calls back from the job's own thread (scripts).  No Qt here.
- ``"sync"``: the job runs to its end inside ``start_*`` (tests, ``SYNFOC_NOTHREADS=1``); no Qt.
- ``"process"`` (the dock's default): the thread runner draining a generator that trains in a
  ``spawn`` child process (:func:`training_source` returns ``core.process_runner.train_in_child``
  for it).  The thread only reads events, so it stays light; a crash, an out-of-memory kill or a
  hang in training cannot take napari down, and the training memory goes back when the child
  exits.  Predictions (``start_call``) still run in the thread.

Choosing a backend: ``SynFoCWidget(viewer, backend="thread")`` or ``JobRunner("sync")`` in code;
the environment variable ``SYNFOC_BACKEND=process|thread|sync`` for a whole session;
``SYNFOC_NOTHREADS=1`` is the older spelling of ``sync`` and wins over both.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .process_tweaks import nothreads

BACKENDS = ("thread", "sync", "process")
BACKEND_ENV = "SYNFOC_BACKEND"


def default_backend() -> str:
    """``"sync"`` when ``SYNFOC_NOTHREADS`` is set, else ``$SYNFOC_BACKEND``, else
    ``"process"`` (training in a child process)."""
    if nothreads():
        return "sync"
    name = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not name:
        return "process"
    if name not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={name!r} is not a job backend; choose from {BACKENDS}")
    return name


def training_source(backend: str) -> Callable[..., Iterator[Any]]:
    """The function whose events a training run drains, for ``backend``.

    ``train_on_stack`` (in this process) for "thread" and "sync"; for "process", the hook
    ``napari_synfoc.core.process_runner.train_in_child`` (same signature, same events).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown job backend {backend!r}; choose from {BACKENDS}")
    if backend == "process":
        from ..core.process_runner import train_in_child

        return train_in_child
    from ..core.interactive import train_on_stack

    return train_on_stack


def _noop(*_: Any) -> None:
    return None


# threads(fn, on_error, on_finished, yielded=None, returned=None) -> a handle: run ``fn`` in the
# background (a generator function when ``yielded`` is given), report, then ``on_finished()``
ThreadStarter = Callable[..., Any]


def plain_thread(
    fn: Callable[[], Any],
    on_error: Callable[[BaseException], None],
    on_finished: Callable[[], None],
    yielded: Callable[[Any], None] | None = None,
    returned: Callable[[Any], None] | None = None,
) -> threading.Thread:
    """Run ``fn`` in a daemon thread; every callback runs in that thread (no event loop)."""

    def work() -> None:
        try:
            if yielded is not None:
                for item in fn():
                    yielded(item)
            else:
                result = fn()
                if returned is not None:
                    returned(result)
        except Exception as exc:  # noqa: BLE001 - reported through on_error
            on_error(exc)
        finally:
            on_finished()

    thread = threading.Thread(target=work, name="synfoc-job", daemon=True)
    thread.start()
    return thread


class JobRunner:
    """Runs one job at a time on the chosen backend and reports through callbacks.

    ``threads`` starts the background thread of the "thread" and "process" backends (default:
    :func:`plain_thread`; the dock passes napari's Qt thread worker).
    """

    def __init__(self, backend: str | None = None, threads: ThreadStarter | None = None):
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"unknown job backend {backend!r}; choose from {BACKENDS}")
        self.backend = backend
        self.threads = threads or plain_thread
        self._worker: Any = None
        self._busy = False
        self._abandoned: threading.Event | None = None

    @property
    def busy(self) -> bool:
        """True from the start of a job until its ``on_finished`` has run."""
        return self._busy

    @property
    def synchronous(self) -> bool:
        return self.backend == "sync"

    def start_events(
        self,
        events: Iterator[Any],
        on_event: Callable[[Any], None],
        on_error: Callable[[BaseException], None] = _noop,
        on_finished: Callable[[], None] = _noop,
    ) -> None:
        """Drain ``events``: each goes to ``on_event``; then ``on_finished`` (always)."""
        self._claim()
        if self.synchronous:

            def drain_here():
                for event in events:
                    on_event(event)

            self._run_here(drain_here, _noop, on_error, on_finished)
            return

        abandoned = self._abandoned = threading.Event()

        def drain():
            try:
                for event in events:
                    if abandoned.is_set():
                        break
                    yield event
            finally:  # close the source now (a child process is stopped, then killed)
                close = getattr(events, "close", None)
                if close is not None:
                    close()

        self._start_thread(drain, on_error, on_finished, yielded=on_event)

    def abandon(self) -> None:
        """The front end is gone: end the running event job at its next event, closing its
        source (for the process backend: stop the child, kill it after a short grace)."""
        if self._abandoned is not None:
            self._abandoned.set()

    def start_call(
        self,
        fn: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[BaseException], None] = _noop,
        on_finished: Callable[[], None] = _noop,
    ) -> None:
        """Run ``fn()``: its result goes to ``on_result``; then ``on_finished`` (always)."""
        self._claim()
        if self.synchronous:
            self._run_here(fn, on_result, on_error, on_finished)
            return
        self._start_thread(fn, on_error, on_finished, returned=on_result)

    # ------------------------------------------------------------------ internals
    def _claim(self) -> None:
        if self._busy:
            raise RuntimeError("a job is already running: wait for it to end or stop it")
        self._busy = True

    def _finish(self, on_finished: Callable[[], None]) -> None:
        self._worker = None
        self._busy = False
        on_finished()

    def _run_here(self, fn, on_result, on_error, on_finished) -> None:
        """The "sync" backend: ``fn()`` now; its result or error, then ``on_finished``."""
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - reported through on_error
            on_error(exc)
        else:
            on_result(result)
        finally:
            self._finish(on_finished)

    def _start_thread(self, fn, on_error, on_finished, yielded=None, returned=None) -> None:
        try:
            self._worker = self.threads(
                fn, on_error, lambda: self._finish(on_finished), yielded=yielded, returned=returned
            )
        except Exception:
            self._busy = False
            raise
