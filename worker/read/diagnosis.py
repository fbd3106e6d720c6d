"""Which hop broke: beat, broker/worker, worker speed, or the store.

Given a state that is not fresh, the last payload and beat's marker (both read in the same
round trip, on the same Redis clock), name the most likely broken hop:

| diagnosis | evidence |
|---|---|
| ``store_unreachable`` | Redis could not be asked |
| ``never_seen`` | no heartbeat and no beat publish were ever recorded |
| ``beat_down`` | beat's last publish is as overdue as the heartbeat (or never recorded) |
| ``no_consumer`` | beat publishes on time but no worker runs the task (dead, stuck, or |
| | not consuming the ``heartbeat`` queue) |
| ``worker_slow`` | heartbeats wait over an interval in the queue (the worker discards them as |
| | expired), or the last one's queue lag + run time exceeded an interval |
| ``check_failed`` | the heartbeat is recent but a check said degraded or error |
"""

from __future__ import annotations

import json
from typing import Any

from worker.core.settings import DEFAULT_INTERVAL_S
from worker.core.states import Diagnosis, State, Thresholds

MAX_MARKER_BYTES = 4096
"""Readers fetch at most this much of beat's marker."""


def _json_object(raw: Any) -> dict[str, Any] | None:
    """A small JSON object read from Redis, or None when absent or unreadable."""
    if not raw or isinstance(raw, BaseException) or len(raw) >= MAX_MARKER_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def parse_marker(raw: Any) -> dict[str, Any] | None:
    """Beat's marker as a dict, or None when absent or unreadable (never raises)."""
    data = _json_object(raw)
    if data is None:
        return None
    for name in ("published_at_ms", "next_due_ms", "seq"):
        if not _plain_int(data.get(name)):
            return None
    depth = data.get("queue_depth")
    if depth is not None and not _plain_int(depth):
        return None
    since = data.get("since_ms")
    if since is not None and not _plain_int(since):
        data.pop("since_ms")
    return data


def _plain_int(value: Any) -> bool:
    """An int JSON gave us, small enough for float arithmetic (no 10**400)."""
    return type(value) is int and 0 <= value < 2**53


def parse_discard(raw: Any) -> dict[str, Any] | None:
    """The worker's last-discard note as a dict, or None (never raises)."""
    data = _json_object(raw)
    if data is None or not _plain_int(data.get("published_at_ms")):
        return None
    lag = data.get("lag_ms")
    if not isinstance(lag, int | float) or isinstance(lag, bool) or not 0 <= lag < 2**53:
        return None
    return data


def diagnose(state: State, *, now_ms: int | None, age_s: float | None,
             payload: dict[str, Any] | None, marker: dict[str, Any] | None,
             thresholds: Thresholds | None,
             discard: dict[str, Any] | None = None) -> tuple[Diagnosis | None, str]:
    """The broken hop and a short explanation; ``(None, "")`` when fresh or undecidable."""
    if state is State.FRESH or state is State.INVALID:
        return None, ""
    if state is State.UNREACHABLE:
        return Diagnosis.STORE_UNREACHABLE, "the heartbeat store (Redis) could not be asked"
    beat_age_s = (None if marker is None or now_ms is None
                  else max(now_ms - marker["published_at_ms"], 0) / 1000)
    interval_s = _interval(payload, marker)
    thresholds = thresholds or Thresholds.for_interval(interval_s)
    late_after_s = thresholds.late_after_s
    beat_on_time = beat_age_s is not None and beat_age_s <= late_after_s
    depth = None if marker is None else marker.get("queue_depth")
    queued = _queued(depth)
    stale_after_s = thresholds.stale_after_s
    discarded_recently = (discard is not None and now_ms is not None
                          and now_ms - discard["published_at_ms"] <= stale_after_s * 1000)
    slow = (Diagnosis.WORKER_SLOW, "" if discard is None else
            f"the worker runs heartbeats {discard['lag_ms'] / 1000:.1f}s after publish and "
            "discards them as expired")
    if state is State.MISSING:
        if marker is None:
            return Diagnosis.NEVER_SEEN, "no heartbeat and no publish by beat were ever recorded"
        if beat_on_time:
            if discarded_recently:
                return slow
            return Diagnosis.NO_CONSUMER, (f"beat published {beat_age_s:.1f}s ago{queued}, "
                                   "but no heartbeat was ever written")
        return Diagnosis.BEAT_DOWN, f"beat last published {beat_age_s:.1f}s ago"
    assert payload is not None and age_s is not None  # late or stale with a readable payload
    if age_s <= late_after_s:
        return Diagnosis.CHECK_FAILED, f"a check reported {payload['status']}"
    if not beat_on_time:
        if beat_age_s is None:
            return Diagnosis.BEAT_DOWN, "beat has recorded no publish"
        return Diagnosis.BEAT_DOWN, f"beat last published {beat_age_s:.1f}s ago"
    if discarded_recently:
        return slow
    lag_ms = _number(payload.get("queue_lag_ms")) + _number(payload.get("duration_ms"))
    if lag_ms > interval_s * 1000:
        return Diagnosis.WORKER_SLOW, (f"the last heartbeat took {lag_ms / 1000:.1f}s from "
                                       f"publish to write, over the {interval_s:g}s interval")
    consumer = ("no heartbeat was written (a worker stopping, stuck or failing in the task)"
                if depth == 0 else "no worker ran it")
    return Diagnosis.NO_CONSUMER, f"beat published {beat_age_s:.1f}s ago{queued}, but {consumer}"


def _queued(depth: int | None) -> str:
    """What beat's queue depth says, as a clause.

    The depth is as beat saw it right after its last publish. Zero then means a worker took
    that message (and has not written it: stopping, stuck or crashing in the task), which
    is what to say, not "0 queued" next to "no worker ran it".
    """
    if depth is None:
        return ""
    if depth == 0:
        return ", taken from the queue at once"
    return f", {depth} heartbeat(s) queued"


def _interval(payload: dict[str, Any] | None, marker: dict[str, Any] | None) -> float:
    for source in (payload, marker):
        value = None if source is None else source.get("interval_s")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return DEFAULT_INTERVAL_S


def _number(value: Any) -> float:
    return float(value) if type(value) in (int, float) else 0.0
