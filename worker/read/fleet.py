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

from typing import Any, NamedTuple

from worker.core.names import SERVICE_PATTERN, Keys
from worker.core.redis_io import as_text, execute_many
from worker.core.states import SEVERITY
from worker.core.urls import redact
from worker.read.reader import (
    HeartbeatReport,
    read_many,
)


def fleet_services(client: Any, keys: Keys) -> list[str]:
    """Every valid service name in the index (invalid members are ignored, never used as keys)."""
    (members,) = execute_many(client, [("ZRANGE", keys.index, 0, -1)])
    if isinstance(members, BaseException):
        raise members
    return [name for name in map(as_text, members) if SERVICE_PATTERN.fullmatch(name)]


class Fleet(NamedTuple):
    """One read of the fleet: every indexed service's report, worst first, or why not.

    ``store_problem`` is None when the store answered (then an empty ``reports`` is an
    empty fleet: no service has published), else why it could not be asked.
    """

    reports: list[HeartbeatReport]
    store_problem: str | None = None

    @property
    def exit_code(self) -> int:
        """The worst report's Nagios code; 3 if the store could not be asked, 2 if empty."""
        if self.store_problem is not None:
            return 3
        return max((r.exit_code for r in self.reports), default=2)


def read_fleet(client: Any, keys: Keys, *, only: str | None = None) -> Fleet:
    """Every indexed service, worst first (or just ``only``, if the index lists it).

    ``only`` costs one ``ZSCORE`` and one script rather than reading the whole fleet.
    Never raises: a store that can't be asked is a ``Fleet`` with a ``store_problem``.
    """
    try:
        if only is None:
            services = fleet_services(client, keys)
        else:
            (score,) = execute_many(client, [("ZSCORE", keys.index, only)])
            if isinstance(score, BaseException):
                raise score
            services = [] if score is None else [only]
        reports = read_many(client, services, keys, lazy_notes=True) if services else []
    except Exception as exc:  # the reader reports, never raises
        return Fleet([], f"Redis could not be asked: {redact(str(exc))[:200]}")
    return Fleet(sort_worst_first(reports))


def sort_worst_first(reports: list[HeartbeatReport]) -> list[HeartbeatReport]:
    """Worst state first, then oldest first, then by name."""
    return sorted(reports, key=lambda r: (SEVERITY.index(r.state), -(r.age_s or 0), r.service))


__all__ = ["Fleet", "fleet_services", "read_fleet", "sort_worst_first"]
