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

import gc
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol, cast

from worker.diagnosis import MAX_MARKER_BYTES, diagnose, parse_discard, parse_marker
from worker.keys import Keys, validate_service
from worker.nodes import FLEET_NODES_LIMIT, NodeReport, describe_beats, judge_nodes, second_beat
from worker.payload import MAX_PAYLOAD_BYTES, Payload, payload_problem
from worker.settings import DEFAULT_INTERVAL_S, LATE_FACTOR, STALE_FACTOR
from worker.states import FUTURE_TOLERANCE_MS, State, Thresholds, state_for
from worker.store_shape import is_cluster_client
from worker.urls import redact

Command = tuple[str | bytes | int | float, ...]


class CommandClient(Protocol):
    """A client that sends several commands in one round trip and returns their replies."""

    def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` pipelined; return one reply (or exception instance) each."""
        ...


def execute_many(client: Any, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` in one round trip on a ``CommandClient`` or a redis-py client."""
    if hasattr(client, "execute_many"):  # a CommandClient (isinstance on a Protocol is slow)
        return cast(list[Any], client.execute_many(commands))
    if len(commands) == 1 and not is_cluster_client(client):
        # One command needs no pipeline object: saves its overhead on every single read.
        try:
            return [client.execute_command(*commands[0])]
        except Exception as exc:
            # An error reply (redis-py's ResponseError and its subclasses, named rather than
            # imported: the reader doesn't import redis-py) is a value, as in a pipeline.
            if any(cls.__name__ == "ResponseError" for cls in type(exc).__mro__):
                return [exc]
            raise
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return cast(list[Any], pipe.execute(raise_on_error=False))


class HeartbeatReport(NamedTuple):
    """What a reader knows about one service's heartbeat at one instant of the Redis clock."""

    service: str
    state: State
    reason: str  #: one human line: why this state
    age_s: float | None = None  #: seconds since ts_ms on the Redis clock; None if unknown
    thresholds: Thresholds | None = None  #: the late/stale ages used
    payload: Payload | None = None  #: the decoded payload when it was readable
    now_ms: int | None = None  #: the Redis clock reading the age was computed from
    diagnosis: str | None = None  #: the broken hop when not fresh (see ``worker.diagnosis``)
    beat: dict[str, Any] | None = None  #: beat's last publish marker, when readable
    nodes: tuple[NodeReport, ...] = ()  #: the service's worker nodes, most recent first
    second_beat: str | None = None  #: another beat seen publishing for this service

    @property
    def exit_code(self) -> int:
        """Nagios exit code of the state."""
        return self.state.exit_code


def redis_time_ms(reply: Any) -> int:
    """Convert a ``TIME`` reply (seconds, microseconds) to epoch milliseconds."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def unreachable(service: str, reason: str) -> HeartbeatReport:
    """The report for a store that could not be asked."""
    return HeartbeatReport(service, State.UNREACHABLE, reason, diagnosis="store_unreachable")


def judge_value(service: str, now_ms: int, type_reply: Any, strlen_reply: Any, value: Any, *,
                late_after_s: float | None = None, stale_after_s: float | None = None,
                marker: dict[str, Any] | None = None,
                discard: dict[str, Any] | None = None) -> HeartbeatReport:
    """Judge one stored value at ``now_ms`` on the Redis clock (fleet reads share one clock)."""
    kind = _text(type_reply)
    if kind == "none":
        diagnosis, why = diagnose(State.MISSING, now_ms=now_ms, age_s=None, payload=None,
                                  marker=marker, thresholds=None, discard=discard)
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
        data = _DECODER.decode(_bytes(value).decode("utf-8"))
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
    stale = payload["stale_after_s"] if stale_after_s is None else stale_after_s
    late = payload["interval_s"] * LATE_FACTOR if late_after_s is None else late_after_s
    thresholds = Thresholds(min(late, stale), stale)
    age_s = max(age_ms, 0) / 1000
    state = state_for(age_s, payload["status"], thresholds)
    reason = _reason(state, age_s, payload, thresholds)
    diagnosis = None
    if state is not State.FRESH:
        diagnosis, why = diagnose(state, now_ms=now_ms, age_s=age_s, payload=data,
                                  marker=marker, thresholds=thresholds, discard=discard)
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


READ_SCRIPT = """
-- KEYS: (latest, beat marker, discard note, nodes) per service. ARGV[1] value cap,
-- ARGV[2] note cap, ARGV[3] '1' to read the notes too ('0': they come back empty, for a
-- first pass), ARGV[4] most recent nodes per service
local t = redis.call('TIME')
local out = {t}
local cap = tonumber(ARGV[1])
for i = 1, #KEYS, 4 do
  -- One GETRANGE per key in the common case; the rare cases say what the key holds.
  local key = KEYS[i]
  local v = redis.pcall('GETRANGE', key, 0, cap)
  if type(v) == 'string' and #v > 0 and #v <= cap then
    out[i + 1] = v
  else
    local kind = redis.call('TYPE', key)
    if type(kind) == 'table' then kind = kind['ok'] end
    local n = 0
    if kind == 'string' then n = redis.call('STRLEN', key) end
    out[i + 1] = {kind, n}
  end
  for j = 1, 2 do
    local m = ''
    if ARGV[3] == '1' then m = redis.pcall('GETRANGE', KEYS[i + j], 0, tonumber(ARGV[2]) - 1) end
    if type(m) ~= 'string' then m = '' end
    out[i + j + 1] = m
  end
  local nodes = redis.pcall('ZREVRANGE', KEYS[i + 3], 0, tonumber(ARGV[4]) - 1, 'WITHSCORES')
  if type(nodes) ~= 'table' or nodes['err'] then nodes = {} end
  out[i + 4] = nodes
end
return out
"""
"""Returns the server's TIME, then per service: the value (or [type, length] when missing,
of another type, empty or oversized), beat's marker, the worker's discard note and the
most recent worker nodes (flat: node, ts_ms, ...)."""


def _script_args(services: list[str], keys: Keys, *, notes: bool = True,
                 nodes_limit: int = FLEET_NODES_LIMIT) -> tuple[str | int, ...]:
    key_names = [name for s in services
                 for name in (keys.latest(s), keys.beat(s), keys.discarded(s), keys.nodes(s))]
    return (READ_SCRIPT, len(key_names), *key_names, MAX_PAYLOAD_BYTES, MAX_MARKER_BYTES,
            1 if notes else 0, nodes_limit)


_gc_lock = threading.Lock()
_gc_users = 0
_gc_was_enabled = True


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while judging a fleet: thousands of dicts, no cycles to find.

    Counted under a lock, because the HTTP server judges from several threads: the GC is
    re-enabled (if it was on) when the last of them finishes, never left off.
    """
    global _gc_users, _gc_was_enabled  # noqa: PLW0603 - process-wide by nature, like the GC
    with _gc_lock:
        if _gc_users == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_was_enabled:
                gc.enable()


def _judge_rows(services: list[str], now_ms: int, rows: list[Any],
                **thresholds: float | None) -> list[HeartbeatReport]:
    reports = []
    with _gc_paused():
        for service, row, raw_marker, raw_discard, raw_nodes in zip(
                services, rows[0::4], rows[1::4], rows[2::4], rows[3::4], strict=True):
            marker, discard = parse_marker(raw_marker), parse_discard(raw_discard)
            if isinstance(row, bytes | str):
                kind, length, value = b"string", len(row), row
            else:  # [type, length]: missing, another type, empty or oversized
                kind, length, value = row[0], row[1], b""
            report = judge_value(service, now_ms, kind, length, value, marker=marker,
                                 discard=discard, **thresholds)
            reports.append(with_components(report, now_ms, marker, raw_nodes))
    return reports


def component_thresholds(report: HeartbeatReport,
                         marker: dict[str, Any] | None) -> Thresholds:
    """Thresholds for the service's nodes: the heartbeat's, else beat's settings, else defaults."""
    if report.thresholds is not None:
        return report.thresholds
    interval_s, stale_s = DEFAULT_INTERVAL_S, DEFAULT_INTERVAL_S * STALE_FACTOR
    if marker is not None:
        interval_s = positive_number(marker.get("interval_s"), interval_s)
        stale_s = positive_number(marker.get("stale_after_s"), interval_s * STALE_FACTOR)
    return Thresholds(min(interval_s * LATE_FACTOR, stale_s), stale_s)


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
            reports += _judge_rows([service], redis_time_ms(reply[0]), reply[1:], **thresholds)
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
    return _judge_rows(services, redis_time_ms(reply[0]), reply[1:], **thresholds)


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
