"""Beat's publish of the heartbeat entries: a refused publish is one line and a marker note.

When the broker is down or refuses a message (a Redis broker at its memory limit), Celery's
scheduler logs a traceback for every entry on every tick, and nothing tells a reader that
beat is alive but cannot publish. Wrapped by ``guard_publishes``, a failed publish of a
heartbeat entry is instead:

* logged once, in one line, when publishing starts to fail, and once when it works again;
* recorded in beat's marker in the store (``publish_failed_at_ms``, ``publish_error``), so
  readers diagnose ``broker_down`` rather than ``beat_down`` while beat keeps trying.

Entries of the user's own tasks are left exactly as Celery handles them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker.core.names import HEALTH_TASK, NODE_TASK
from worker.core.urls import redact

logger = logging.getLogger(__name__)

PUBLISH_ERROR_CHARS = 200
"""A refused publish's error is cut to this many characters in the log line and the marker."""


def publish_error(exc: BaseException) -> str:
    """One short, password-free line for a refused publish (the cause, when Celery wrapped it)."""
    cause = exc.__cause__ or exc.__context__ or exc
    text = redact(f"{type(cause).__name__}: {str(cause)[:4 * PUBLISH_ERROR_CHARS]}")
    return " ".join(text.split())[:PUBLISH_ERROR_CHARS]


class PublishGuard:
    """Wraps one scheduler's ``apply_async``: heartbeat entries never raise out of it."""

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        self._on_failure = on_failure
        self.failing: dict[str, str] = {}  #: task name -> its publish error, while it fails

    def wrap(self, apply_async: Callable[..., Any]) -> Callable[..., Any]:
        """``apply_async`` with heartbeat-entry failures caught, noted and logged once."""

        def guarded(entry: Any, *args: Any, **kwargs: Any) -> Any:
            task = getattr(entry, "task", None)
            if task not in (HEALTH_TASK, NODE_TASK):
                return apply_async(entry, *args, **kwargs)
            try:
                result = apply_async(entry, *args, **kwargs)
            except Exception as exc:  # the broker's failure, whatever its client raises
                error = publish_error(exc)
                if task not in self.failing:
                    logger.error("beat could not publish %s (beat keeps trying every "
                                 "interval): %s", task, error)
                self.failing[task] = error
                if task == HEALTH_TASK:
                    self._on_failure(error)
                return None  # Celery's scheduler logs "sent" and goes on to the next entry
            if self.failing.pop(task, None) is not None:
                logger.warning("beat publishes %s again", task)
            return result

        return guarded


def guard_publishes(scheduler: Any, on_failure: Callable[[str], None]) -> PublishGuard:
    """Guard ``scheduler``'s publishes of the heartbeat entries (any Celery scheduler class)."""
    guard = PublishGuard(on_failure)
    scheduler.apply_async = guard.wrap(scheduler.apply_async)
    return guard
