"""Turn one judgement of the fleet into recorded transitions, once across all monitors.

Every monitor sends every service's judged state to ``record.lua`` each interval (250
services a call, twenty calls a round trip); the script compares it with the state the
monitors recorded last and, in the same atomic step, appends a transition to the service's
incident stream and a notification to the outbox. A second monitor that judged the same
change finds it recorded: nothing is written twice, and nothing depends on a monitor's
memory, so a restarted monitor neither repeats nor loses a transition.

When a state began is taken from the heartbeat where the state is a matter of age (fresh
since the heartbeat landed, late since it became 1.5 intervals old, stale since 3), so
the record does not depend on when a monitor happened to look; otherwise it is the Redis
clock of the judgement.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from worker.core.names import Keys
from worker.core.redis_io import Command, as_text, execute_many, is_cluster_client, lua_script
from worker.core.settings import DEFAULT_INCIDENTS_LEN, Settings
from worker.core.states import State
from worker.read.reader import HeartbeatReport

RECORD_SCRIPT = lua_script(__package__, "record.lua")

CHUNK_SERVICES = 250
"""Services per script call: 750 keys, within the schema's thousand-key bound."""

CALLS_PER_ROUND_TRIP = 20
"""Script calls sent together."""

OUTBOX_LEN = 10_000
"""Notifications kept waiting for the webhooks at most (the oldest are dropped first)."""


class Recorded(NamedTuple):
    """What the monitors' record says of one service after this judgement."""

    service: str
    state: str  #: the recorded state
    incident: str  #: the id of the transition this judgement recorded, or ''
    notification: dict[str, Any] | None  #: the notification it queued, if any
    settled: bool = False  #: the state recorded is the state notified last


def began_ms(report: HeartbeatReport) -> int:
    """When ``report``'s state began on the Redis clock, as far as the heartbeat tells."""
    now_ms = report.now_ms or 0
    payload = report.payload
    thresholds = report.thresholds
    if payload is None or thresholds is None or report.age_s is None:
        return now_ms
    ts_ms = int(payload["ts_ms"])
    if report.state is State.FRESH:
        return ts_ms
    if report.state is State.LATE and report.age_s > thresholds.late_after_s:
        return ts_ms + round(thresholds.late_after_s * 1000)
    if report.state is State.STALE and report.age_s > thresholds.stale_after_s:
        return ts_ms + round(thresholds.stale_after_s * 1000)
    return ts_ms  # a degraded or error status: since that heartbeat landed


def judgement(report: HeartbeatReport) -> str:
    """The JSON argument ``record.lua`` takes for one service."""
    payload: dict[str, Any] = dict(report.payload or {})
    return json.dumps({
        "service": report.service, "to": report.state.value,
        "diagnosis": report.diagnosis or "", "reason": report.reason[:300],
        "at": began_ms(report), "seen": report.now_ms or 0,
        "age": "" if report.age_s is None else f"{report.age_s:.3f}",
        "seq": str(payload.get("seq", "")),
    })


def record(client: Any, keys: Keys, reports: list[HeartbeatReport], *, monitor_id: str,
           incidents_len: int = DEFAULT_INCIDENTS_LEN,
           ttl_ms: int = Settings().incidents_ttl_ms) -> list[Recorded]:
    """Record ``reports`` (one judgement each); return what was recorded. Raises on a
    store error: the monitor logs it and tries again at the next interval."""
    judged = [r for r in reports if r.state is not State.UNREACHABLE and r.now_ms]
    head = (str(incidents_len), str(ttl_ms), str(OUTBOX_LEN), monitor_id)
    if is_cluster_client(client):
        return _record_cluster(client, keys, judged, head)
    calls: list[Command] = []
    for start in range(0, len(judged), CHUNK_SERVICES):
        chunk = judged[start:start + CHUNK_SERVICES]
        names = [r.service for r in chunk]
        calls.append(("EVAL", RECORD_SCRIPT, 3 * len(chunk) + 1,
                      *keys.monitor_keys(names), keys.outbox, *head, "1",
                      *(judgement(r) for r in chunk)))
    out: list[Recorded] = []
    for start in range(0, len(calls), CALLS_PER_ROUND_TRIP):
        replies = execute_many(client, calls[start:start + CALLS_PER_ROUND_TRIP])
        for index, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                raise reply
            first = (start + index) * CHUNK_SERVICES
            out += _parse(judged[first:first + CHUNK_SERVICES], reply)
    return out


def _record_cluster(client: Any, keys: Keys, judged: list[HeartbeatReport],
                    head: tuple[str, ...]) -> list[Recorded]:
    """One call per service (a script can't span slots), then the outbox in its own slot.

    Not atomic with the record: a monitor that dies between the two loses that
    notification (the transition itself is recorded).
    """
    replies = execute_many(client, [
        ("EVAL", RECORD_SCRIPT, 3, *keys.monitor_keys([r.service]), *head, "0", judgement(r))
        for r in judged])
    out: list[Recorded] = []
    for report, reply in zip(judged, replies, strict=True):
        if isinstance(reply, BaseException):
            raise reply
        out += _parse([report], reply)
    notes = [("XADD", keys.outbox, "MAXLEN", "~", OUTBOX_LEN, "*", "event",
              json.dumps(r.notification)) for r in out if r.notification is not None]
    for reply in execute_many(client, notes) if notes else []:
        if isinstance(reply, BaseException):
            raise reply
    return out


def _parse(reports: list[HeartbeatReport], reply: list[Any]) -> list[Recorded]:
    out = []
    for report, (state, incident, note, settled) in zip(reports, reply, strict=True):
        text = as_text(note)
        out.append(Recorded(report.service, as_text(state), as_text(incident),
                            json.loads(text) if text else None, int(settled) == 1))
    return out
