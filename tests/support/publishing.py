"""Writing heartbeats for reader tests: real ones through the store, or crafted ones by age."""

from __future__ import annotations

import json
from typing import Any

import redis

from worker.core.names import Keys
from worker.core.payload import DEFAULT_MESSAGE
from worker.core.redis_io import redis_time_ms
from worker.publish.store import HeartbeatStore


def publish(client: redis.Redis, service: str = "petsage", *, interval_s: float = 10,
            stale_after_s: float | None = None, status: str = "ok",
            keys: Keys | None = None, **extra: Any) -> None:
    """One real heartbeat through the store script (stamped with the server's clock)."""
    keys = keys or Keys()
    store = HeartbeatStore(client, keys, retention_s=3600, history_len=100)
    body = {
        "schema": 1, "service": service, "status": status, "message": DEFAULT_MESSAGE,
        "interval_s": interval_s,
        "stale_after_s": interval_s * 3 if stale_after_s is None else stale_after_s,
        "published_at": None, "queue_lag_ms": 3.0, "duration_ms": 1.0, "clock_offset_ms": 0.0,
        "worker": {"node": "test@host", "hostname": "host", "pid": 1}, "version": "test",
        "checks": {"redis": {"status": status, "latency_ms": 0.1}},
        **extra,
    }
    store.publish(service, body)


def backdate(client: redis.Redis, service: str, age_s: float, keys: Keys | None = None) -> None:
    """Rewrite the stored heartbeat's ts_ms to ``age_s`` before the server's clock now, in
    its summary too (as the publish script would have written them: together)."""
    keys = keys or Keys()
    data = json.loads(client.get(keys.latest(service)) or b"{}")
    data["ts_ms"] = redis_time_ms(client.time()) - int(age_s * 1000)
    client.set(keys.latest(service), json.dumps(data))
    summary = client.hget(keys.summary_of(service), service)
    if summary is not None:
        fields = json.loads(summary)
        fields["ts_ms"] = data["ts_ms"]
        client.hset(keys.summary_of(service), service, json.dumps(fields))
