"""The beat entries of every service in one scrape: bounded, a few round trips, never raises.

``/metrics`` and the dashboard judge the entries of every indexed service. One
``read_entries`` a service would be one round trip each; here:

1. ``HLEN`` of every service's entries hash, ``ENTRY_COUNT_CHUNK`` to a round trip: only
   the services that have entries are read, and the bound is planned before any record
   is fetched.
2. Services in name order until ``limit`` entries in all: their records, beat's marker,
   the nodes and the entries' silences (``entries_commands``), ``ENTRY_READ_CHUNK``
   services to a round trip, so a client holds at most that many services' records at a
   time. The entries of the
   services past the bound are counted in ``omitted``, never read.

On a Redis Cluster each service is read on its own (its keys share one hash slot).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from worker.core.names import Keys
from worker.core.redis_io import execute_many, is_cluster_client
from worker.core.urls import redact
from worker.read.entries import (
    ENTRIES_COMMANDS,
    EntriesReport,
    entries_commands,
    entries_from_replies,
    read_entries,
)

MAX_FLEET_ENTRIES = 5000
"""At most this many entries are read in one scrape (five apps at the 1,000 beat watches)."""

ENTRY_COUNT_CHUNK = 1000
"""``HLEN`` commands per round trip of the first pass."""

ENTRY_READ_CHUNK = 20
"""Services whose records one round trip of the second pass fetches (20,000 entries at
most, a few MiB)."""


class EntriesFleet(NamedTuple):
    """The entries of the services read, and what was not."""

    reports: list[EntriesReport]  #: services that have entries, in name order
    omitted: int  #: entries of services left out by the bound
    problem: str | None  #: why some could not be read (a report's ``error``, or the store's)


def read_fleet_entries(client: Any, services: list[str], keys: Keys | None = None, *,
                       limit: int = MAX_FLEET_ENTRIES) -> EntriesFleet:
    """The entries of ``services`` (those that have any), at most ``limit`` in all."""
    keys = keys or Keys()
    ordered = sorted(set(services))
    try:
        counts: list[int] = []
        for start in range(0, len(ordered), ENTRY_COUNT_CHUNK):
            chunk = ordered[start:start + ENTRY_COUNT_CHUNK]
            replies = execute_many(client, [("HLEN", keys.entries(s)) for s in chunk])
            # A wrong type at the key counts as one entry: read, its error is reported.
            counts += [1 if isinstance(reply, BaseException) else int(reply or 0)
                       for reply in replies]
        chosen: list[str] = []
        total = omitted = 0
        for service, count in zip(ordered, counts, strict=True):
            if count <= 0:
                continue
            if total + count > limit:
                omitted += count
                continue
            total += count
            chosen.append(service)
        reports: list[EntriesReport] = []
        if is_cluster_client(client):
            reports = [read_entries(client, s, keys=keys) for s in chosen]
        else:
            for start in range(0, len(chosen), ENTRY_READ_CHUNK):
                chunk = chosen[start:start + ENTRY_READ_CHUNK]
                commands = [c for s in chunk for c in entries_commands(s, keys)]
                replies = execute_many(client, commands)
                n = ENTRIES_COMMANDS
                reports += [entries_from_replies(s, replies[n * i:n * i + n])
                            for i, s in enumerate(chunk)]
    except Exception as exc:  # the reader reports, never raises
        return EntriesFleet([], 0, f"Redis could not be asked: {redact(str(exc))[:200]}")
    failed = next((f"{r.service}: {r.error}" for r in reports if r.error is not None), None)
    return EntriesFleet([r for r in reports if r.error is None], omitted, failed)


def _ms(value: Any) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else value


def last_run_ms(record: dict[str, Any], field: str) -> float | None:
    """The last run's ``duration_ms`` or ``queue_wait_ms``: of the last dispatched run once
    it has one (whatever its outcome), else of the last successful run (``last_...``)."""
    run = record.get("run")
    own = _ms(run.get(field)) if isinstance(run, dict) else None
    return own if own is not None else _ms(record.get(f"last_{field}"))
