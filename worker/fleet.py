"""Read every service in the fleet index in a constant number of commands.

``ZRANGE`` the index, then one read-only script (``EVAL_RO``; ``EVAL`` on servers without
it) returns the server's ``TIME`` and, for each service, the key's type, length and value
(only when it is at most 16 KiB): one ``GETRANGE`` per key unless the key is missing,
of another type or oversized. Two commands for 10 or 10,000 services, where pipelined
GETs would still be N commands, and no unbounded value is ever transferred.
"""

from __future__ import annotations

import gc
from typing import Any

from worker.diagnosis import MAX_MARKER_BYTES, parse_discard, parse_marker
from worker.keys import SERVICE_PATTERN, Keys
from worker.payload import MAX_PAYLOAD_BYTES
from worker.reader import (
    HeartbeatReport,
    execute_many,
    judge_value,
    read_heartbeat,
    redis_time_ms,
    unreachable,
)
from worker.states import SEVERITY
from worker.store_shape import is_cluster_client
from worker.urls import redact

READ_MANY_SCRIPT = """
-- KEYS: (latest, beat marker, discard note) per service. ARGV[1] value cap, ARGV[2] note cap
local t = redis.call('TIME')
local out = {t}
local cap = tonumber(ARGV[1])
for i = 1, #KEYS, 3 do
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
    local m = redis.pcall('GETRANGE', KEYS[i + j], 0, tonumber(ARGV[2]) - 1)
    if type(m) ~= 'string' then m = '' end
    out[i + j + 1] = m
  end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def fleet_services(client: Any, keys: Keys) -> list[str]:
    """Every valid service name in the index (invalid members are ignored, never used as keys)."""
    (members,) = execute_many(client, [("ZRANGE", keys.index, 0, -1)])
    if isinstance(members, BaseException):
        raise members
    return [name for name in map(_text, members) if SERVICE_PATTERN.fullmatch(name)]


def _script_args(services: list[str], keys: Keys) -> tuple[str | int, ...]:
    key_names = [name for s in services
                 for name in (keys.latest(s), keys.beat(s), keys.discarded(s))]
    return (READ_MANY_SCRIPT, len(key_names), *key_names, MAX_PAYLOAD_BYTES, MAX_MARKER_BYTES)


def _judge_rows(services: list[str], now_ms: int, rows: list[Any],
                **thresholds: float | None) -> list[HeartbeatReport]:
    reports = []
    # Judging allocates thousands of dicts and no cycles: the cyclic GC would only rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for service, row, raw_marker, raw_discard in zip(services, rows[0::3], rows[1::3],
                                                         rows[2::3], strict=True):
            marker, discard = parse_marker(raw_marker), parse_discard(raw_discard)
            if isinstance(row, bytes | str):
                kind, length, value = b"string", len(row), row
            else:  # [type, length]: missing, another type, empty or oversized
                kind, length, value = row[0], row[1], b""
            reports.append(judge_value(service, now_ms, kind, length, value, marker=marker,
                                       discard=discard, **thresholds))
    finally:
        if gc_was_enabled:
            gc.enable()
    return reports


def read_many(client: Any, services: list[str], keys: Keys, *,
              late_after_s: float | None = None,
              stale_after_s: float | None = None) -> list[HeartbeatReport]:
    """Judge several services; order follows ``services``.

    One script call for all of them; on a Redis Cluster, where one script can't span
    slots, one script call per service, pipelined (one round trip per node), each with
    the clock of the node that holds that service's keys.
    """
    if not services:
        return []
    thresholds = {"late_after_s": late_after_s, "stale_after_s": stale_after_s}
    if is_cluster_client(client):
        replies = execute_many(client, [("EVAL_RO", *_script_args([s], keys))
                                        for s in services])
        reports = []
        for service, reply in zip(services, replies, strict=True):
            if isinstance(reply, BaseException):
                reports.append(unreachable(service, f"Redis refused the read: "
                                                    f"{redact(str(reply))[:200]}"))
                continue
            reports += _judge_rows([service], redis_time_ms(reply[0]), reply[1:], **thresholds)
        return reports
    args = _script_args(services, keys)
    (reply,) = execute_many(client, [("EVAL_RO", *args)])
    if isinstance(reply, BaseException) and "unknown command" in str(reply).lower():
        (reply,) = execute_many(client, [("EVAL", *args)])
    if isinstance(reply, BaseException):
        raise reply
    return _judge_rows(services, redis_time_ms(reply[0]), reply[1:], **thresholds)


def read_fleet(client: Any, keys: Keys) -> list[HeartbeatReport] | HeartbeatReport:
    """Every indexed service, worst first; or one ``unreachable`` report if Redis can't be asked."""
    try:
        reports = read_many(client, fleet_services(client, keys), keys)
    except Exception as exc:  # the reader reports, never raises
        return unreachable("*", f"Redis could not be asked: {redact(str(exc))[:200]}")
    return sort_worst_first(reports)


def sort_worst_first(reports: list[HeartbeatReport]) -> list[HeartbeatReport]:
    """Worst state first, then oldest first, then by name."""
    return sorted(reports, key=lambda r: (SEVERITY.index(r.state), -(r.age_s or 0), r.service))


__all__ = ["fleet_services", "read_fleet", "read_heartbeat", "read_many", "sort_worst_first"]
