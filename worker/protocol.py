"""Names beat and the worker agree on: the task, its queue, and the message headers."""

from __future__ import annotations

HEALTH_TASK = "health"
"""Name of the heartbeat task."""

HEARTBEAT_QUEUE = "heartbeat"
"""The queue heartbeats travel on."""

PUBLISHED_AT_HEADER = "published_at_ms"
"""Message header: publish time, epoch ms on the Redis clock (beat's estimate)."""

EXPIRES_HEADER = "heartbeat_expires_ms"
"""Message header: a heartbeat not started within this many ms of publish is discarded."""
