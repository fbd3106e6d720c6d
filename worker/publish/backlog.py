"""The depth of the service's heartbeat queue in the broker, and how old its oldest message is.

Reported in every heartbeat (``backlog``), so a reader sees a queue that grows or is not
drained. On a Redis broker the queue is kombu's lists (the queue and its priority
sub-queues): one pipeline of ``LLEN`` and ``LINDEX -1`` (the oldest message: kombu pushes
on the left and pops on the right), whose ``published_at_ms`` header gives the age on
the Redis clock. On RabbitMQ a passive queue declare gives the depth; the age is unknown.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import redis

from worker.core.names import queue_lists
from worker.core.urls import redact


class Backlog(TypedDict):
    """Queue depth (messages waiting, not counting the one running) and the oldest's age."""

    depth: int | None
    oldest_age_ms: float | None
    error: str | None


def _published_at(raw: Any) -> float | None:
    try:
        value = json.loads(raw)["headers"]["published_at_ms"]
    except (TypeError, ValueError, KeyError):
        return None
    return float(value) if isinstance(value, int | float) else None


def redis_backlog(client: redis.Redis, queue: str, now_ms: float) -> Backlog:
    """Depth and oldest age of ``queue`` on a Redis broker (one round trip; never raises)."""
    lists = queue_lists(queue)
    try:
        pipe = client.pipeline(transaction=False)
        for name in lists:
            pipe.llen(name)
            pipe.lindex(name, -1)
        replies = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        return {"depth": None, "oldest_age_ms": None,
                "error": redact(f"{type(exc).__name__}: {exc}")[:200]}
    depth = sum(int(n) for n in replies[0::2])
    stamps = [t for t in (_published_at(raw) for raw in replies[1::2] if raw) if t is not None]
    oldest = round(max(now_ms - min(stamps), 0.0), 3) if stamps else None
    return {"depth": depth, "oldest_age_ms": oldest, "error": None}


def amqp_backlog(app: Any, queue: str) -> Backlog:
    """Depth of ``queue`` on RabbitMQ by a passive declare (never raises; age unknown)."""
    try:
        with app.connection_for_read() as conn:
            ok = conn.default_channel.queue_declare(queue=queue, passive=True)
    except Exception as exc:  # kombu raises many kinds; the heartbeat must not
        return {"depth": None, "oldest_age_ms": None,
                "error": redact(f"{type(exc).__name__}: {exc}")[:200]}
    return {"depth": int(ok.message_count), "oldest_age_ms": None, "error": None}
