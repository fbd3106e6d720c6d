"""Read every service in the fleet index in a constant number of commands.

``ZRANGE`` the index, then the reader's read-only script (``worker.read.reader.read_many``:
``EVAL_RO``, or ``EVAL`` on servers without it) returns the server's ``TIME`` and, for
each service, its value (only when at most 16 KiB), beat's marker and the discard note.
Two commands for 10 or 10,000 services (a third reads beat's markers and the discard
notes of the services that are not fresh, for their diagnosis), where pipelined GETs
would still be N commands, and no unbounded value is ever transferred. On a Redis
Cluster: one script per service, pipelined, so one round trip per node.
"""

from __future__ import annotations

from typing import Any

from worker.core.names import SERVICE_PATTERN, Keys
from worker.core.redis_io import as_text, execute_many
from worker.core.states import SEVERITY
from worker.core.urls import redact
from worker.read.reader import (
    HeartbeatReport,
    read_heartbeat,
    read_many,
    unreachable,
)


def fleet_services(client: Any, keys: Keys) -> list[str]:
    """Every valid service name in the index (invalid members are ignored, never used as keys)."""
    (members,) = execute_many(client, [("ZRANGE", keys.index, 0, -1)])
    if isinstance(members, BaseException):
        raise members
    return [name for name in map(as_text, members) if SERVICE_PATTERN.fullmatch(name)]


def read_fleet(client: Any, keys: Keys) -> list[HeartbeatReport] | HeartbeatReport:
    """Every indexed service, worst first; or one ``unreachable`` report if Redis can't be asked."""
    try:
        reports = read_many(client, fleet_services(client, keys), keys, lazy_notes=True)
    except Exception as exc:  # the reader reports, never raises
        return unreachable("*", f"Redis could not be asked: {redact(str(exc))[:200]}")
    return sort_worst_first(reports)


def sort_worst_first(reports: list[HeartbeatReport]) -> list[HeartbeatReport]:
    """Worst state first, then oldest first, then by name."""
    return sorted(reports, key=lambda r: (SEVERITY.index(r.state), -(r.age_s or 0), r.service))


__all__ = ["fleet_services", "read_fleet", "read_heartbeat", "read_many", "sort_worst_first"]
