"""The heartbeat payload, schema 1: its fields, and the check that a stored one is sound.

PetSage's ``status``, ``message`` and ``timestamp`` keep their meaning; the rest tells a
reader everything it needs without configuration (``interval_s``, ``stale_after_s``) and
where time went on the way (hop times, ``queue_lag_ms``, ``duration_ms``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

SCHEMA = 1
"""The payload schema this code writes and reads."""

MAX_PAYLOAD_BYTES = 16 * 1024
"""A payload larger than this is refused on write and reported ``invalid`` on read."""

DEFAULT_MESSAGE = "PetSage system is alive and purring!"
"""PetSage's health ``message`` when all is well."""

Status = Literal["ok", "degraded", "error"]
STATUSES: tuple[Status, ...] = ("ok", "degraded", "error")
"""Statuses in order of badness: the worst check decides the payload's status."""


class CheckResult(TypedDict):
    """One check's outcome inside ``checks``."""

    status: Status
    latency_ms: float
    error: NotRequired[str]


class WorkerInfo(TypedDict):
    """Which worker process wrote the heartbeat."""

    node: str
    hostname: str
    pid: int


class Payload(TypedDict):
    """One heartbeat as stored at ``{prefix}:{service}`` and published on ``{prefix}:events``."""

    seq: int  #: per-service counter, +1 per accepted write (set by the store script)
    ts_ms: int  #: Redis server clock at the write, epoch ms (set by the store script)
    timestamp: str  #: ``ts_ms`` as ISO-8601 UTC with offset (PetSage's health field)
    schema: int  #: payload schema, 1
    service: str  #: service name
    status: Status  #: ok, degraded or error: the worst of ``checks``
    message: str  #: PetSage's health message, or what went wrong
    interval_s: float  #: the beat interval the writer was configured with
    stale_after_s: float  #: age at which readers call this heartbeat stale
    published_at: str | None  #: when beat published the task (ISO UTC), if known
    started_at: str  #: when the worker started the task (worker clock, ISO UTC)
    finished_at: str  #: when the checks were done, just before the write (worker clock)
    queue_lag_ms: float | None  #: start minus publish, on one clock; None if unknown
    duration_ms: float  #: start to finish of the task body
    clock_offset_ms: float  #: Redis clock minus the worker's clock, measured by the store check
    backlog: NotRequired[dict[str, Any] | None]  #: queue depth and oldest message age
    worker: WorkerInfo  #: node name, hostname and pid of the writer
    version: str  #: petsage-heartbeat version of the writer
    checks: dict[str, CheckResult]  #: name -> status and latency; ``redis`` always present


_REQUIRED: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "ts_ms": (int,),
    "timestamp": (str,),
    "schema": (int,),
    "service": (str,),
    "status": (str,),
    "message": (str,),
    "interval_s": (int, float),
    "stale_after_s": (int, float),
    "checks": (dict,),
}


_ABSENT = object()


def _finite_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def payload_problem(data: Any, service: str) -> str | None:
    """Say what is wrong with a decoded payload, or return None if it is sound.

    Only what a reader relies on is checked strictly; unknown extra fields are allowed so
    that a newer writer doesn't make an older reader cry wolf. A fleet read runs this for
    every service, so a sound payload is recognised by one expression (``_sound``); only
    one that fails it is examined field by field for the message.
    """
    if type(data) is dict and _sound(data, service):
        return None
    return _explain(data, service)


def _optional_number(value: Any) -> bool:
    kind = type(value)
    return value is None or kind is int or (kind is float and math.isfinite(value))


def _sound(data: dict[str, Any], service: str) -> bool:
    """True when every field a reader relies on is right (the same rules as ``_explain``)."""
    try:
        seq, ts_ms, timestamp = data["seq"], data["ts_ms"], data["timestamp"]
        interval_s, stale_after_s = data["interval_s"], data["stale_after_s"]
        sound = (type(seq) is int and type(ts_ms) is int and 1 <= seq < 2**53
                 and 0 <= ts_ms < 2**53 and type(data["schema"]) is int
                 and data["schema"] == SCHEMA and type(data["service"]) is str
                 and data["service"] == service and type(data["status"]) is str
                 and data["status"] in STATUSES and type(data["message"]) is str
                 and type(data["checks"]) is dict and type(timestamp) is str
                 and type(interval_s) in (int, float) and type(stale_after_s) in (int, float)
                 and 0 < interval_s <= stale_after_s < 1e9
                 and _optional_number(data.get("queue_lag_ms"))
                 and _optional_number(data.get("duration_ms"))
                 and _optional_number(data.get("clock_offset_ms")))
    except KeyError:
        return False
    if not sound:
        return False
    try:
        datetime.fromisoformat(timestamp)
    except ValueError:
        return False
    return True


def _explain(data: Any, service: str) -> str | None:
    """What is wrong with a payload that ``_sound`` refused, field by field."""
    # Exact type tests: JSON decodes to exact dict/list/str/int/float/bool, and a bool must
    # not pass for an int. Fleets of 10,000 services run this 10,000 times per read.
    if type(data) is not dict:
        return f"payload is a JSON {type(data).__name__}, not an object"
    for name, types in _REQUIRED.items():
        value = data.get(name, _ABSENT)
        kind = type(value)
        if kind not in types:
            if value is _ABSENT:
                return f"payload has no {name!r}"
            return f"payload field {name!r} has the wrong type ({kind.__name__})"
        if kind is float and not math.isfinite(value):
            return f"payload field {name!r} is not finite"
    if data["schema"] != SCHEMA:
        return f"payload schema {data['schema']!r} is not {SCHEMA}"
    if data["service"] != service:
        return f"payload is for service {data['service'][:64]!r}, not {service!r}"
    if data["status"] not in STATUSES:
        return f"payload status {data['status'][:20]!r} is not one of {', '.join(STATUSES)}"
    if not 0 <= data["ts_ms"] < 2**53 or not 1 <= data["seq"] < 2**53:
        return "payload ts_ms or seq is out of range"
    return _detail_problem(data)


def _detail_problem(data: dict[str, Any]) -> str | None:
    try:
        datetime.fromisoformat(data["timestamp"])
    except ValueError:
        return "payload timestamp is not ISO-8601"
    if not 0 < data["interval_s"] <= data["stale_after_s"] < 1e9:
        return "payload interval_s/stale_after_s are out of range"
    for name in ("queue_lag_ms", "duration_ms", "clock_offset_ms"):
        value = data.get(name)
        if value is not None and not _finite_number(value):
            return f"payload field {name!r} is not a finite number"
    return None


def worst_status(statuses: list[Status]) -> Status:
    """The worst of ``statuses`` (ok < degraded < error); ok for none."""
    return max(statuses, key=STATUSES.index, default="ok")
