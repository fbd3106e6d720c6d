"""Named states of a heartbeat, and the one function that derives a state from an age.

A state is computed from one reading of one clock (Redis's ``TIME``, taken in the same
round trip as the value) so a reader on a host with a wrong clock still gets it right.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class State(enum.StrEnum):
    """What a reader can say about a heartbeat; values are stable strings for JSON and metrics."""

    FRESH = "fresh"
    LATE = "late"
    STALE = "stale"
    MISSING = "missing"
    INVALID = "invalid"
    UNREACHABLE = "unreachable"

    @property
    def exit_code(self) -> int:
        """Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
        return _EXIT_CODES[self]

    @property
    def http_status(self) -> int:
        """200 while the pipeline works (fresh, late), 503 otherwise."""
        return 200 if self in (State.FRESH, State.LATE) else 503


class Diagnosis(enum.StrEnum):
    """Which hop of the pipeline broke, for a heartbeat that is not fresh.

    Values are stable strings for JSON, metrics and hooks (a ``StrEnum`` compares equal to
    its value).
    """

    BEAT_DOWN = "beat_down"  #: beat has not published on time
    BEAT_OR_BROKER = "beat_or_broker"  #: beat's publish is overdue, too recently to say why
    NO_CONSUMER = "no_consumer"  #: beat publishes, but no worker runs the heartbeat
    WORKER_SLOW = "worker_slow"  #: a worker runs heartbeats, too late to be fresh
    CHECK_FAILED = "check_failed"  #: the pipeline works; a check reported degraded or error
    BROKER_DOWN = "broker_down"  #: beat runs, but the broker refused its last publish
    STORE_REFUSES_WRITES = "store_refuses_writes"  #: the store answers but refuses writes
    NEVER_SEEN = "never_seen"  #: no heartbeat and no beat marker were ever stored
    STORE_UNREACHABLE = "store_unreachable"  #: the store could not be asked


_EXIT_CODES = {
    State.FRESH: 0,
    State.LATE: 1,
    State.STALE: 2,
    State.MISSING: 2,
    State.INVALID: 3,
    State.UNREACHABLE: 3,
}

SEVERITY: tuple[State, ...] = (
    State.UNREACHABLE, State.INVALID, State.MISSING, State.STALE, State.LATE, State.FRESH,
)
"""States worst first, for sorting fleets."""

STALE_FACTOR = 3.0
"""A heartbeat is stale after this many intervals, unless a stale threshold is given."""

LATE_FACTOR = 1.5
"""A heartbeat is late after this many intervals (never beyond the stale threshold)."""

FUTURE_TOLERANCE_MS = 2000
"""A stored ts_ms up to this far ahead of Redis's clock reads as age 0; further is invalid."""


class Thresholds(NamedTuple):
    """The ages (seconds) at which a heartbeat becomes late and stale."""

    late_after_s: float
    stale_after_s: float

    @classmethod
    def for_interval(cls, interval_s: float, stale_after_s: float | None = None,
                     late_after_s: float | None = None) -> Thresholds:
        """The one threshold rule: late after 1.5 intervals, stale after 3, unless given.

        Late is never beyond stale: a threshold given for one and not the other still
        leaves a consistent pair.
        """
        stale = interval_s * STALE_FACTOR if stale_after_s is None else stale_after_s
        late = interval_s * LATE_FACTOR if late_after_s is None else late_after_s
        return cls(min(late, stale), stale)

    def overridden(self, late_after_s: float | None = None,
                   stale_after_s: float | None = None) -> Thresholds:
        """These thresholds with a probe's own flags applied (late never beyond stale)."""
        stale = self.stale_after_s if stale_after_s is None else stale_after_s
        late = self.late_after_s if late_after_s is None else late_after_s
        return Thresholds(min(late, stale), stale)


def state_for(age_s: float, status: str, thresholds: Thresholds) -> State:
    """The state of a readable heartbeat of ``age_s`` seconds with payload ``status``.

    Boundaries are inclusive on the good side: exactly ``late_after_s`` old is still fresh,
    exactly ``stale_after_s`` old is still late.
    """
    if age_s > thresholds.stale_after_s or status == "error":
        return State.STALE
    if age_s > thresholds.late_after_s or status == "degraded":
        return State.LATE
    return State.FRESH
