"""Uptime, outages and silences of services, from the monitors' incident streams.

The monitors (``worker.observe``) append each state transition to the service's incident
stream with when the state began on the Redis clock, and keep a small record of the state
they recorded last and since when they watch. From those two this module rebuilds each
service's timeline and measures, over the last 24 hours, 7 days and 30 days: the share of
the watched time the service was up, the outages and the mean time to recovery.

Up means fresh or late (the states alert rules let pass: HTTP 200); down means stale,
missing or invalid (HTTP 503). One outage is one stretch of down states, however many
down states it passes through (stale, then missing, is one outage). Time before the first
monitor judged the service is not counted: ``covered_s`` says how much of a window was
watched.

Every read is bounded, whatever was written to the store: the newest
``MAX_INCIDENTS_READ`` entries of a stream within the longest window, each field cut to
``MAX_FIELD_CHARS``, and a silence read only when it is at most ``MAX_SILENCE_BYTES`` long.
A summary built from a cut stream says so (``truncated``): its windows then start at the
oldest entry read, so ``covered_s`` shrinks to the span read (docs/incidents.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from worker.core.names import Keys
from worker.core.redis_io import (
    as_text,
    execute_many,
    is_cluster_client,
    lua_script,
    redis_time_ms,
)
from worker.read.reader import eval_read_only
from worker.read.silence import MAX_SILENCE_BYTES, Silence, parse_silence

WINDOWS: tuple[tuple[str, int], ...] = (("24h", 86_400_000), ("7d", 604_800_000),
                                         ("30d", 2_592_000_000))
"""The uptime windows: label and length in ms."""

DOWN_STATES = frozenset({"stale", "missing", "invalid"})
"""States that count as down (an outage); fresh and late count as up."""

TIMELINE_OUTAGES = 10
"""The most recent outages a summary lists."""

SERVICES_PER_CALL = 333
"""Services per ``incidents.lua`` call: 999 keys, within the schema's thousand-key bound."""

CALLS_PER_TRIP = 64
"""Script calls sent together (each is short: ``ENTRIES_PER_CALL`` entries at most)."""

MAX_INCIDENTS_READ = 2000
"""The newest entries of one incident stream a summary reads. The monitors cap a stream at
``HEARTBEAT_INCIDENTS_LEN`` (1,000 by default) with ``MAXLEN ~``, which can leave up to a
hundred more: every entry of a stream written at the default settings is read, however much
a service flapped in 30 days; a stream written past that (by hand, or a hostile writer) is
read to here, the newest first, and the summary says ``truncated``."""

MAX_FIELD_CHARS = 300
"""The longest field a read returns (a reason, a diagnosis, a state ...): the monitors write
reasons of at most 300 characters; anything longer is cut, in the script."""

ENTRIES_PER_CALL = 128
"""The most stream entries one ``incidents.lua`` call reads: a page. Inside a script, an
entry costs Redis some 5 µs (copied to Lua and back), so a page holds Redis well under
2 ms; a long stream is read in pages, and Redis answers everyone else between them."""

INCIDENTS_SCRIPT = lua_script(__package__, "incidents.lua")


class Transition(NamedTuple):
    """One entry of an incident stream: a transition, or a diagnosis amended."""

    id: str
    from_state: str
    to_state: str
    diagnosis: str
    reason: str
    at_ms: int  #: when the new state began (Redis clock); a diagnosis: when it was known
    kind: str = "transition"  #: ``transition``, or ``diagnosis`` (same state, hop now known)


VAGUE_DIAGNOSES = frozenset({"", "beat_or_broker"})
"""Diagnoses that name no one hop: an outage's diagnosis is the last other one named in it."""


class Outage(NamedTuple):
    """One stretch of down states."""

    started_ms: int
    ended_ms: int | None  #: None while it lasts
    diagnosis: str  #: the broken hop: the last one named during it (``_amend``)
    reason: str


class IncidentSummary(NamedTuple):
    """One service's record: its uptime per window, outages, and silence."""

    service: str
    monitored: bool  #: False when no monitor has judged the service yet
    state: str | None  #: the state the monitors recorded last
    since_ms: int | None  #: when that state began
    first_ms: int | None  #: when the monitors' record of the service starts
    uptime: dict[str, float | None]  #: window -> up share of the covered time (None: none)
    covered_s: dict[str, float]  #: window -> seconds of it the monitors covered
    outages: dict[str, int]  #: window -> outages overlapping it
    mttr_s: dict[str, float | None]  #: window -> mean length of the outages that ended in it
    recent: tuple[Outage, ...]  #: the last outages, newest first
    silence: Silence | None
    #: True when the stream held more than ``MAX_INCIDENTS_READ`` entries in the longest
    #: window: the windows start at the oldest entry read (``covered_s`` says how much)
    truncated: bool = False

    def as_json(self, now_ms: int) -> dict[str, Any]:
        """The summary for JSON: windows as objects, times as ms and ages."""
        return {
            "monitored": self.monitored,
            "state": self.state,
            "since_ms": self.since_ms,
            "first_ms": self.first_ms,
            "truncated": self.truncated,
            "windows": {label: {"uptime": self.uptime[label],
                                "covered_s": self.covered_s[label],
                                "outages": self.outages[label],
                                "mttr_s": self.mttr_s[label]} for label, _ in WINDOWS},
            "outages": [{"started_ms": o.started_ms, "ended_ms": o.ended_ms,
                         "duration_s": round(((o.ended_ms or now_ms) - o.started_ms) / 1000, 3),
                         "diagnosis": o.diagnosis or None, "reason": o.reason}
                        for o in self.recent],
            "silence": None if self.silence is None else {
                "until_ms": self.silence.until_ms, "reason": self.silence.reason,
                "remaining_s": round(max(self.silence.until_ms - now_ms, 0) / 1000, 3)},
        }


def _transitions(entries: Any) -> list[Transition]:
    """The entries of an ``incidents.lua`` reply (newest first) as transitions, oldest first;
    fields cut to ``MAX_FIELD_CHARS`` (the script cuts them already; a cluster's too)."""
    out = []
    for entry_id, fields in reversed(list(entries or [])[:MAX_INCIDENTS_READ]):
        f = _record(fields)
        try:
            at_ms = int(f["at_ms"][:MAX_FIELD_CHARS])
        except (KeyError, ValueError):
            continue  # not a transition the monitors wrote
        out.append(Transition(as_text(entry_id)[:MAX_FIELD_CHARS], f.get("from", ""),
                              f.get("to", ""), f.get("diagnosis", ""), f.get("reason", ""),
                              at_ms, f.get("kind") or "transition"))
    return out


def _amend(outages: list[Outage], entries: list[Transition]) -> list[Outage]:
    """Each outage with the last hop named during it: the one it started with, unless a
    diagnosis entry or a transition between down states named another since
    (``beat_or_broker``, which names no one hop, never replaces a named one)."""
    out = []
    for outage in outages:
        amended = outage
        for entry in entries:
            inside = entry.at_ms >= outage.started_ms and (
                outage.ended_ms is None or entry.at_ms < outage.ended_ms)
            if (inside and entry.to_state in DOWN_STATES and entry.diagnosis
                    and entry.diagnosis != amended.diagnosis
                    and (entry.diagnosis not in VAGUE_DIAGNOSES
                         or amended.diagnosis in VAGUE_DIAGNOSES)):
                amended = amended._replace(diagnosis=entry.diagnosis, reason=entry.reason)
        out.append(amended)
    return out


def _record(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {as_text(k)[:MAX_FIELD_CHARS]: as_text(v)[:MAX_FIELD_CHARS]
                for k, v in raw.items()}
    items = list(raw or [])
    return {as_text(k)[:MAX_FIELD_CHARS]: as_text(v)[:MAX_FIELD_CHARS]
            for k, v in zip(items[::2], items[1::2], strict=False)}


RECORD_FIELDS = ("state", "first_ms", "at_ms", "diagnosis")
"""The fields of a service's record that its summary needs."""


def _fields(values: Any) -> dict[str, str]:
    """An ``HMGET`` of ``RECORD_FIELDS`` as a dict of the fields present."""
    return {name: as_text(value)[:MAX_FIELD_CHARS]
            for name, value in zip(RECORD_FIELDS, values or (), strict=False)
            if value is not None}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def summarize(service: str, record: dict[str, str], transitions: list[Transition],
              silence: Silence | None, now_ms: int, *,
              truncated: bool = False) -> IncidentSummary:
    """Measure one service's windows from its record and its transitions (oldest first).

    ``transitions`` needs to reach back to the longest window only: the state before the
    first of them is its ``from_state``. ``truncated``: they are the newest of more (the
    read was cut at ``MAX_INCIDENTS_READ``): what came before the oldest of them is not
    known, so the windows start there, not where the monitors' record starts.
    """
    state = record.get("state") or None
    first_ms = _int(record.get("first_ms"))
    entries = transitions
    truncated = truncated and bool(entries)
    read_from_ms = min(t.at_ms for t in entries) if truncated else None
    transitions = [t for t in entries if t.kind != "diagnosis"]
    if not transitions:
        return _steady(service, record, silence, now_ms, read_from_ms=read_from_ms)
    # The timeline: (start, state) segments, oldest first, the last lasting until now;
    # each with the transition that began it (None: the state the record started with).
    start = first_ms if first_ms is not None else transitions[0].at_ms
    if read_from_ms is not None:
        start = read_from_ms
    segments = [(min(start, transitions[0].at_ms), transitions[0].from_state)]
    segments += [(t.at_ms, t.to_state) for t in transitions]
    causes: list[Transition | None] = [None, *transitions]
    if read_from_ms is not None and segments[0][0] == segments[1][0]:
        # A cut read that starts with a transition: the state before it lasted no time
        # that was read (and is no outage of zero length).
        segments, causes = segments[1:], causes[1:]
    outages: list[Outage] = []
    for index, (at_ms, seg_state) in enumerate(segments):
        down = seg_state in DOWN_STATES
        was_down = index > 0 and segments[index - 1][1] in DOWN_STATES
        if down and not was_down:
            cause = causes[index]
            outages.append(Outage(at_ms, None, cause.diagnosis if cause else
                                  record.get("diagnosis", ""), cause.reason if cause else ""))
        elif was_down and not down and outages:
            outages[-1] = outages[-1]._replace(ended_ms=at_ms)
    outages = _amend(outages, [t for t in entries if t.kind == "diagnosis"
                               or (t.from_state in DOWN_STATES and t.to_state in DOWN_STATES)])
    uptime: dict[str, float | None] = {}
    covered: dict[str, float] = {}
    counts: dict[str, int] = {}
    mttr: dict[str, float | None] = {}
    for label, length_ms in WINDOWS:
        window_start = now_ms - length_ms
        up_ms = total_ms = 0
        for index, (at_ms, seg_state) in enumerate(segments):
            end = segments[index + 1][0] if index + 1 < len(segments) else now_ms
            overlap = min(end, now_ms) - max(at_ms, window_start)
            if overlap > 0:
                total_ms += overlap
                if seg_state not in DOWN_STATES:
                    up_ms += overlap
        uptime[label] = round(up_ms / total_ms, 6) if total_ms else None
        covered[label] = round(total_ms / 1000, 3)
        inside = [o for o in outages if (o.ended_ms or now_ms) > window_start]
        counts[label] = len(inside)
        ended = [o.ended_ms - o.started_ms for o in inside if o.ended_ms is not None]
        mttr[label] = round(sum(ended) / len(ended) / 1000, 3) if ended else None
    return IncidentSummary(
        service=service, monitored=state is not None, state=state,
        since_ms=_int(record.get("at_ms")), first_ms=first_ms, uptime=uptime,
        covered_s=covered, outages=counts, mttr_s=mttr,
        recent=tuple(reversed(outages[-TIMELINE_OUTAGES:])),
        silence=silence if silence is not None and silence.until_ms > now_ms else None,
        truncated=truncated)


def _steady(service: str, record: dict[str, str], silence: Silence | None,
            now_ms: int, *, read_from_ms: int | None = None) -> IncidentSummary:
    """``summarize`` of a service with no transition in 30 days (most of a fleet): one state
    since the record started, or no record at all. ``read_from_ms``: a cut read of only
    diagnosis entries, which starts there: the windows start there too."""
    state = record.get("state") or None
    first_ms = _int(record.get("first_ms"))
    start_ms = first_ms if read_from_ms is None or first_ms is None else max(first_ms,
                                                                              read_from_ms)
    down = state in DOWN_STATES
    since_ms = _int(record.get("at_ms"))
    uptime: dict[str, float | None] = {}
    covered: dict[str, float] = {}
    outages: dict[str, int] = {}
    for label, length_ms in WINDOWS:
        watched_ms = 0 if start_ms is None else max(min(now_ms - start_ms, length_ms), 0)
        uptime[label] = None if not watched_ms else (0.0 if down else 1.0)
        covered[label] = round(watched_ms / 1000, 3)
        outages[label] = 1 if down and watched_ms else 0
    recent = (Outage(start_ms, None, record.get("diagnosis", ""), ""),) if (
        down and start_ms is not None) else ()
    return IncidentSummary(
        service=service, monitored=state is not None, state=state, since_ms=since_ms,
        first_ms=first_ms, uptime=uptime, covered_s=covered, outages=outages,
        mttr_s=dict.fromkeys(covered), recent=recent,
        silence=silence if silence is not None and silence.until_ms > now_ms else None,
        truncated=read_from_ms is not None)


def _before(entry_id: str) -> str | None:
    """The greatest stream id below ``entry_id`` (where the next page starts), or None."""
    ms_text, _, seq_text = entry_id.partition("-")
    try:
        ms, seq = int(ms_text), int(seq_text or 0)
    except ValueError:
        return None
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{2 ** 64 - 1}" if ms > 0 else None


class _Read:
    """What has been read of one service so far: its record, silence and entries."""

    def __init__(self) -> None:
        self.record: Any = None
        self.silence: Any = None
        self.entries: list[Any] = []  #: newest first
        self.start = "+"  #: where the next page starts
        self.done = False


def read_incidents(client: Any, keys: Keys,
                   services: list[str]) -> tuple[int, dict[str, IncidentSummary]]:
    """The Redis clock and each service's summary. Raises on a store error.

    ``incidents.lua`` over ``SERVICES_PER_CALL`` services a call (three keys each), a few
    calls a round trip; one call reads at most ``ENTRIES_PER_CALL`` stream entries. A
    service with more in its stream is read on, a page a round (``ENTRIES_PER_CALL``, a call
    of its own, every such service's in the same round trip), to ``MAX_INCIDENTS_READ``. On
    a Redis Cluster one call a service (a service's keys share a slot).
    """
    ((now_reply,),) = (execute_many(client, [("TIME",)]),)
    now_ms = redis_time_ms(now_reply)
    oldest_id = f"{max(now_ms - WINDOWS[-1][1], 0)}-0"
    cluster = is_cluster_client(client)
    per_call = 1 if cluster else SERVICES_PER_CALL
    reads = {service: _Read() for service in services}
    pending = list(reads)
    while pending:
        parts = [pending[i:i + per_call] for i in range(0, len(pending), per_call)]
        for start in range(0, len(parts), CALLS_PER_TRIP):
            trip = parts[start:start + CALLS_PER_TRIP]
            calls: list[tuple[str | int, ...]] = []
            for part in trip:
                pages: list[str | int] = []
                for service in part:
                    read = reads[service]
                    pages += [read.start, min(ENTRIES_PER_CALL,
                                              MAX_INCIDENTS_READ - len(read.entries))]
                calls.append((INCIDENTS_SCRIPT, 3 * len(part), *keys.monitor_keys(part),
                              oldest_id, MAX_FIELD_CHARS, MAX_SILENCE_BYTES,
                              ENTRIES_PER_CALL, *pages))
            if cluster:
                # EVAL, not EVAL_RO: redis-py's cluster client routes EVAL by its keys.
                replies = execute_many(client, [("EVAL", *call) for call in calls])
                for reply in replies:
                    if isinstance(reply, BaseException):
                        raise reply
            else:
                replies = eval_read_only(client, calls)
            for part, reply in zip(trip, replies, strict=True):
                for index, service in enumerate(part):
                    _page(reads[service], *reply[3 * index:3 * index + 3])
        pending, per_call = [s for s, r in reads.items() if not r.done], 1
    out: dict[str, IncidentSummary] = {}
    for service, read in reads.items():
        out[service] = summarize(service, _fields(read.record), _transitions(read.entries),
                                 parse_silence(read.silence or None), now_ms,
                                 truncated=len(read.entries) >= MAX_INCIDENTS_READ)
    return now_ms, out


def _page(read: _Read, record: Any, entries: Any, silence: Any) -> None:
    """Add one page of a service's read; ``entries`` None: not read (asked again)."""
    if entries is None:
        return
    if read.start == "+":
        read.record, read.silence = record, silence
    asked = min(ENTRIES_PER_CALL, MAX_INCIDENTS_READ - len(read.entries))
    read.entries += list(entries)[:asked]
    start = _before(as_text(read.entries[-1][0])) if read.entries else None
    read.done = (len(entries) < asked or len(read.entries) >= MAX_INCIDENTS_READ
                 or start is None)
    read.start = start or read.start
