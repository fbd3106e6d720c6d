"""Names beat and the worker agree on: the tasks, their queues, and the message headers."""

from __future__ import annotations

HEALTH_TASK = "health"
"""Name of the service heartbeat task: some worker of the service runs it."""

NODE_TASK = "health.node"
"""Name of the node heartbeat task: broadcast, so every worker of the service runs it."""

PUBLISHED_AT_HEADER = "published_at_ms"
"""Message header: publish time, epoch ms on the Redis clock (beat's estimate)."""

EXPIRES_HEADER = "heartbeat_expires_ms"
"""Message header: a heartbeat not started within this many ms of publish is discarded."""

SERVICE_HEADER = "heartbeat_service"
"""Message header: the service whose beat published it; another service's worker drops it."""

QUEUE_PREFIX = "heartbeat."
"""A service's heartbeat queue is ``heartbeat.{service}`` unless ``HEARTBEAT_QUEUE`` says."""

NODES_SUFFIX = ".nodes"
"""The fanout exchange of a queue's node heartbeats is ``{queue}.nodes``."""


def default_queue(service: str) -> str:
    """The queue a service's heartbeats travel on: one per service, never shared."""
    return QUEUE_PREFIX + service


def nodes_exchange(queue: str) -> str:
    """The fanout exchange that delivers a node heartbeat to every worker of ``queue``."""
    return queue + NODES_SUFFIX
