"""Read every service of the fleet in bounded chunks that never stall Redis.

A whole fleet is read in two passes: the compact summaries first (``worker.read.summary``:
every fresh service is judged there; one ``HGET`` a service in a fleet smaller than the
2,048 shards, else every shard), then, for the services a summary does not show fresh,
the full read below. The index is read too only when its size and the summaries'
count differ (a summary missing: a service that published through an older version, or
removed from the index by hand), and then it decides which services are in the fleet.
The full read:

A fleet read touches tens of thousands of keys; one script over all of them would block
Redis (the broker too, often) for its whole run: 25 ms at 10,000 services, 400 ms at
100,000. So every command here touches at most ``FLEET_CHUNK_KEYS`` keys or index members,
and the chunks go pipelined, a few round trips in all:

1. ``ZCARD`` the index, then ``ZRANGE`` it by rank in chunks. Publishing only moves a
   service to the end (its score is its last ``ts_ms``), so a service that publishes
   between two chunks is read twice (and kept once), never missed.
2. the read script (``read.lua``, two keys a service) over ``FLEET_CHUNK_SERVICES``
   services per call: each service's value (at most 16 KiB of it) and its nodes; twenty
   calls per round trip, so the client holds the raw values of 5,000 services at most.
   The ``TIME`` of the first call is the one clock reading every age of this read is
   measured on.
3. For the services not fresh only: beat's markers and the discard notes (``notes.lua``,
   chunked the same way, fetched while the next batch is judged), for their diagnosis;
   and, if the keys say beat or the worker while the store may be refusing writes, one
   ``INFO``.

On a Redis Cluster: one script per service, pipelined, so one round trip per node, each
on the clock of the node that holds that service's keys.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from operator import attrgetter
from typing import Any, NamedTuple

from worker.core.gc_pause import paused_gc
from worker.core.names import SERVICE_PATTERN, SUMMARY_SHARDS, Keys
from worker.core.payload import MAX_PAYLOAD_BYTES
from worker.core.redis_io import (
    as_text,
    execute_many,
    is_cluster_client,
    lua_script,
    redis_time_ms,
)
from worker.core.states import SEVERITY, State
from worker.core.urls import redact
from worker.read.diagnosis import (
    MAX_MARKER_BYTES,
    WRITE_SUSPECTS,
    parse_discard,
    parse_marker,
    slim_marker,
)
from worker.read.nodes import FLEET_NODES_LIMIT
from worker.read.reader import (
    READ_SCRIPT,
    HeartbeatReport,
    Overrides,
    add_diagnosis,
    eval_read_only,
    judge_values,
    read_cluster,
    read_many,
)
from worker.read.store_writes import ask_refusal
from worker.read.summary import first_pass, listed_pass

FLEET_CHUNK_KEYS = 1000
"""No command of a fleet read touches more keys (or index members) than this."""

FLEET_CHUNK_SERVICES = FLEET_CHUNK_KEYS // 4
"""Services per first-pass call of the read script (two keys of each): half the bound, so
one call stays near a millisecond of Redis time."""

CHUNKS_PER_ROUND_TRIP = 20
"""Chunks pipelined per round trip: 5,000 services, so a client holds only that many raw
values at a time, whatever the fleet's size."""

NOTES_SCRIPT = lua_script(__package__, "notes.lua")
"""Beat's markers and the discard notes, capped, of the services a read found not fresh."""


def fleet_services(client: Any, keys: Keys) -> list[str]:
    """Every valid service name in the index (invalid members are ignored, never used as keys)."""
    (count,) = execute_many(client, [("ZCARD", keys.index)])
    if isinstance(count, BaseException):
        raise count
    chunks = execute_many(client, [("ZRANGE", keys.index, start, start + FLEET_CHUNK_KEYS - 1)
                                   for start in range(0, int(count), FLEET_CHUNK_KEYS)])
    seen: set[str] = set()
    services = []
    for members in chunks:
        if isinstance(members, BaseException):
            raise members
        for name in map(as_text, members):
            if name not in seen and SERVICE_PATTERN.fullmatch(name):
                seen.add(name)
                services.append(name)
    return services


def read_services(client: Any, services: list[str], keys: Keys,
                  overrides: Overrides = (None, None)) -> list[HeartbeatReport]:
    """Judge ``services`` in bounded chunks, markers only for those not fresh."""
    if not services:
        return []
    if is_cluster_client(client):
        return read_cluster(client, services, keys, overrides)
    if len(services) == 1:
        return read_many(client, services, keys, late_after_s=overrides[0],
                         stale_after_s=overrides[1])
    step = FLEET_CHUNK_SERVICES * CHUNKS_PER_ROUND_TRIP
    batches = [services[start:start + step] for start in range(0, len(services), step)]

    def fetch(batch: list[str]) -> tuple[list[list[str]], list[Any]]:
        chunks = [batch[i:i + FLEET_CHUNK_SERVICES]
                  for i in range(0, len(batch), FLEET_CHUNK_SERVICES)]
        return chunks, eval_read_only(client, [_first_pass_args(c, keys) for c in chunks])

    reports: list[HeartbeatReport] = []
    raw_nodes: list[Any] = []
    now_ms: int | None = None
    notes: list[tuple[list[int], Future[list[Any]]]] = []
    # The next batch travels (and Redis runs it) while this one is judged, and so do the
    # notes of this batch's services that are not fresh: the socket waits release the GIL,
    # so the wire and Redis cost next to nothing on top of the judging.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-read") as pool:
        pending = pool.submit(fetch, batches[0])
        for n in range(len(batches)):
            chunks, replies = pending.result()
            if n + 1 < len(batches):
                pending = pool.submit(fetch, batches[n + 1])
            if now_ms is None:
                now_ms = redis_time_ms(replies[0][0])  # one clock reading for the read
            first = len(reports)
            for chunk, reply in zip(chunks, replies, strict=True):
                values, nodes = reply[1::2], reply[2::2]
                reports += judge_values(chunk, now_ms, values, nodes, overrides)
                raw_nodes += [listed or None for listed in nodes]  # no 100,000 empty lists
            del replies  # a batch's raw values go before the next is judged
            unhealthy = [i for i in range(first, len(reports))
                         if reports[i].state is not State.FRESH
                         and reports[i].state is not State.INVALID]
            if unhealthy:
                names = [reports[i].service for i in unhealthy]
                notes.append((unhealthy, pool.submit(_fetch_notes, client, keys, names)))
        found = [(unhealthy, future.result()) for unhealthy, future in notes]
    _diagnose(client, reports, raw_nodes, found)
    return reports


def _first_pass_args(services: list[str], keys: Keys) -> tuple[str | int, ...]:
    names: list[str] = []
    prefix = keys.prefix
    for service in services:  # names from the index, checked by fleet_services
        names += (f"{prefix}:{{{service}}}", f"{prefix}:{{{service}}}:nodes")
    # The read script with two keys a service: value and nodes, no notes.
    return (READ_SCRIPT, len(names), *names, MAX_PAYLOAD_BYTES, MAX_MARKER_BYTES, 0,
            FLEET_NODES_LIMIT, 2)


def _fetch_notes(client: Any, keys: Keys, services: list[str]) -> list[Any]:
    """Beat's marker and the discard note of each of ``services``, two entries each."""
    prefix = keys.prefix
    note_keys: list[str] = []
    for service in services:  # names from the index, checked by fleet_services
        note_keys += (f"{prefix}:{{{service}}}:beat", f"{prefix}:{{{service}}}:discarded")
    per_call = FLEET_CHUNK_KEYS // 2
    replies = eval_read_only(client, [
        (NOTES_SCRIPT, len(part), *part, MAX_MARKER_BYTES)
        for part in (note_keys[j:j + per_call] for j in range(0, len(note_keys), per_call))])
    return [note for reply in replies for note in reply]


def _diagnose(client: Any, reports: list[HeartbeatReport], raw_nodes: list[Any],
              found: list[tuple[list[int], list[Any]]]) -> None:
    """Name the broken hop of the services not fresh from their notes, in place."""
    base: dict[int, tuple[HeartbeatReport, Any, Any]] = {}
    for unhealthy, notes in found:
        for n, i in enumerate(unhealthy):
            base[i] = (reports[i], slim_marker(parse_marker(notes[2 * n])),
                       parse_discard(notes[2 * n + 1]))
    if not base:
        return

    def judge(refusal: str | None) -> None:
        for i, (report, marker, discard) in base.items():
            reports[i] = add_diagnosis(report, marker, discard, refusal,
                                       raw_nodes=raw_nodes[i])

    judge(None)
    if any(reports[i].diagnosis in WRITE_SUSPECTS for i in base):
        # Beat and the workers may be fine and the store refusing their writes: ask it.
        why = ask_refusal(client)
        if why is not None:
            judge(why)


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


def read_all(client: Any, keys: Keys, overrides: Overrides = (None, None)
             ) -> list[HeartbeatReport]:
    """Every indexed service: the summaries first, then in full those not shown fresh.

    The index decides who is in the fleet: a summary of a service no longer indexed is
    dropped, and an indexed service without a summary (written by an older version) is
    read in full.
    """
    indexed = fleet_services(client, keys)
    cluster = is_cluster_client(client)
    if len(indexed) < SUMMARY_SHARDS:
        # Fewer services than shards: one HGET each costs less than every shard (an
        # embedded server, a small fleet).
        first = listed_pass(client, keys, indexed, overrides, cluster=cluster)
        return first.fresh + read_services(client, first.unsure, keys, overrides)
    first = first_pass(client, keys, overrides, cluster=cluster, services_hint=len(indexed))
    known = set(indexed)
    fresh = [r for r in first.fresh if r.service in known]
    summarised = {r.service for r in first.fresh}.union(first.unsure)
    unsure = [s for s in first.unsure if s in known]
    unsure += (s for s in indexed if s not in summarised)
    return fresh + read_services(client, unsure, keys, overrides)


def read_listed(client: Any, services: list[str], keys: Keys,
                overrides: Overrides = (None, None)) -> list[HeartbeatReport]:
    """``services`` (indexed, valid names): their summaries first, then in full those not
    shown fresh, as ``read_all`` does for the whole fleet."""
    first = listed_pass(client, keys, services, overrides, cluster=is_cluster_client(client))
    return first.fresh + read_services(client, first.unsure, keys, overrides)


def read_fleet(client: Any, keys: Keys, *, only: str | None = None) -> Fleet:
    """Every indexed service, worst first (or just ``only``, if the index lists it).

    ``only`` costs one ``ZSCORE`` and one script rather than reading the whole fleet.
    Never raises: a store that can't be asked is a ``Fleet`` with a ``store_problem``.
    """
    try:
        if only is None:
            with paused_gc():
                return Fleet(sort_worst_first(read_all(client, keys)))
        else:
            (score,) = execute_many(client, [("ZSCORE", keys.index, only)])
            if isinstance(score, BaseException):
                raise score
            reports = read_services(client, [] if score is None else [only], keys)
    except Exception as exc:  # the reader reports, never raises
        return Fleet([], f"Redis could not be asked: {redact(str(exc))[:200]}")
    return Fleet(sort_worst_first(reports))


_RANK = {state: rank for rank, state in enumerate(SEVERITY)}


def sort_worst_first(reports: list[HeartbeatReport]) -> list[HeartbeatReport]:
    """Worst state first, then oldest first, then by name.

    Fresh services (most of a fleet, and the best state) are sorted apart, by two stable
    sorts on C-level keys: a third faster at 100,000 than one key function for all.
    """
    fresh = [r for r in reports if r.state is State.FRESH and r.age_s is not None]
    rest = ([r for r in reports if r.state is not State.FRESH or r.age_s is None]
            if len(fresh) < len(reports) else [])
    fresh.sort(key=_NAME)
    fresh.sort(key=_AGE, reverse=True)  # stable: equal ages stay in name order
    rest.sort(key=lambda r: (_RANK[r.state], -(r.age_s or 0), r.service))
    return rest + fresh


_NAME = attrgetter("service")
_AGE = attrgetter("age_s")


__all__ = ["Fleet", "fleet_services", "read_all", "read_fleet", "read_listed",
           "read_services", "sort_worst_first"]
