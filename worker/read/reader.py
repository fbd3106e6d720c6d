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

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from worker.core.json_loads import loads
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
                refusal: str | None = None, diagnosed: bool = True) -> HeartbeatReport:
    """Judge one stored value at ``now_ms`` on the Redis clock (fleet reads share one clock).

    ``refusal`` is the store's reason for refusing writes, when the reader asked it. With
    ``diagnosed=False`` the diagnosis is left for ``add_diagnosis`` (a fleet read fetches
    beat's markers only for the services that need one).
    """
    report = _judge(service, now_ms, as_text(type_reply), strlen_reply, value,
                    late_after_s=late_after_s, stale_after_s=stale_after_s)
    return add_diagnosis(report, marker, discard, refusal) if diagnosed else report


FLEET_FIELDS = ("status", "message", "seq", "ts_ms", "timestamp", "interval_s",
                "stale_after_s", "queue_lag_ms", "duration_ms", "clock_offset_ms", "backlog")
"""Payload fields a fleet report keeps, with the worker's node, and the checks when the
status is not ok (they name what failed): what fleet views show. A 100,000-service read
must not hold 100,000 whole payloads (a decoded one is about 2 KB; this, half)."""


_SHARED: dict[tuple[Any, ...], Any] = {}
"""Equal small values many payloads carry (a message, an empty backlog), kept once."""


def _shared(value: Any) -> Any:
    """``value``, or an equal one already kept: a fleet of payloads repeats a few values.

    Only strings and flat dicts of plain values are shared, and never more than a few
    thousand of them; readers never modify a payload. A dict's key holds each value's type:
    ``0``, ``0.0`` and ``False`` are equal in Python, not in JSON.
    """
    kind = type(value)
    if kind is str:
        key: tuple[Any, ...] = (value,)
    elif kind is dict and len(value) <= 4 and all(
            type(v) in (int, float, str, bool, type(None)) for v in value.values()):
        key = tuple((k, type(v), v) for k, v in value.items())
    else:
        return value
    kept = _SHARED.get(key)
    if kept is None:
        if len(_SHARED) >= 4096:
            return value
        _SHARED[key] = kept = value
    return kept


def _slim(data: dict[str, Any]) -> dict[str, Any]:
    slim = {name: data[name] for name in FLEET_FIELDS if name in data}
    slim["message"] = _shared(slim.get("message"))
    if "backlog" in slim:
        slim["backlog"] = _shared(slim["backlog"])
    worker = data.get("worker")
    if type(worker) is dict:
        slim["worker"] = {"node": worker.get("node")}
    if data["status"] != "ok":
        slim["checks"] = data["checks"]
    return slim


def _judge(service: str, now_ms: int, kind: str, strlen_reply: Any, value: Any, *,
           late_after_s: float | None, stale_after_s: float | None,
           slim: bool = False) -> HeartbeatReport:
    if kind == "none":
        return HeartbeatReport(service, State.MISSING, "no heartbeat stored for this service",
                               now_ms=now_ms)
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
    return _judge_text(service, now_ms, as_bytes(value), late_after_s=late_after_s,
                       stale_after_s=stale_after_s, slim=slim)


def _judge_text(service: str, now_ms: int, value: bytes, *, late_after_s: float | None,
                stale_after_s: float | None, slim: bool = False,
                decode: Callable[[bytes], Any] = loads) -> HeartbeatReport:
    """Judge a stored string value of at most ``MAX_PAYLOAD_BYTES`` (the common case).

    ``decode`` is ``orjson.loads``, or ``json_loads.loads`` (the same answers) where
    importing orjson would cost more than decoding a value or two with it.
    """
    try:
        data = decode(value)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return HeartbeatReport(service, State.INVALID,
                               f"stored value is not JSON: {str(exc)[:100]}", now_ms=now_ms)
    problem = payload_problem(data, service)
    if problem is not None:
        return HeartbeatReport(service, State.INVALID, problem, now_ms=now_ms)
    payload = cast(Payload, _slim(data) if slim else data)
    age_ms = now_ms - payload["ts_ms"]
    if age_ms < -FUTURE_TOLERANCE_MS:
        return HeartbeatReport(
            service, State.INVALID,
            f"heartbeat ts_ms is {-age_ms / 1000:.1f}s ahead of the Redis clock",
            now_ms=now_ms, payload=payload)
    thresholds = _thresholds(payload["interval_s"], payload["stale_after_s"], late_after_s,
                             stale_after_s)
    age_s = max(age_ms, 0) / 1000
    state = state_for(age_s, payload["status"], thresholds)
    return HeartbeatReport(service, state, _reason(state, age_s, payload, thresholds),
                           age_s=age_s, thresholds=thresholds, payload=payload, now_ms=now_ms)


@functools.lru_cache(maxsize=256)
def _thresholds(interval_s: float, stale_after_s: float, late_override: float | None,
                stale_override: float | None) -> Thresholds:
    """A payload's thresholds with the caller's overrides: a fleet shares a handful."""
    return Thresholds.for_interval(interval_s, stale_after_s).overridden(late_override,
                                                                         stale_override)


def add_diagnosis(report: HeartbeatReport, marker: dict[str, Any] | None,
                  discard: dict[str, Any] | None, refusal: str | None = None, *,
                  raw_nodes: Any = None) -> HeartbeatReport:
    """``report`` (judged without a diagnosis) with the broken hop named in it.

    With ``raw_nodes`` (a fleet's second pass) the second beat and, for a service with no
    payload, the nodes judged on beat's settings are added in the same copy.
    """
    if report.state in (State.FRESH, State.INVALID, State.UNREACHABLE):
        return report
    diagnosis, why = diagnose(report.state, now_ms=report.now_ms, age_s=report.age_s,
                              payload=cast(dict[str, Any] | None, report.payload),
                              marker=marker, thresholds=report.thresholds, discard=discard,
                              refusal=refusal)
    reason = f"{report.reason}; {diagnosis}: {why}"
    if raw_nodes is None or report.now_ms is None:
        return report._replace(diagnosis=diagnosis, reason=reason, beat=marker)
    nodes = report.nodes
    if report.thresholds is None and raw_nodes:
        nodes = judge_nodes(report.now_ms, raw_nodes, component_thresholds(report, marker))
    other = second_beat(report.now_ms, marker)
    if other is not None:
        reason = f"{reason}; {describe_beats(marker, other)}"
    return report._replace(diagnosis=diagnosis, reason=reason, beat=marker, nodes=nodes,
                           second_beat=other)


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


def read_script_args(services: list[str], keys: Keys, *, notes: bool = True,
                     nodes_limit: int = FLEET_NODES_LIMIT) -> tuple[str | int, ...]:
    """``EVAL_RO`` arguments of the read script for ``services`` (four keys each)."""
    key_names = keys.read_keys(services)
    return (READ_SCRIPT, len(key_names), *key_names, MAX_PAYLOAD_BYTES, MAX_MARKER_BYTES,
            1 if notes else 0, nodes_limit)


Overrides = tuple[float | None, float | None]
"""A caller's late and stale thresholds (None: the payload's own)."""


def judge_rows(services: list[str], now_ms: int, rows: list[Any], overrides: Overrides, *,
               notes: bool = True, refusal: str | None = None) -> list[HeartbeatReport]:
    """Judge the read script's rows (four per service) at ``now_ms``.

    Without ``notes`` (a fleet's first pass) beat's markers were not read: no diagnosis yet.
    """
    late_after_s, stale_after_s = overrides
    reports = []
    for service, row, raw_marker, raw_discard, raw_nodes in zip(
            services, rows[0::4], rows[1::4], rows[2::4], rows[3::4], strict=True):
        marker = parse_marker(raw_marker) if notes else None
        discard = parse_discard(raw_discard) if notes else None
        if isinstance(row, bytes | str):
            kind, length, value = b"string", len(row), row
        else:  # [type, length]: missing, another type, empty or oversized
            kind, length, value = row[0], row[1], b""
        report = judge_value(service, now_ms, kind, length, value, marker=marker,
                             discard=discard, refusal=refusal, late_after_s=late_after_s,
                             stale_after_s=stale_after_s, diagnosed=notes)
        reports.append(with_components(report, now_ms, marker, raw_nodes))
    return reports


def judge_values(services: list[str], now_ms: int, values: list[Any], nodes: list[Any],
                 overrides: Overrides) -> list[HeartbeatReport]:
    """A fleet's first pass: judge each value (no diagnosis yet) and its nodes.

    The payload kept is slimmed to what the fleet's readers show (``FLEET_FIELDS``): a
    100,000-service read must not hold 100,000 whole payloads.
    """
    import orjson  # thousands of payloads: orjson itself, imported once, worth its cost

    late_after_s, stale_after_s = overrides
    reports = []
    for service, row, raw_nodes in zip(services, values, nodes, strict=True):
        if type(row) is bytes:  # the script returns a value only when within the cap
            report = _judge_text(service, now_ms, row, late_after_s=late_after_s,
                                 stale_after_s=stale_after_s, slim=True, decode=orjson.loads)
        elif isinstance(row, str):
            report = _judge_text(service, now_ms, row.encode(), late_after_s=late_after_s,
                                 stale_after_s=stale_after_s, slim=True, decode=orjson.loads)
        else:  # [type, length]: missing, another type, empty or oversized
            report = _judge(service, now_ms, as_text(row[0]), row[1], b"",
                            late_after_s=late_after_s, stale_after_s=stale_after_s, slim=True)
        reports.append(report if not raw_nodes else
                       with_components(report, now_ms, None, raw_nodes))
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
    if not raw_nodes and marker is None and report.beat is None and not report.nodes:
        return report  # nothing to add: no copy (a fleet read makes 10,000 of these)
    nodes = judge_nodes(now_ms, raw_nodes, component_thresholds(report, marker))
    other = second_beat(now_ms, marker)
    reason = report.reason if other is None else f"{report.reason}; {describe_beats(marker, other)}"
    return report._replace(nodes=nodes, second_beat=other, reason=reason, beat=marker)


def eval_read_only(client: Any, calls: list[tuple[str | int, ...]]) -> list[Any]:
    """Run read-only script calls pipelined (``EVAL_RO``; ``EVAL`` on a Redis without it).

    Raises the first error reply: a read that fails in part is a store problem.
    """
    replies = execute_many(client, [("EVAL_RO", *args) for args in calls])
    if replies and isinstance(replies[0], BaseException) and (
            "unknown command" in str(replies[0]).lower()):
        replies = execute_many(client, [("EVAL", *args) for args in calls])
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


def read_many(client: Any, services: list[str], keys: Keys, *,
              late_after_s: float | None = None, stale_after_s: float | None = None,
              nodes_limit: int = FLEET_NODES_LIMIT) -> list[HeartbeatReport]:
    """Judge a few services in one script call; order follows ``services``.

    On a Redis Cluster, where one script can't span slots, one script call per service,
    pipelined (one round trip per node), each with the clock of the node that holds that
    service's keys. A fleet is read in chunks by ``worker.read.fleet`` instead.
    """
    if not services:
        return []
    overrides = (late_after_s, stale_after_s)
    if is_cluster_client(client):
        return read_cluster(client, services, keys, overrides, nodes_limit=nodes_limit)
    (reply,) = eval_read_only(client, [read_script_args(services, keys,
                                                        nodes_limit=nodes_limit)])
    now_ms = redis_time_ms(reply[0])
    reports = judge_rows(services, now_ms, reply[1:], overrides)
    if any(r.diagnosis in WRITE_SUSPECTS for r in reports):
        # Beat and the workers may be fine and the store refusing their writes: ask it.
        why = ask_refusal(client)
        if why is not None:
            reports = judge_rows(services, now_ms, reply[1:], overrides, refusal=why)
    return reports


def read_cluster(client: Any, services: list[str], keys: Keys, overrides: Overrides, *,
                 nodes_limit: int = FLEET_NODES_LIMIT) -> list[HeartbeatReport]:
    """One script call per service on a Redis Cluster, pipelined: one round trip per node."""
    # EVAL, not EVAL_RO: redis-py's cluster client routes EVAL by its keys itself but
    # would ask a node (COMMAND GETKEYS) for every EVAL_RO. The script only reads.
    replies = execute_many(client, [("EVAL", *read_script_args([s], keys,
                                                               nodes_limit=nodes_limit))
                                    for s in services])
    reports = []
    for service, reply in zip(services, replies, strict=True):
        if isinstance(reply, BaseException):
            reports.append(unreachable(service, f"Redis refused the read: "
                                                f"{redact(str(reply))[:200]}"))
            continue
        reports += judge_rows([service], redis_time_ms(reply[0]), reply[1:], overrides)
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
