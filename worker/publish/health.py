"""The body of the ``health`` task, free of Celery so it can be tested and benchmarked alone.

It measures the store round trip (``TIME``, which also tells how far this host's clock is
from Redis's), runs the user checks, builds the payload and hands it to the store.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis

from worker.core.payload import DEFAULT_MESSAGE, SCHEMA, CheckResult, worst_status
from worker.core.redis_io import is_cluster_client, redis_time_ms
from worker.core.settings import Settings
from worker.core.version import __version__
from worker.publish.backlog import Backlog
from worker.publish.health_checks import DEFAULT_CHECK_TIMEOUT_S, run_user_checks
from worker.publish.store import HeartbeatStore, PublishResult


def iso_ms(epoch_ms: float) -> str:
    """Epoch milliseconds as ISO-8601 UTC with offset, millisecond precision."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def store_check(client: redis.Redis, key: str | None = None) -> tuple[CheckResult, float]:
    """Time one ``TIME`` round trip; return the result and Redis-minus-local clock offset (ms).

    Raises ``redis.RedisError`` when the store can't be asked: the write would fail too, so
    the task gives up after one timeout rather than two.
    """
    before_ms = time.time() * 1000
    started = time.perf_counter()
    if key is not None and is_cluster_client(client):
        # The clock of the node that owns the service's slot: the one its script stamps with.
        reply = client.time(target_nodes=client.get_node_from_key(key))  # type: ignore[attr-defined]
    else:
        reply = client.time()
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    midpoint_ms = before_ms + latency_ms / 2
    offset_ms = redis_time_ms(reply) - midpoint_ms
    return {"status": "ok", "latency_ms": latency_ms}, round(offset_ms, 3)


class Discarded(NamedTuple):
    """A heartbeat not started within its expiry (judged on the Redis clock): not written."""

    lag_ms: float


def build_body(settings: Settings, *, node: str, started_ms: float, finished_ms: float,
               published_at_ms: float | None, checks: dict[str, CheckResult],
               clock_offset_ms: float, backlog: Backlog | None = None,
               message: str = DEFAULT_MESSAGE) -> dict[str, Any]:
    """The payload minus what the store stamps (``seq``, ``ts_ms``, ``timestamp``).

    All hop times are on the Redis clock: ``published_at_ms`` as beat stamped it, the
    start and finish as this worker's clock plus its measured offset to Redis's.
    """
    status = worst_status([c["status"] for c in checks.values()])
    lag_ms = None if published_at_ms is None else round(max(started_ms - published_at_ms, 0), 3)
    if status != "ok" and message == DEFAULT_MESSAGE:
        bad = sorted(name for name, c in checks.items() if c["status"] != "ok")
        message = f"PetSage is {status}: check {', '.join(bad)} failed"
    return {
        "schema": SCHEMA,
        "service": settings.service,
        "status": status,
        "message": message,
        "interval_s": settings.interval_s,
        "stale_after_s": settings.stale_after_s,
        "published_at": None if published_at_ms is None else iso_ms(published_at_ms),
        "started_at": iso_ms(started_ms),
        "finished_at": iso_ms(finished_ms),
        "queue_lag_ms": lag_ms,
        "duration_ms": round(finished_ms - started_ms, 3),
        "clock_offset_ms": clock_offset_ms,
        "backlog": backlog,
        "worker": {"node": node, "hostname": socket.gethostname(), "pid": os.getpid()},
        "version": __version__,
        "checks": checks,
    }


def run_health(client: redis.Redis, store: HeartbeatStore, settings: Settings, *, node: str,
               published_at_ms: float | None = None, expires_ms: float | None = None,
               backlog: Callable[[float], Backlog] | None = None) -> PublishResult | Discarded:
    """Run the checks and publish one heartbeat; raises ``redis.RedisError`` if the write fails.

    ``published_at_ms`` is the publish time on the Redis clock (beat's stamp). A heartbeat
    whose lag exceeds ``expires_ms`` is discarded unwritten: after an outage, the backlog
    of old heartbeats must not make a dead pipeline look fresh.
    """
    local_start_ms = time.time() * 1000
    store_result, offset_ms = store_check(client, settings.keys.latest(settings.service))
    started_ms = local_start_ms + offset_ms
    if (published_at_ms is not None and expires_ms is not None
            and started_ms - published_at_ms > expires_ms):
        lag_ms = round(started_ms - published_at_ms, 3)
        store.record_discard(settings.service, published_at_ms=published_at_ms, lag_ms=lag_ms)
        return Discarded(lag_ms)
    checks: dict[str, CheckResult] = {"redis": store_result}
    checks.update(run_user_checks(min(DEFAULT_CHECK_TIMEOUT_S, settings.interval_s)))
    queue = None if backlog is None else backlog(time.time() * 1000 + offset_ms)
    body = build_body(settings, node=node, started_ms=started_ms,
                      finished_ms=time.time() * 1000 + offset_ms,
                      published_at_ms=published_at_ms, checks=checks,
                      clock_offset_ms=offset_ms, backlog=queue)
    return store.publish(settings.service, body)
