"""Read the beat entries of one service: one round trip, judged on the Redis clock.

``TIME``, the entries' records, beat's marker, the worker nodes and the entries' silences
come back together, so
every entry is judged against the same clock reading and the same evidence: when beat is
down, every entry that is due says ``missed`` with ``beat_down``, one cause for all.
Like the heartbeat's reader it never raises for bad data or a dead connection.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from worker.core.entries import ENTRY_SEVERITY, EntryState, entry_name_problem
from worker.core.names import Keys
from worker.core.redis_io import as_text, execute_many, redis_time_ms
from worker.read.diagnosis import MAX_MARKER_BYTES, parse_marker, publish_failure
from worker.read.entry_judge import Evidence, judge
from worker.read.entry_silence import entry_silences_command, silences_from_reply
from worker.read.silence import Silence

MAX_RECORD_BYTES = 16 * 1024
"""An entry record over this size is not ours: reported invalid, never decoded."""

MAX_ENTRIES_READ = 2000
"""At most this many entries of one service are read (beat watches at most 1,000)."""

NODE_STALE_FACTOR = 3.0
"""A worker node whose node heartbeat is this many heartbeat intervals old is taken for dead."""


class EntryReport(NamedTuple):
    """One beat entry as a reader sees it."""

    name: str
    state: EntryState
    diagnosis: str | None
    reason: str
    record: dict[str, Any]  #: the stored record (schedule, next due, last run ...)
    #: the operator's silence of the entry (``silence SERVICE --entry NAME``) while it
    #: lasts on the Redis clock: said beside the state, which it never changes
    silence: Silence | None = None

    def as_json(self) -> dict[str, Any]:
        """The report as ``--json``, ``/api/entries`` and the monitor give it."""
        rec = self.record
        run = rec.get("run") if isinstance(rec.get("run"), dict) else {}
        return {
            "name": self.name, "state": self.state.value, "diagnosis": self.diagnosis,
            "reason": self.reason, "task": rec.get("task"), "schedule": rec.get("schedule"),
            "kind": rec.get("kind"), "tz": rec.get("tz"), "queue": rec.get("queue"),
            "grace_s": rec.get("grace_s"), "max_runtime_s": rec.get("max_runtime_s"),
            "next_due_ms": rec.get("next_due_ms"), "last_success_ms": rec.get("last_success_ms"),
            "last_duration_ms": rec.get("last_duration_ms"),
            "last_queue_wait_ms": rec.get("last_queue_wait_ms"),
            "removed_ms": rec.get("removed_ms"), "counts": rec.get("counts") or {},
            "run": run,
        }


class EntriesReport(NamedTuple):
    """Every entry of one service, worst first, or why they could not be read."""

    service: str
    now_ms: int | None
    entries: tuple[EntryReport, ...]
    error: str | None  #: the store could not be asked (then ``entries`` is empty)


def _pairs(raw: Any) -> list[tuple[Any, Any]]:
    """An ``HGETALL`` reply as pairs, whether the client made it a dict or a flat list."""
    if isinstance(raw, dict):
        return list(raw.items())
    if isinstance(raw, list):
        return list(zip(raw[0::2], raw[1::2], strict=False))
    return []


def _record(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, bytes | str) or len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def evidence(now_ms: int, marker_raw: Any, nodes_raw: Any, interval_s: float | None) -> Evidence:
    """The hops' evidence from beat's marker and the nodes' sorted set."""
    marker = parse_marker(marker_raw)
    failure = publish_failure(marker)
    beat_interval = marker.get("interval_s") if marker else None
    interval = beat_interval if type(beat_interval) in (int, float) else interval_s
    nodes: dict[str, int] = {}
    for member, score in _pairs(nodes_raw):
        try:
            nodes[as_text(member)[:255]] = int(float(as_text(score)))
        except ValueError:
            continue
    return Evidence(
        now_ms=now_ms,
        beat_published_ms=None if marker is None else marker.get("published_at_ms"),
        beat_interval_s=None if interval is None else float(interval),
        publish_failed_ms=None if failure is None else failure[0],
        publish_error=None if failure is None else failure[1],
        nodes=nodes,
        node_stale_after_ms=round(NODE_STALE_FACTOR * (interval or 10.0) * 1000))


def read_entries(client: Any, service: str, *, keys: Keys | None = None,
                 names: set[str] | None = None) -> EntriesReport:
    """Every beat entry of ``service`` (or those in ``names``), judged; never raises."""
    try:
        replies = execute_many(client, entries_commands(service, keys or Keys()))
    except Exception as exc:  # unreachable, refused
        return EntriesReport(service, None, (), f"{type(exc).__name__}: {exc}"[:200])
    return entries_from_replies(service, replies, names=names)


def _flat(raw: Any) -> list[Any]:
    """A ``WITHSCORES`` reply as a flat list (redis-py may give pairs)."""
    if isinstance(raw, list) and raw and isinstance(raw[0], tuple | list):
        return [x for pair in raw for x in pair]
    return raw if isinstance(raw, list) else []


def entries_commands(service: str, keys: Keys) -> list[tuple[Any, ...]]:
    """The commands ``read_entries`` sends for ``service``, for a caller that pipelines
    many services in one round trip (``entries_from_replies`` judges their replies)."""
    return [
        ("TIME",),
        ("HGETALL", keys.entries(service)),
        ("GETRANGE", keys.beat(service), 0, MAX_MARKER_BYTES - 1),
        ("ZREVRANGE", keys.nodes(service), 0, 999, "WITHSCORES"),
        entry_silences_command(keys, service),  # bounded (``entry_silences.lua``)
    ]


ENTRIES_COMMANDS = 5
"""How many commands ``entries_commands`` gives for one service."""


def entries_from_replies(service: str, replies: list[Any], *,
                         names: set[str] | None = None) -> EntriesReport:
    """The report of ``service`` (or its entries in ``names``) from the replies to
    ``entries_commands``; never raises. ``read_entries`` is this after one round trip."""
    try:
        time_reply, raw_entries, marker_raw, nodes_raw, silences_raw = replies
        for reply in (time_reply, raw_entries):
            if isinstance(reply, BaseException):
                raise reply
        now_ms = redis_time_ms(time_reply)
    except Exception as exc:  # a wrong type at the key, a missing reply
        return EntriesReport(service, None, (), f"{type(exc).__name__}: {exc}"[:200])
    ev = evidence(now_ms, None if isinstance(marker_raw, BaseException) else marker_raw,
                  [] if isinstance(nodes_raw, BaseException) else _flat(nodes_raw), None)
    # A silence is extra: one that can't be read (a wrong type at the key) is none.
    silences = ({} if isinstance(silences_raw, BaseException)
                else silences_from_reply(silences_raw, now_ms))
    reports = []
    for raw_name, raw_value in _pairs(raw_entries)[:MAX_ENTRIES_READ]:
        name = as_text(raw_name)
        if entry_name_problem(name) is not None or (names is not None and name not in names):
            continue
        record = _record(raw_value)
        if record is None:
            reports.append(EntryReport(name, EntryState.FAILED, "invalid",
                                       "the stored record is unreadable", {},
                                       silences.get(name)))
            continue
        judged = judge(record, ev)
        reports.append(EntryReport(name, judged.state, judged.diagnosis, judged.reason, record,
                                   silences.get(name)))
    rank = {state: i for i, state in enumerate(ENTRY_SEVERITY)}
    reports.sort(key=lambda r: (rank[r.state], r.name))
    return EntriesReport(service, now_ms, tuple(reports), None)
