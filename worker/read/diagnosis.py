"""Which hop broke: beat, broker/worker, worker speed, or the store.

Given a state that is not fresh, the last payload and beat's marker (both read in the same
round trip, on the same Redis clock), name the most likely broken hop:

| diagnosis | evidence |
|---|---|
| ``store_unreachable`` | Redis could not be asked |
| ``store_refuses_writes`` | Redis answers but refuses writes (at its memory limit with |
| | ``noeviction``, or a read-only replica): asked by the reader, see ``store_writes`` |
| ``broker_down`` | beat is alive but the broker refused its last publish (beat's marker |
| | notes the failure within the stale threshold) |
| ``never_seen`` | no heartbeat and no beat publish were ever recorded |
| ``beat_or_broker`` | beat's last publish is late, but overdue by less than a refused publish |
| | takes to be noted (``REFUSAL_NOTE_S``): beat stopped, or the broker refuses it |
| ``beat_down`` | beat's last publish is overdue by more than that, with no refusal noted |
| | since (or never recorded) |
| ``no_consumer`` | beat publishes on time but no worker runs the task (dead, stuck, or |
| | not consuming the ``heartbeat`` queue) |
| ``worker_slow`` | heartbeats wait over an interval in the queue (the worker discards them as |
| | expired), or the last one's queue lag + run time exceeded an interval |
| ``check_failed`` | the heartbeat is recent but a check said degraded or error |
"""

from __future__ import annotations

from typing import Any

from worker.core.json_loads import loads
from worker.core.settings import DEFAULT_INTERVAL_S
from worker.core.states import Diagnosis, State, Thresholds

MAX_MARKER_BYTES = 4096
"""Readers fetch at most this much of beat's marker."""

REFUSAL_NOTE_S = 2.0
"""How long after beat's publish was due a publish the broker refuses is noted in the marker.

A refused publish blocks beat for the broker client's retries before beat can note it:
Celery's default ``task_publish_retry_policy`` (3 retries, 0 s, 0.2 s and 0.4 s apart) is
0.6 s against a broker that refuses connections, and each tick publishes two heartbeat
entries (the service's and the node broadcast), so the service's note lands about 1.2 s
after it was due (measured: 1.2 s at a 0.5 s interval). 2 s leaves room for a loaded host.
Until then an overdue beat is ``beat_or_broker``; a note within it says ``broker_down``,
none says ``beat_down``. A broker that drops packets instead makes each connect attempt wait
``broker_connection_timeout`` (4 s): then the note comes later than this, and beat reads as
``beat_down`` until it lands."""


def _json_object(raw: Any) -> dict[str, Any] | None:
    """A small JSON object read from Redis, or None when absent or unreadable."""
    if not raw or isinstance(raw, BaseException) or len(raw) >= MAX_MARKER_BYTES:
        return None
    try:
        data = loads(raw)
    except (TypeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def parse_marker(raw: Any) -> dict[str, Any] | None:
    """Beat's marker as a dict, or None when absent or unreadable (never raises).

    A beat that has never published but had a publish refused writes a marker of the
    failure alone: its ``published_at_ms`` is None.
    """
    data = _json_object(raw)
    if data is None:
        return None
    failed = data.get("publish_failed_at_ms")
    if failed is not None and not (_plain_int(failed)
                                   and isinstance(data.get("publish_error"), str)):
        data.pop("publish_failed_at_ms")
        failed = None
    if data.get("published_at_ms") is None and failed is not None:
        return data  # failures only, no publish yet
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


MARKER_FIELDS = ("published_at_ms", "next_due_ms", "seq", "queue_depth", "since_ms", "beat_id",
                 "other_beat", "interval_s", "stale_after_s", "queue", "publish_failed_at_ms",
                 "publish_error")
"""The marker fields a fleet read keeps: what diagnosis, liveness and summaries use."""


def slim_marker(marker: dict[str, Any] | None) -> dict[str, Any] | None:
    """``marker`` without the fields no reader uses (beat's host, pid and version)."""
    if marker is None:
        return None
    return {name: marker[name] for name in MARKER_FIELDS if name in marker}


def publish_failure(marker: dict[str, Any] | None) -> tuple[int, str] | None:
    """When and why the broker refused beat's last publish; None if the last one went out."""
    if marker is None or marker.get("publish_failed_at_ms") is None:
        return None
    failed_ms: int = marker["publish_failed_at_ms"]
    published_ms = marker.get("published_at_ms")
    if published_ms is not None and published_ms > failed_ms:
        return None
    return failed_ms, str(marker.get("publish_error", ""))[:200]


def beat_seen_ms(marker: dict[str, Any] | None) -> int | None:
    """Beat's last sign of life: its last publish, or its last refused publish if later.

    A refused publish counts only when no publish came after it (``publish_failure``), so
    when there is one it is the later of the two.
    """
    if marker is None:
        return None
    failure = publish_failure(marker)
    published_ms: int | None = marker.get("published_at_ms")
    return published_ms if failure is None else failure[0]


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
             thresholds: Thresholds | None, discard: dict[str, Any] | None = None,
             refusal: str | None = None) -> tuple[Diagnosis | None, str]:
    """The broken hop and a short explanation; ``(None, "")`` when fresh or undecidable.

    ``refusal`` is the store's own word that it refuses writes (``store_writes``), asked
    by the reader only for a heartbeat that is stale or missing.
    """
    if state is State.FRESH or state is State.INVALID:
        return None, ""
    if state is State.UNREACHABLE:
        return Diagnosis.STORE_UNREACHABLE, "the heartbeat store (Redis) could not be asked"
    thresholds = thresholds or Thresholds.for_interval(_interval(payload, marker))
    if state is not State.MISSING:
        assert payload is not None and age_s is not None  # late or stale with a payload
        if age_s <= thresholds.late_after_s:
            return Diagnosis.CHECK_FAILED, f"a check reported {payload['status']}"
    if refusal is not None:
        return Diagnosis.STORE_REFUSES_WRITES, refusal
    failure = publish_failure(marker)
    if failure is not None and now_ms is not None:
        failed_s = max(now_ms - failure[0], 0) / 1000
        if failed_s <= refusal_window_s(_interval(marker, payload), thresholds):
            return Diagnosis.BROKER_DOWN, (f"beat is running but the broker refused its "
                                           f"publish {failed_s:.1f}s ago: {failure[1]}")
    return _pipeline_hop(state, now_ms=now_ms, payload=payload, marker=marker,
                         thresholds=thresholds, discard=discard,
                         noted=failure is not None)


def refusal_window_s(interval_s: float, thresholds: Thresholds) -> float:
    """How long a note of a refused publish says beat is alive.

    Each refused publish blocks beat for the broker client's retries, so notes come further
    apart than publishes: up to an interval plus ``REFUSAL_NOTE_S``. A note counts for that
    long, and never less than the stale threshold.
    """
    return max(thresholds.stale_after_s, interval_s + REFUSAL_NOTE_S)


def _pipeline_hop(state: State, *, now_ms: int | None, payload: dict[str, Any] | None,
                  marker: dict[str, Any] | None, thresholds: Thresholds,
                  discard: dict[str, Any] | None, noted: bool = False) -> tuple[Diagnosis, str]:
    """Beat, the queue or the worker, from beat's marker and the worker's discard note.

    ``noted``: the marker holds a refused publish since the last publish (too old to count
    as ``broker_down`` any more): beat stopped noting, so it is not ``beat_or_broker``.
    """
    published_ms = None if marker is None else marker.get("published_at_ms")
    beat_age_s = (None if published_ms is None or now_ms is None
                  else max(now_ms - published_ms, 0) / 1000)
    if marker is None and state is State.MISSING:
        return Diagnosis.NEVER_SEEN, "no heartbeat and no publish by beat were ever recorded"
    if beat_age_s is None:
        return Diagnosis.BEAT_DOWN, "beat has recorded no publish"
    if beat_age_s > thresholds.late_after_s:
        interval_s = _interval(marker, payload)  # beat's own schedule first
        overdue_s = beat_age_s - interval_s
        if not noted and overdue_s <= REFUSAL_NOTE_S:
            return Diagnosis.BEAT_OR_BROKER, (
                f"beat last published {beat_age_s:.1f}s ago, {max(overdue_s, 0):.1f}s past "
                f"due, within the {REFUSAL_NOTE_S:g}s a refused publish takes to be noted: "
                "beat stopped, or the broker refuses its publishes")
        return Diagnosis.BEAT_DOWN, f"beat last published {beat_age_s:.1f}s ago"
    depth = None if marker is None else marker.get("queue_depth")
    queued = _queued(depth)
    # Recent by when the worker discarded it (published + waited), not when it was
    # published: a heartbeat discarded now may have been published long ago.
    if (discard is not None and now_ms is not None
            and now_ms - (discard["published_at_ms"] + discard["lag_ms"])
            <= thresholds.stale_after_s * 1000):
        lag_s = discard["lag_ms"] / 1000
        return Diagnosis.WORKER_SLOW, (f"the worker runs heartbeats {lag_s:.1f}s after publish "
                                       "and discards them as expired")
    if state is State.MISSING:
        return Diagnosis.NO_CONSUMER, (f"beat published {beat_age_s:.1f}s ago{queued}, "
                                       "but no heartbeat was ever written")
    interval_s = _interval(payload, marker)
    lag_ms = 0.0 if payload is None else (_number(payload.get("queue_lag_ms"))
                                          + _number(payload.get("duration_ms")))
    if lag_ms > interval_s * 1000:
        return Diagnosis.WORKER_SLOW, (f"the last heartbeat took {lag_ms / 1000:.1f}s from "
                                       f"publish to write, over the {interval_s:g}s interval")
    consumer = ("no heartbeat was written (a worker stopping, stuck or failing in the task)"
                if depth == 0 else "no worker ran it")
    return Diagnosis.NO_CONSUMER, f"beat published {beat_age_s:.1f}s ago{queued}, but {consumer}"


WRITE_SUSPECTS = frozenset({Diagnosis.BEAT_DOWN, Diagnosis.BEAT_OR_BROKER, Diagnosis.NEVER_SEEN,
                            Diagnosis.NO_CONSUMER, Diagnosis.BROKER_DOWN,
                            Diagnosis.WORKER_SLOW})
"""Diagnoses from the keys alone that a store refusing writes also produces: for these (every
one but a failed check's, late or stale or missing alike) the reader asks the store
(``store_writes``) before it answers. A store that is also the broker refuses beat's
publishes and marker notes and the worker's writes by turns as its memory moves about the
limit, so the keys alone say any of these."""


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
