"""Expected refusals (:class:`Refusal`) and the rules every user-facing message keeps
(:func:`message_problems`).

A refusal is bad input the application recognises: its text is the whole message, shown once,
with no traceback.  Any other exception in a job is unexpected: it is shown as a failure and its
traceback is logged.
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger("napari_synfoc")


class Refusal(ValueError):
    """Bad input, said in the user's words: shown as it is, never with a traceback."""


# what a clinician must never read: numpy reprs, errno prefixes, command-line flags, tracebacks
# and library paragraphs pasted into the message
_RULES = (
    (re.compile(r"\bnp\.[a-z]+\d*\("), "a numpy repr"),
    (re.compile(r"\[Errno \d+\]"), "an errno prefix"),
    (re.compile(r"(?<![\w-])--[a-z][a-z-]*"), "a command-line flag"),
    (re.compile(r"weights_only|Traceback \(most recent|File \"/"), "a pasted library paragraph"),
    (re.compile(r"\b(dtype|array)\("), "a numpy repr"),
)


def message_problems(text: str) -> list[str]:
    """What in ``text`` breaks the message rules (empty when it keeps them)."""
    return [f"{what}: {m.group(0)!r}" for rx, what in _RULES for m in [rx.search(text)] if m]


def failure_text(what: str, exc: BaseException) -> str:
    """The message for a job's exception: a :class:`Refusal`'s text alone; a ``ValueError``
    (the engine's bad-input errors) after ``what``; anything else is unexpected: its type
    too, and its traceback goes to the log."""
    if isinstance(exc, Refusal):
        return str(exc)
    if isinstance(exc, ValueError):
        return f"{what}: {exc}"
    log.error("%s: unexpected error", what, exc_info=exc)
    return f"{what}: {type(exc).__name__}: {exc}"
