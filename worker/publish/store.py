"""Publish one heartbeat: one atomic script, one round trip, on the Redis server's clock.

The script (``publish.lua``) stamps ``seq``, ``ts_ms`` and ``timestamp`` itself, so the
time that decides staleness is the server's, never the worker's. It refuses to move a
service's heartbeat backwards, sets the TTL on every write, caps the history stream,
updates the fleet index and the service's compact summary (what a fleet read needs to
tell fresh from not fresh, and to show a fresh service), and publishes the payload on
the events channel. On a Redis Cluster the index and the summary live in other slots:
they are written by two more commands, the summary never backwards (``summary.lua``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.core.errors import PayloadTooLargeError
from worker.core.names import Keys, validate_service
from worker.core.payload import MAX_PAYLOAD_BYTES, payload_problem
from worker.core.redis_io import is_cluster_client, lua_script
from worker.core.states import FUTURE_TOLERANCE_MS

if TYPE_CHECKING:
    import redis

PUBLISH_SCRIPT = lua_script(__package__, "publish.lua")
"""The Lua source of the write; loaded once per process."""

NODE_SCRIPT = lua_script(__package__, "node.lua")
"""The Lua source of a node heartbeat write."""

SUMMARY_SCRIPT = lua_script(__package__, "summary.lua")
"""The Lua source of a summary write on a Redis Cluster (never backwards)."""

SUMMARY_FIELDS = ("interval_s", "stale_after_s", "status", "message", "queue_lag_ms",
                  "duration_ms", "clock_offset_ms", "backlog")
"""The payload fields a summary keeps (with ``seq``, ``ts_ms``, ``timestamp``, the
worker's node and whether the service has a node set): what fleet views show of a fresh
service. A service that is not fresh is read in full."""

SUMMARY_MESSAGE_CHARS = 200
"""A longer message is cut in the summary (the latest payload keeps it whole)."""

STAMP_RESERVE_BYTES = 96
"""Room the script's ``seq``/``ts_ms``/``timestamp`` prefix takes in the size limit."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the store did with one heartbeat."""

    accepted: bool  #: False when a newer heartbeat was already stored
    seq: int  #: the stored seq (the new one if accepted)
    ts_ms: int  #: the stored ts_ms on the Redis clock


def encode_body(body: dict[str, Any]) -> str:
    """Serialise the payload body compactly; refuse NaN and anything over the size limit."""
    text = json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    if len(text.encode()) + STAMP_RESERVE_BYTES > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"heartbeat payload is {len(text.encode())} bytes; the limit is "
            f"{MAX_PAYLOAD_BYTES - STAMP_RESERVE_BYTES} (trim check messages)"
        )
    return text


_STAMPED = ("seq", "ts_ms", "timestamp")
"""Fields the script writes first: a body's own would come last and win for readers."""

_EPOCH = "1970-01-01T00:00:00.000+00:00"


def summary_fields(body: dict[str, Any], service: str) -> str:
    """The summary's fields of ``body`` as the tail of a compact JSON object: the script
    writes ``seq``, ``ts_ms``, ``timestamp`` and ``nodes`` first, then this.

    A body that readers would judge invalid (``payload_problem``: another schema, another
    service's name, no checks...), or that carries a stamped field of its own, gets no
    fields: its summary then shows nothing fresh, and readers judge its payload in full.
    """
    if any(name in body for name in _STAMPED) or payload_problem(
            {"seq": 1, "ts_ms": 0, "timestamp": _EPOCH, **body}, service) is not None:
        return "}"
    slim = {name: body[name] for name in SUMMARY_FIELDS if name in body}
    message = slim.get("message")
    if isinstance(message, str) and len(message) > SUMMARY_MESSAGE_CHARS:
        slim["message"] = message[:SUMMARY_MESSAGE_CHARS]
    worker = body.get("worker")
    if isinstance(worker, dict):
        slim["worker"] = {"node": worker.get("node")}
    text = json.dumps(slim, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return "," + text[1:]  # the script writes its fields first


class HeartbeatStore:
    """Writes heartbeats for any number of services through one redis-py client."""

    def __init__(self, client: redis.Redis, keys: Keys, *, retention_s: int,
                 history_len: int) -> None:
        self._client = client
        self._keys = keys
        self._retention_ms = int(retention_s * 1000)
        self._history_len = history_len
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._node_script = client.register_script(NODE_SCRIPT)
        self._summary_script = client.register_script(SUMMARY_SCRIPT)
        #: On a Redis Cluster the fleet index lives in another slot than the service's
        #: keys, so the script can't touch it: it is updated by a second command.
        self._cluster = is_cluster_client(client)

    def record_node(self, service: str, node: str, *, retention_s: int,
                    published_at_ms: float | None = None,
                    expires_ms: float | None = None) -> int | None:
        """Renew ``node``'s record among ``service``'s nodes; its ts_ms, or None if expired.

        One script on the Redis clock, which also judges the expiry, so that a node heartbeat
        that waited in a backlog never makes a stuck node look alive.
        """
        reply = self._node_script(
            keys=[self._keys.nodes(service)],
            args=[node, retention_s * 1000,
                  "" if published_at_ms is None else f"{published_at_ms:.0f}",
                  "" if expires_ms is None else f"{expires_ms:.0f}"])
        written, ts_ms = (int(x) for x in reply)
        return ts_ms if written else None

    def forget_node(self, service: str, node: str) -> None:
        """Remove ``node`` from ``service``'s nodes (a worker that shuts down cleanly)."""
        self._client.zrem(self._keys.nodes(service), node)

    def record_discard(self, service: str, *, published_at_ms: float, lag_ms: float) -> None:
        """Note that a heartbeat waited ``lag_ms`` in the queue and was discarded.

        Readers use it to tell a slow or backlogged worker from one that consumes nothing.
        """
        value = json.dumps({"published_at_ms": round(published_at_ms),
                            "lag_ms": round(lag_ms, 3)}, separators=(",", ":"))
        self._client.set(self._keys.discarded(service), value, px=self._retention_ms)

    def publish(self, service: str, body: dict[str, Any]) -> PublishResult:
        """Write one heartbeat of ``service``; ``body`` is the payload minus the stamped fields."""
        keys, args = self._script_call(service, body)
        self._before(service, args)
        return self._done(service, self._script(keys=keys, args=args))

    def publish_many(self, heartbeats: Sequence[tuple[str, dict[str, Any]]]
                     ) -> list[PublishResult]:
        """Write several heartbeats (service, body) in one round trip, each its own script.

        What a worker does once per heartbeat; a fleet is filled this way (``bench.fill``).
        On a Redis Cluster one script each, then the index and the summaries apart.
        """
        calls = [self._script_call(service, body) for service, body in heartbeats]
        if self._cluster:
            out = []
            for (service, _), (keys, args) in zip(heartbeats, calls, strict=True):
                self._before(service, args)
                out.append(self._done(service, self._script(keys=keys, args=args)))
            return out
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            self._script(keys=keys, args=args, client=pipe)
        return [self._done(service, reply)
                for (service, _), reply in zip(heartbeats, pipe.execute(), strict=True)]

    def _before(self, service: str, args: list[str | int]) -> None:
        """On a cluster, a heartbeat that is not ``ok`` (or has no summary fields) first
        removes the service's summary: it is written after the script, in another slot,
        and an ``ok`` summary left standing by a failure between the two would show the
        service fresh. Without one, readers judge its payload in full."""
        if self._cluster and (args[6] != "ok" or args[-1] == "}"):
            self._client.hdel(self._keys.summary_of(service), service)

    def _done(self, service: str, reply: list[Any]) -> PublishResult:
        """The script's reply as a result; on a cluster, the index and the summary written."""
        accepted, seq, ts_ms = (int(x) for x in reply[:3])
        if self._cluster and accepted:
            self._client.zadd(self._keys.index, {service: ts_ms}, gt=True)
            self._summary_script(keys=[self._keys.summary_of(service)],
                                 args=[service, reply[3], ts_ms, FUTURE_TOLERANCE_MS])
        return PublishResult(bool(accepted), seq, ts_ms)

    def _script_call(self, service: str, body: dict[str, Any]
                     ) -> tuple[list[str], list[str | int]]:
        validate_service(service)
        if not body:
            raise ValueError("a heartbeat body needs at least one field")
        text = encode_body(body)
        lag = body.get("queue_lag_ms")
        depth = (body.get("backlog") or {}).get("depth")
        keys = [self._keys.latest(service), self._keys.history(service),
                self._keys.nodes(service)]
        if not self._cluster:
            keys += (self._keys.index, self._keys.summary_of(service))
        return keys, [
            "," + text[1:], service, self._retention_ms, self._history_len, self._keys.events,
            FUTURE_TOLERANCE_MS, body.get("status", "ok"),
            "" if lag is None else f"{lag:.3f}", f"{body.get('duration_ms', 0.0):.3f}",
            "" if depth is None else int(depth), summary_fields(body, service),
        ]
