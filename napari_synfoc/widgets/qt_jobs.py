"""The dock's job threads: napari's Qt thread worker, so job callbacks arrive in the GUI thread.

:class:`~napari_synfoc.app.jobs.JobRunner` is Qt-free; :func:`qt_job_runner` gives it this
thread starter.  napari is imported when a job starts, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..app.jobs import JobRunner


def qt_threads(
    fn: Callable[[], Any],
    on_error: Callable[[BaseException], None],
    on_finished: Callable[[], None],
    yielded: Callable[[Any], None] | None = None,
    returned: Callable[[Any], None] | None = None,
) -> Any:
    """Run ``fn`` (a generator function when ``yielded`` is given) in napari's thread worker;
    the callbacks run in the GUI thread through Qt signals.  Returns the started worker."""
    from napari.qt.threading import create_worker

    # on_error reports it (once, in the dock): napari's default would also re-raise it in the
    # GUI thread, a second raw pop-up with the traceback on the console (issue 23 item 9)
    worker = create_worker(fn, _start_thread=False, _ignore_errors=True)
    if yielded is not None:
        worker.yielded.connect(yielded)
    if returned is not None:
        worker.returned.connect(returned)
    worker.errored.connect(on_error)
    worker.finished.connect(on_finished)
    worker.start()
    return worker


def qt_job_runner(backend: str | None = None) -> JobRunner:
    """A :class:`~napari_synfoc.app.jobs.JobRunner` whose threads report in the GUI thread."""
    return JobRunner(backend, threads=qt_threads)
