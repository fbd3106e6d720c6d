"""Beat entries of the user's own app: names, states and tolerances, shared by every side.

An entry name is the user's text (``"add every 10 seconds"`` is Celery's own example), so
it is not held to the service alphabet: it is checked here (printable, bounded) and only
ever used as a hash field inside the service's own keys, never as a key name.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Any, NamedTuple

from worker.core.errors import ConfigError

ENTRY_NAME_MAX = 200
"""The longest entry name watched; a longer one is skipped with one line."""

ENTRY_TEXT_MAX = 200
"""Schedules and task names are stored cut to this many characters."""

ERROR_TEXT_MAX = 300
"""A failed run's message is stored cut to this many characters (redacted first)."""

ENTRY_HEADER = "petsage_entry"
"""Message header: the beat entry this task run was dispatched for (absent otherwise)."""

DEFAULT_GRACE_FACTOR = 0.5
"""Without ``grace_s``, a run may be late by this fraction of the entry's period ..."""

MIN_GRACE_S = 5.0
"""... but never by less than this (beat ticks, queue hops and a busy worker take time) ..."""

MAX_GRACE_S = 300.0
"""... nor by more than this (a daily entry is flagged within five minutes)."""

OPTIONS_KEY = "heartbeat"
"""The key of an entry's ``options`` that opts it out (``False``) or sets tolerances."""


class EntryState(enum.StrEnum):
    """What a reader can say about one beat entry; values are stable strings."""

    OK = "ok"  #: the last run succeeded
    PENDING = "pending"  #: watched, its first run not yet due
    RUNNING = "running"  #: a run has started and not yet finished
    RETRYING = "retrying"  #: the last run raised and is being retried
    DUPLICATE = "duplicate"  #: one due time was dispatched twice (two beats)
    FAILED = "failed"  #: the last run failed
    OVERRUN = "overrun"  #: started, not finished within the max runtime
    NOT_STARTED = "not_started"  #: dispatched, not started within the grace
    MISSED = "missed"  #: due time plus grace passed with no dispatch
    REMOVED = "removed"  #: the entry left the schedule

    @property
    def exit_code(self) -> int:
        """Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL."""
        if self in (EntryState.OK, EntryState.PENDING, EntryState.RUNNING):
            return 0
        if self in (EntryState.RETRYING, EntryState.DUPLICATE):
            return 1
        return 2

    @property
    def is_up(self) -> bool:
        """Whether the entry does its job (for uptime and alert rules): exit code 0 or 1."""
        return self.exit_code < 2


ENTRY_SEVERITY: tuple[EntryState, ...] = (
    EntryState.MISSED, EntryState.NOT_STARTED, EntryState.OVERRUN, EntryState.FAILED,
    EntryState.REMOVED, EntryState.DUPLICATE, EntryState.RETRYING, EntryState.RUNNING,
    EntryState.PENDING, EntryState.OK,
)
"""Entry states worst first, for sorting."""


def entry_name_problem(name: Any) -> str | None:
    """Why ``name`` can't be an entry name, or None when it can."""
    if not isinstance(name, str):
        return f"an entry name is text, not {type(name).__name__}"
    if not name.strip():
        return "an entry name can't be empty or blank"
    if len(name) > ENTRY_NAME_MAX:
        return f"an entry name has at most {ENTRY_NAME_MAX} characters, not {len(name)}"
    if not name.isprintable():
        return "an entry name can't hold control characters (newlines, tabs, escapes)"
    return None


def validate_entry_name(name: Any, *, source: str = "entry name") -> str:
    """``name`` if it can be an entry name, else ``ConfigError`` (one line, what is accepted)."""
    problem = entry_name_problem(name)
    if problem is not None:
        shown = repr(name if not isinstance(name, str) or len(name) <= 40 else name[:40] + "...")
        raise ConfigError(f"{source} {shown} refused: {problem}; accepted: 1-{ENTRY_NAME_MAX} "
                          "printable characters")
    assert isinstance(name, str)
    return name


class Tolerances(NamedTuple):
    """How late a run may start, and how long it may run, before the entry is flagged."""

    grace_s: float
    max_runtime_s: float | None


def _positive(value: Any, what: str, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not 0 < value <= 366 * 86400):
        raise ConfigError(f"beat entry {name!r}: options.heartbeat.{what} {value!r} refused; "
                          "accepted: a number of seconds above 0, up to a year")
    return float(value)


def tolerances(options: Any, period_s: float | None, name: str) -> Tolerances | None:
    """An entry's tolerances from its ``options``; None when it opts out.

    ``{"heartbeat": False}`` opts out; ``{"heartbeat": {"grace_s": 300,
    "max_runtime_s": 3600}}`` sets both. Without ``grace_s``, half the period, within 5 s
    and 5 minutes. Without ``max_runtime_s``, a run is never flagged for its length.
    """
    own = options.get(OPTIONS_KEY, True) if isinstance(options, dict) else True
    if own is False:
        return None
    if own is True or own is None:
        own = {}
    if not isinstance(own, dict) or set(own) - {"grace_s", "max_runtime_s"}:
        raise ConfigError(f"beat entry {name!r}: options.heartbeat {own!r} refused; accepted: "
                          "false, or an object with grace_s and/or max_runtime_s")
    grace = own.get("grace_s")
    if grace is None:
        base = MIN_GRACE_S if period_s is None else period_s * DEFAULT_GRACE_FACTOR
        # To the millisecond: a crontab's period comes out as 60.000014 s.
        grace_s = round(min(max(base, MIN_GRACE_S), MAX_GRACE_S), 3)
    else:
        grace_s = _positive(grace, "grace_s", name)
    runtime = own.get("max_runtime_s")
    max_runtime_s = None if runtime is None else _positive(runtime, "max_runtime_s", name)
    return Tolerances(grace_s, max_runtime_s)


def parse_entries_filter(raw: str, *, source: str = "HEARTBEAT_ENTRIES") -> str | None:
    """``HEARTBEAT_ENTRIES``: a regular expression of the entry names to watch; None = all."""
    text = raw.strip()
    if not text:
        return None
    shown = text if len(text) <= 40 else text[:40] + "..."
    try:
        re.compile(text)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ConfigError(f"{source}={shown!r} is not a regular expression ({exc}); accepted: "
                          "a Python regular expression matched against whole entry names, "
                          "e.g. 'reports\\..*|cleanup'") from None
    return text
