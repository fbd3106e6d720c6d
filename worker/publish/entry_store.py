"""Writes of the beat entries' records: one script (``entries.lua``), one round trip each.

Beat registers the watched entries (``sync``) and records each dispatch; the worker
records each run's start and finish. Every time is stamped by the script on the Redis
clock: a worker or beat host with a wrong clock can't make a run look on time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from worker.core.names import Keys
from worker.core.redis_io import as_text, lua_script

ENTRIES_SCRIPT = lua_script(__package__, "entries.lua")
"""The Lua source of every entry write."""

RUNS_STREAM_LEN = 10_000
"""The check-in stream of one service keeps about this many entries (``MAXLEN ~``)."""

REMOVE_CHUNK = 100
"""Names marked removed by one script call."""

OUTCOMES = ("succeeded", "failed", "retrying", "revoked", "rejected")
"""How a run of an entry can end (``retrying``: it raised and will run again)."""


class EntrySpec(NamedTuple):
    """One watched entry as beat describes it at a sync."""

    name: str
    task: str
    schedule: str  #: Celery's own description, e.g. ``<crontab: 30 2 * * * (m/h/dM/MY/d)>``
    kind: str  #: interval, crontab, solar or other
    tz: str | None
    queue: str | None
    grace_s: float
    max_runtime_s: float | None
    period_s: float | None  #: the time between two due times, when it can be told
    next_due_in_ms: int  #: from now, by the schedule object itself (<= 0: due already)

    def as_json(self) -> dict[str, Any]:
        """The spec as the script reads it."""
        return self._asdict()


class EntryStore:
    """The entry writes of one service, through one redis-py client."""

    def __init__(self, client: Any, keys: Keys, service: str, *, retention_s: int) -> None:
        self._keys = [keys.entries(service), keys.entry_runs(service)]
        self._retention_ms = int(retention_s * 1000)
        self._client = client
        self._script = client.register_script(ENTRIES_SCRIPT)

    def _call(self, *args: str | int) -> int:
        return int(self._script(keys=self._keys,
                                args=[args[0], self._retention_ms, RUNS_STREAM_LEN, *args[1:]]))

    def sync(self, specs: Sequence[EntrySpec]) -> int:
        """Register or update ``specs`` (some or all of the watched entries)."""
        text = json.dumps([spec.as_json() for spec in specs], separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
        return self._call("sync", text)

    def prune(self, names: Sequence[str]) -> list[str]:
        """Mark every stored entry not in ``names`` (the whole watched set) removed; the
        names marked (or found already removed) are returned.

        The stored names are read with one ``HKEYS`` and compared here, and only those that
        left go to the script, ``REMOVE_CHUNK`` a call: no script decodes a list of every
        name, which at 1,000 entries held Redis for about 4 ms.
        """
        watched = set(names)
        stored = (as_text(raw) for raw in self._client.hkeys(self._keys[0]))
        gone = sorted(name for name in stored if name not in watched)
        for start in range(0, len(gone), REMOVE_CHUNK):
            self._call("remove", json.dumps(gone[start:start + REMOVE_CHUNK],
                                            separators=(",", ":"), ensure_ascii=False))
        return gone

    def dispatched(self, name: str, task_id: str, *, due_in_ms: int, next_due_in_ms: int,
                   beat_id: str, depth: int | None) -> int:
        """Record that beat dispatched a run of ``name`` as ``task_id``."""
        return self._call("dispatch", name, task_id, due_in_ms, next_due_in_ms, beat_id,
                          "" if depth is None else depth)

    def started(self, name: str, task_id: str, node: str) -> int:
        """Record that worker ``node`` started the run ``task_id`` of ``name``."""
        return self._call("start", name, task_id, node)

    def finished(self, name: str, task_id: str, outcome: str, *, error_type: str = "",
                 error: str = "") -> int:
        """Record how the run ``task_id`` of ``name`` ended (one of ``OUTCOMES``)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; accepted: {', '.join(OUTCOMES)}")
        return self._call("finish", name, task_id, outcome, error_type, error)
