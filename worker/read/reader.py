"""Read one heartbeat and say what state it is in. Never raises; imports no Celery.

One read-only script call (``EVAL_RO``) returns the server's ``TIME``, at most the first
16 KiB of the value (``GETRANGE``; the type and length instead when it is missing, of
another type or too long), beat's marker and the worker's discard note: one round trip,
atomic, on the clock that stamped the heartbeat; a huge or hostile value costs nothing.

``client`` may be a redis-py client (sync) or any object with
``execute_many(commands) -> list`` (the probe's own small client), whose replies are the
raw values or exception instances for error replies.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple, cast

from worker.core.names import Keys, validate_service
from worker.core.payload import MAX_PAYLOAD_BYTES, Payload, payload_problem
from worker.core.redis_io import (
    as_bytes,
    as_text,
    execute_many,
    is_cluster_client,
    lua_script,
    redis_time_ms,
)
from worker.core.settings import DEFAULT_INTERVAL_S
from worker.core.states import FUTURE_TOLERANCE_MS, Diagnosis, State, Thresholds, state_for
from worker.core.urls import redact
from worker.read.diagnosis import (
    MAX_MARKER_BYTES,
    WRITE_SUSPECTS,
    diagnose,
    parse_discard,
    parse_marker,
)
from worker.read.nodes import (
    FLEET_NODES_LIMIT,
    NodeReport,
    describe_beats,
    judge_nodes,
    second_beat,
)
from worker.read.store_writes import ask_refusal


class HeartbeatReport(NamedTuple):
    """What a reader knows about one service's heartbeat at one instant of the Redis clock."""

    service: str
    state: State
    reason: str  #: one human line: why this state
    age_s: float | None = None  #: seconds since ts_ms on the Redis clock; None if unknown
    thresholds: Thresholds | None = None  #: the late/stale ages used
    payload: Payload | None = None  #: the decoded payload when it was readable
    now_ms: int | None = None  #: the Redis clock reading the age was computed from
    diagnosis: Diagnosis | None = None  #: the broken hop when not fresh
    beat: dict[str, Any] | None = None  #: beat's last publish marker, when readable
    nodes: tuple[NodeReport, ...] = ()  #: the service's worker nodes, most recent first
    second_beat: str | None = None  #: another beat seen publishing for this service

    @property
    def exit_code(self) -> int:
        """Nagios exit code of the state."""
        return self.state.exit_code


def unreachable(service: str, reason: str) -> HeartbeatReport:
    """The report for a store that could not be asked."""
    return HeartbeatReport(service, State.UNREACHABLE, reason,
                           diagnosis=Diagnosis.STORE_UNREACHABLE)


def judge_value(service: str, now_ms: int, type_reply: Any, strlen_reply: Any, value: Any, *,
                late_after_s: float | None = None, stale_after_s: float | None = None,
                marker: dict[str, Any] | None = None,
                discard: dict[str, Any] | None = None,
                refusal: str | None = None) -> HeartbeatReport:
    """Judge one stored value at ``now_ms`` on the Redis clock (fleet reads share one clock).

    ``refusal`` is the store's reason for refusing writes, when the reader asked it.
    """
    kind = as_text(type_reply)
    if kind == "none":
        diagnosis, why = diagnose(State.MISSING, now_ms=now_ms, age_s=None, payload=None,
                                  marker=marker, thresholds=None, discard=discard,
                                  refusal=refusal)
        return HeartbeatReport(service, State.MISSING,
                               f"no heartbeat stored for this service; {diagnosis}: {why}",
                               now_ms=now_ms, diagnosis=diagnosis, beat=marker)
    if kind != "string":
        return HeartbeatReport(service, State.INVALID, f"the key holds a {kind}, not a string",
                               now_ms=now_ms)
    if isinstance(strlen_reply, BaseException) or isinstance(value, BaseException):
        return HeartbeatReport(service, State.INVALID, "the stored value could not be read",
                               now_ms=now_ms)
    if int(strlen_reply) > MAX_PAYLOAD_BYTES:
        return HeartbeatReport(
            service, State.INVALID,
            f"stored value is {int(strlen_reply)} bytes, over the {MAX_PAYLOAD_BYTES} limit",
            now_ms=now_ms)
    try:
        data = _DECODER.decode(as_bytes(value).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return HeartbeatReport(service, State.INVALID,
                               f"stored value is not JSON: {str(exc)[:100]}", now_ms=now_ms)
    problem = payload_problem(data, service)
    if problem is not None:
        return HeartbeatReport(service, State.INVALID, problem, now_ms=now_ms)
    payload = cast(Payload, data)
    age_ms = now_ms - payload["ts_ms"]
    if age_ms < -FUTURE_TOLERANCE_MS:
        return HeartbeatReport(
            service, State.INVALID,
            f"heartbeat ts_ms is {-age_ms / 1000:.1f}s ahead of the Redis clock",
            now_ms=now_ms, payload=payload)
    thresholds = Thresholds.for_interval(
        payload["interval_s"], payload["stale_after_s"]).overridden(late_after_s, stale_after_s)
    age_s = max(age_ms, 0) / 1000
    state = state_for(age_s, payload["status"], thresholds)
    reason = _reason(state, age_s, payload, thresholds)
    diagnosis = None
    if state is not State.FRESH:
        diagnosis, why = diagnose(state, now_ms=now_ms, age_s=age_s, payload=data,
                                  marker=marker, thresholds=thresholds, discard=discard,
                                  refusal=refusal)
        reason = f"{reason}; {diagnosis}: {why}"
    return HeartbeatReport(service, state, reason, age_s=age_s, thresholds=thresholds,
                           payload=payload, now_ms=now_ms, diagnosis=diagnosis, beat=marker)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
"""One strict decoder for every read (NaN and Infinity are not JSON); made once, not per call."""


def _reason(state: State, age_s: float, payload: Payload, thresholds: Thresholds) -> str:
    if payload["status"] != "ok" and state is not State.FRESH:
        bad = [n for n, c in payload["checks"].items()
               if isinstance(c, dict) and c.get("status") != "ok"]
        if bad and age_s <= thresholds.stale_after_s:
            return f"status {payload['status']}: check {', '.join(bad)[:200]}"
    if state is State.STALE:
        return f"last heartbeat {age_s:.1f}s ago, over {thresholds.stale_after_s:g}s"
    if state is State.LATE:
        return f"last heartbeat {age_s:.1f}s ago, over {thresholds.late_after_s:g}s"
    return f"last heartbeat {age_s:.1f}s ago"


READ_SCRIPT = lua_script(__package__, "read.lua")
"""The read script: ``TIME``, then each service's value, marker, discard note and nodes."""


def _script_args(services: list[str], keys: Keys, *, notes: bool = True,
                 nodes_limit: int = FLEET_NODES_LIMIT) -> tuple[str | int, ...]:
    key_names = [name for s in services
                 for name in (keys.latest(s), keys.beat(s), keys.discarded(s), keys.nodes(s))]
    return (READ_SCRIPT, len(key_names), *key_names, MAX_PAYLOAD_BYTES, MAX_MARKER_BYTES,
            1 if notes else 0, nodes_limit)


def _judge_rows(services: list[str], now_ms: int, rows: list[Any],
                thresholds: dict[str, float | None],
                refusal: str | None = None) -> list[HeartbeatReport]:
    reports = []
    for service, row, raw_marker, raw_discard, raw_nodes in zip(
            services, rows[0::4], rows[1::4], rows[2::4], rows[3::4], strict=True):
        marker, discard = parse_marker(raw_marker), parse_discard(raw_discard)
        if isinstance(row, bytes | str):
            kind, length, value = b"string", len(row), row
        else:  # [type, length]: missing, another type, empty or oversized
            kind, length, value = row[0], row[1], b""
        report = judge_value(service, now_ms, kind, length, value, marker=marker,
                             discard=discard, refusal=refusal, **thresholds)
        reports.append(with_components(report, now_ms, marker, raw_nodes))
    return reports


def component_thresholds(report: HeartbeatReport,
                         marker: dict[str, Any] | None) -> Thresholds:
    """Thresholds for the service's nodes: the heartbeat's, else beat's settings, else defaults."""
    if report.thresholds is not None:
        return report.thresholds
    if marker is None:
        return Thresholds.for_interval(DEFAULT_INTERVAL_S)
    interval_s = positive_number(marker.get("interval_s"), DEFAULT_INTERVAL_S)
    stale_s = positive_number(marker.get("stale_after_s"),
                              Thresholds.for_interval(interval_s).stale_after_s)
    return Thresholds.for_interval(interval_s, stale_s)


def positive_number(value: Any, default: float) -> float:
    """``value`` if a stored value gave a sane positive number (not a bool, < 1e9), else default."""
    if type(value) in (int, float) and 0 < value < 1e9:
        return float(value)
    return default


def with_components(report: HeartbeatReport, now_ms: int, marker: dict[str, Any] | None,
                    raw_nodes: Any) -> HeartbeatReport:
    """Add the service's worker nodes and a second beat, if one publishes, to ``report``."""
    nodes = judge_nodes(now_ms, raw_nodes, component_thresholds(report, marker))
    other = second_beat(now_ms, marker)
    reason = report.reason if other is None else f"{report.reason}; {describe_beats(marker, other)}"
    return report._replace(nodes=nodes, second_beat=other, reason=reason, beat=marker)


def read_many(client: Any, services: list[str], keys: Keys, *,
              late_after_s: float | None = None, stale_after_s: float | None = None,
              lazy_notes: bool = False,
              nodes_limit: int = FLEET_NODES_LIMIT) -> list[HeartbeatReport]:
    """Judge several services; order follows ``services``.

    One script call for all of them; on a Redis Cluster, where one script can't span
    slots, one script call per service, pipelined (one round trip per node), each with
    the clock of the node that holds that service's keys. With ``lazy_notes``, beat's
    markers and the discard notes (only needed for a diagnosis) are read in a second call
    for the services that are not fresh, rather than for all of them.
    """
    if not services:
        return []
    thresholds = {"late_after_s": late_after_s, "stale_after_s": stale_after_s}
    if is_cluster_client(client):
        # EVAL, not EVAL_RO: redis-py's cluster client routes EVAL by its keys itself but
        # would ask a node (COMMAND GETKEYS) for every EVAL_RO. The script only reads.
        replies = execute_many(client, [("EVAL", *_script_args([s], keys,
                                                                nodes_limit=nodes_limit))
                                        for s in services])
        reports = []
        for service, reply in zip(services, replies, strict=True):
            if isinstance(reply, BaseException):
                reports.append(unreachable(service, f"Redis refused the read: "
                                                    f"{redact(str(reply))[:200]}"))
                continue
            reports += _judge_rows([service], redis_time_ms(reply[0]), reply[1:], thresholds)
        return reports
    reports = _read_script(client, services, keys, not lazy_notes, thresholds,
                           nodes_limit=nodes_limit)
    unhealthy = [i for i, r in enumerate(reports)
                 if r.state is not State.FRESH and r.state is not State.UNREACHABLE]
    if lazy_notes and unhealthy:
        again = _read_script(client, [services[i] for i in unhealthy], keys, True, thresholds,
                             nodes_limit=nodes_limit)
        for i, report in zip(unhealthy, again, strict=True):
            reports[i] = report
    return reports


def _read_script(client: Any, services: list[str], keys: Keys, notes: bool,
                 thresholds: dict[str, float | None], *,
                 nodes_limit: int) -> list[HeartbeatReport]:
    args = _script_args(services, keys, notes=notes, nodes_limit=nodes_limit)
    (reply,) = execute_many(client, [("EVAL_RO", *args)])
    if isinstance(reply, BaseException) and "unknown command" in str(reply).lower():
        (reply,) = execute_many(client, [("EVAL", *args)])
    if isinstance(reply, BaseException):
        raise reply
    now_ms = redis_time_ms(reply[0])
    reports = _judge_rows(services, now_ms, reply[1:], thresholds)
    if notes and any(r.diagnosis in WRITE_SUSPECTS for r in reports):
        # Beat and the workers may be fine and the store refusing their writes: ask it.
        why = ask_refusal(client)
        if why is not None:
            reports = _judge_rows(services, now_ms, reply[1:], thresholds, why)
    return reports


def read_heartbeat(client: Any, service: str, *, keys: Keys | None = None,
                   late_after_s: float | None = None,
                   stale_after_s: float | None = None,
                   nodes_limit: int = FLEET_NODES_LIMIT) -> HeartbeatReport:
    """Read ``service``'s heartbeat and judge it on the Redis clock.

    One read-only script call (``EVAL_RO``): atomic, one round trip, and the clock it reads
    is the clock of the server (or cluster node) that stamped the heartbeat. Thresholds
    come from the payload's own ``interval_s``/``stale_after_s`` unless given. Returns a
    report for every outcome: bad data is ``invalid``, a dead or slow connection is
    ``unreachable`` (the client's own timeouts bound the wait). An invalid ``service``
    name raises ``ConfigError``: that is the caller's bug, not data.
    """
    validate_service(service)
    keys = keys or Keys()
    started = time.monotonic()
    try:
        return read_many(client, [service], keys, late_after_s=late_after_s,
                         stale_after_s=stale_after_s, nodes_limit=nodes_limit)[0]
    except UnicodeDecodeError:
        return HeartbeatReport(service, State.INVALID,
                               "stored value is not UTF-8 (and the client decodes replies)")
    except Exception as exc:  # any client, any failure: the reader reports, never raises
        waited = time.monotonic() - started
        return unreachable(service, f"Redis could not be asked ({type(exc).__name__} after "
                                    f"{waited:.1f}s): {redact(str(exc))[:200]}")
