"""The Qt-free application: what the dock does, without Qt or napari (scripts drive it too).

:class:`~.controller.AppController` composes the parts, each holding its own state:

- ``controller.start_run(RunRequest)`` / ``controller.stop()``: training (:mod:`.run_request`,
  :mod:`.worker`, :mod:`.run_events`); ``controller.run`` and ``controller.model`` hold its state;
- ``controller.review``: review maps, ranking, ``next_uncertain``, ``accept`` (:mod:`.review`);
- ``controller.sessions``: save / load sessions, ``predict``, export (:mod:`.sessions`);
- ``controller.prompts``: box / point prompts, region fixes and, as ``prompts.propagation``, box
  propagation (:mod:`.prompts`, :mod:`.propagation`).

Jobs run on a :class:`~.jobs.JobRunner` ("sync" runs each job to its end inside the call).
"""
