"""A fleet's first pass from the compact summaries: fresh services told apart cheaply.

The publish script keeps one summary per service (``seq``, ``ts_ms``, ``timestamp``,
thresholds, status and the fields fleet views show, about 300 bytes) in 2,048 hash
shards, in the same atomic write as the latest payload. A fleet read fetches the shards
(``HGETALL``, or ``HSCAN ... COUNT 1000`` past 1.6 million services; 128 shards per round
trip: no command over about 1,000 fields), judges each summary on one Redis clock
reading, and keeps a fresh one as its report. Only the services a summary does not show
fresh (late, stale, failing, missing, unreadable) are read in full, with their markers
and notes, by ``worker.read.fleet``: a fleet that is all down costs what a full read
costs, a healthy one a tenth of it.

Why a fresh summary can be trusted: the summary and the latest payload are written
together, so a summary is never newer than the payload, and its ``ts_ms`` is the
payload's. A summary that shows fresh shows a payload of that age. (A latest key changed by
hand, outside the publish script, is seen when its summary goes late.) On a Redis Cluster
the shards live in other slots than the services' keys, so the first pass measures ages on
the latest clock of the primaries: an age can only come out longer, never fresher, and
every service it does not show fresh is judged again on its own node's clock.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from orjson import loads

from worker.core.names import SERVICE_PATTERN, SUMMARY_SHARDS, Keys
from worker.core.redis_io import as_text, execute_many, redis_time_ms
from worker.core.states import FUTURE_TOLERANCE_MS, State
from worker.read.nodes import FLEET_NODES_LIMIT
from worker.read.reader import HeartbeatReport, Overrides, _thresholds, with_components

SCAN_COUNT = 1000
"""``HSCAN``'s ``COUNT``: no command of the first pass returns more fields than about this."""

SCAN_FROM_SERVICES = 800 * SUMMARY_SHARDS
"""Fleets larger than this (1.6 million) are scanned: their shards near 1,000 fields."""

SHARDS_PER_ROUND_TRIP = 128
"""Shards scanned per round trip: 16 round trips for the 2,048 shards, and a client holds
the raw summaries of at most about 64,000 services (at 1,000,000) at a time."""

NODES_PER_ROUND_TRIP = 1000
"""Node sets of fresh services (``ZREVRANGE``, a few members each), or summaries of listed
services (``HGET``), read per round trip."""


class FirstPass(NamedTuple):
    """What the summaries told: the fresh services' reports and who needs a full read."""

    now_ms: int  #: the one clock reading every age of the pass is measured on
    fresh: list[HeartbeatReport]  #: services the summary shows fresh, with their nodes
    unsure: list[str]  #: services to read in full: not fresh, or an unreadable summary


class _Pass:
    """The reports and names one pass collects, each summary judged as it comes."""

    def __init__(self, now_ms: int, overrides: Overrides) -> None:
        self.now_ms = now_ms
        self.late_override, self.stale_override = overrides
        self.fresh: list[HeartbeatReport] = []
        self.with_nodes: list[int] = []
        self.unsure: list[str] = []

    def take(self, service: str, raw: Any) -> None:
        judged = None if raw is None else _judge(service, raw, self.now_ms,
                                                 self.late_override, self.stale_override)
        if judged is None:
            self.unsure.append(service)
            return
        report, has_nodes = judged
        if has_nodes:
            self.with_nodes.append(len(self.fresh))
        self.fresh.append(report)

    def done(self, client: Any, keys: Keys) -> FirstPass:
        _add_nodes(client, keys, self.fresh, self.with_nodes, self.now_ms)
        return FirstPass(self.now_ms, self.fresh, self.unsure)


def first_pass(client: Any, keys: Keys, overrides: Overrides = (None, None), *,
               cluster: bool = False, services_hint: int = 0) -> FirstPass:
    """Read every summary shard and judge each summary; raise on a store error.

    ``HGETALL`` of each shard (a third cheaper for Redis than ``HSCAN``) while the fleet
    (``services_hint``, the index's size) leaves shards well under 1,000 fields; beyond,
    ``HSCAN ... COUNT 1000``, so that no command returns much over 1,000 fields.
    """
    found = _Pass(_clock(client, cluster), overrides)
    seen: set[str] = set()
    scan = services_hint > SCAN_FROM_SERVICES
    pending: list[tuple[int, Any]] = [(shard, b"0") for shard in range(SUMMARY_SHARDS)]
    while pending:
        batch = pending[:SHARDS_PER_ROUND_TRIP]
        del pending[:SHARDS_PER_ROUND_TRIP]
        replies = execute_many(client, [
            ("HSCAN", keys.summary(shard), cursor, "COUNT", SCAN_COUNT) if scan
            else ("HGETALL", keys.summary(shard)) for shard, cursor in batch])
        for (shard, _), reply in zip(batch, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            cursor, pairs = _scan_reply(reply) if scan else (0, _pairs(reply))
            if cursor not in (b"0", "0", 0):
                pending.append((shard, cursor))
            for name, raw in pairs:
                service = as_text(name)
                if service in seen or not SERVICE_PATTERN.fullmatch(service):
                    continue  # a field seen twice (HSCAN may repeat), or not a valid name
                seen.add(service)
                found.take(service, raw)
    return found.done(client, keys)


def listed_pass(client: Any, keys: Keys, services: list[str],
                overrides: Overrides = (None, None), *, cluster: bool = False) -> FirstPass:
    """The same judgement for ``services`` only (valid names): one ``HGET`` each, 1,000 a
    round trip (a page of ``/api/heartbeats``)."""
    found = _Pass(_clock(client, cluster), overrides)
    for start in range(0, len(services), NODES_PER_ROUND_TRIP):
        part = services[start:start + NODES_PER_ROUND_TRIP]
        replies = execute_many(client, [("HGET", keys.summary_of(s), s) for s in part])
        for service, raw in zip(part, replies, strict=True):
            if isinstance(raw, BaseException):
                raise raw
            found.take(service, raw)
    return found.done(client, keys)


def _scan_reply(reply: Any) -> tuple[Any, list[tuple[Any, Any]]]:
    """``HSCAN``'s reply as (cursor, pairs)."""
    cursor, body = reply
    return cursor, _pairs(body)


def _pairs(body: Any) -> list[tuple[Any, Any]]:
    """A hash's fields and values as pairs: redis-py gives a dict, the probe's client a list."""
    if isinstance(body, dict):
        return list(body.items())
    return list(zip(body[0::2], body[1::2], strict=True))


def _clock(client: Any, cluster: bool) -> int:
    """One clock reading: the server's, or on a cluster the latest of the primaries'."""
    if cluster:
        times = client.execute_command("TIME", target_nodes=client.get_primaries())
        readings = times.values() if isinstance(times, dict) else [times]
        return max(redis_time_ms(reading) for reading in readings)
    (clock,) = execute_many(client, [("TIME",)])
    if isinstance(clock, BaseException):
        raise clock
    return redis_time_ms(clock)


def _judge(service: str, raw: Any, now_ms: int, late_override: float | None,
           stale_override: float | None) -> tuple[HeartbeatReport, bool] | None:
    """A fresh report and whether the service has nodes, or None: read it in full.

    Run for every service of the fleet: each check is one cheap expression.
    """
    try:
        data = loads(raw)
        ts_ms, interval_s, stale_after_s = data["ts_ms"], data["interval_s"], data["stale_after_s"]
        if (data["status"] != "ok" or type(ts_ms) is not int or type(data["seq"]) is not int
                or type(interval_s) not in _NUMBERS or type(stale_after_s) not in _NUMBERS
                or not 0 < interval_s <= stale_after_s < 1e9):
            return None
    except (ValueError, TypeError, KeyError):
        return None  # not a summary of ours: the full read judges the payload
    age_ms = now_ms - ts_ms
    if age_ms < -FUTURE_TOLERANCE_MS:
        return None
    thresholds = _thresholds(interval_s, stale_after_s, late_override, stale_override)
    age_s = age_ms / 1000 if age_ms > 0 else 0.0
    if age_s > thresholds.late_after_s or age_s > stale_after_s:
        # Not fresh; or fresh only by a caller's threshold beyond the payload's own stale
        # threshold, past which the retention (never shorter) may have ended it.
        return None
    message = data.get("message")
    if type(message) is not str:
        return None  # the views rely on a message: the full read says what is wrong
    kept = _MESSAGES.get(message)  # a fleet repeats a few messages: each kept once
    if kept is None and len(_MESSAGES) < 4096:
        _MESSAGES[message] = kept = message
    if kept is not None:
        data["message"] = kept
    has_nodes = data.pop("nodes", 0) == 1
    report = HeartbeatReport(service, State.FRESH, f"last heartbeat {age_s:.1f}s ago", age_s,
                             thresholds, data, now_ms)
    return report, has_nodes


_NUMBERS = (int, float)

_MESSAGES: dict[Any, Any] = {}
"""Equal messages of many summaries, kept once (a few thousand at most)."""


def _add_nodes(client: Any, keys: Keys, fresh: list[HeartbeatReport], with_nodes: list[int],
               now_ms: int) -> None:
    """Judge the worker nodes of the fresh services that have a node set, in place."""
    prefix = keys.prefix
    for start in range(0, len(with_nodes), NODES_PER_ROUND_TRIP):
        part = with_nodes[start:start + NODES_PER_ROUND_TRIP]
        replies = execute_many(client, [
            ("ZREVRANGE", f"{prefix}:{{{fresh[i].service}}}:nodes", 0, FLEET_NODES_LIMIT - 1,
             "WITHSCORES") for i in part])
        for i, raw in zip(part, replies, strict=True):
            if isinstance(raw, BaseException):
                raise raw
            if raw:
                fresh[i] = with_components(fresh[i], now_ms, None, _flat(raw))


def _flat(reply: list[Any]) -> list[Any]:
    """``ZREVRANGE ... WITHSCORES`` as the read script returns it: member, score, ...

    redis-py parses the reply into (member, score) pairs; the probe's client does not.
    """
    if not isinstance(reply[0], list | tuple):
        return reply
    flat: list[Any] = []
    for member, score in reply:
        flat += (member, f"{score:.0f}" if isinstance(score, float) else score)
    return flat


__all__ = ["FirstPass", "first_pass", "listed_pass"]
