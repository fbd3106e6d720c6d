"""The worker's side of watching the app's entries: each run's start and end, checked in.

A run of a watched entry carries the entry's name in a message header, which beat adds
and Celery keeps across retries. For such a run the worker checks in twice, one Redis round
trip each: at start (queue wait = start - dispatch) and at the end (``succeeded``,
``failed`` with the exception's type and a redacted, shortened message, ``retrying`` while
retries remain); plus ``revoked`` and ``rejected``. A task without the header (the same
task sent by ``.delay()``, or any other task) costs one dictionary lookup and nothing else.

Nothing here may fail a task: a store that fails is one log line per outage.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from worker.core.entries import ENTRY_HEADER, ENTRY_TEXT_MAX, ERROR_TEXT_MAX, entry_name_problem
from worker.core.urls import redact
from worker.publish.entry_store import EntryStore

logger = logging.getLogger(__name__)

OUTCOME_OF_STATE = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retrying",
                    "REVOKED": "revoked", "REJECTED": "rejected"}
"""Celery's final task states, as the entries record them."""


def entry_of(headers: Any) -> str | None:
    """The watched entry a message's headers (or task request) name; None for any other."""
    getter = getattr(headers, "get", None)
    name = None if getter is None else getter(ENTRY_HEADER)
    if name is None or entry_name_problem(name) is not None:
        return None
    return str(name)


SECRET_PAIR = re.compile(
    r"(?i)\b(pass(?:word|wd)?|pwd|secret|token|api[_-]?key|auth(?:orization)?)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|\S+)")
"""``password=...``, ``token: ...`` and the like in an exception's message."""


def error_of(retval: Any) -> tuple[str, str]:
    """The exception's type name and its message, redacted and cut; ``("", "")`` for none."""
    exc = getattr(retval, "exc", None) or retval  # a Retry carries the exception it retries
    if not isinstance(exc, BaseException):
        return "", ""
    text = " ".join(str(exc)[:4 * ERROR_TEXT_MAX].split())
    text = SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}***", redact(text))
    return type(exc).__name__[:ENTRY_TEXT_MAX], text[:ERROR_TEXT_MAX]


class EntryCheckins:
    """Check-ins of one worker process (each pool child opens its own client)."""

    def __init__(self, open_store: Any) -> None:
        self._open_store = open_store
        self._store: EntryStore | None = None
        self._pid = 0
        self._failing = False

    def _write(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            if self._store is None or self._pid != os.getpid():  # a forked pool child
                self._store, self._pid = self._open_store(), os.getpid()
            getattr(self._store, method)(*args, **kwargs)
        except Exception as exc:  # the store down: the task goes on
            if not self._failing:
                logger.error("the worker could not check in a run of a beat entry (it keeps "
                             "trying): %s", redact(f"{type(exc).__name__}: {exc}")[:200])
            self._failing = True
            return
        if self._failing:
            logger.warning("the worker checks in runs of beat entries again")
        self._failing = False

    def on_prerun(self, task_id: Any = None, task: Any = None, **_: Any) -> None:
        """``task_prerun``: a run of a watched entry started."""
        name = entry_of(getattr(task, "request", None))
        if name is not None and isinstance(task_id, str):
            node = str(getattr(task.request, "hostname", "") or "")[:ENTRY_TEXT_MAX]
            self._write("started", name, task_id[:ENTRY_TEXT_MAX], node)

    def on_postrun(self, task_id: Any = None, task: Any = None, state: Any = None,
                   retval: Any = None, **_: Any) -> None:
        """``task_postrun``: a run of a watched entry ended, or will be retried."""
        name = entry_of(getattr(task, "request", None))
        outcome = OUTCOME_OF_STATE.get(str(state))
        if name is None or outcome is None or not isinstance(task_id, str):
            return
        error_type, error = ("", "") if outcome == "succeeded" else error_of(retval)
        self._write("finished", name, task_id[:ENTRY_TEXT_MAX], outcome,
                    error_type=error_type, error=error)

    def on_revoked(self, request: Any = None, expired: Any = False, **_: Any) -> None:
        """``task_revoked``: a run of a watched entry was revoked (or expired) unrun."""
        headers = getattr(request, "_request_dict", None) or {}
        name = entry_of(headers)
        task_id = getattr(request, "id", None)
        if name is not None and isinstance(task_id, str):
            self._write("finished", name, task_id[:ENTRY_TEXT_MAX], "revoked",
                        error_type="Expired" if expired else "Revoked")

    def on_rejected(self, message: Any = None, exc: Any = None, **_: Any) -> None:
        """``task_rejected``: the worker refused a message of a watched entry."""
        headers = getattr(message, "headers", None) or {}
        name = entry_of(headers)
        task_id = headers.get("id")
        if name is not None and isinstance(task_id, str):
            error_type, error = error_of(exc)
            self._write("finished", name, task_id[:ENTRY_TEXT_MAX], "rejected",
                        error_type=error_type or "Rejected", error=error)
