"""Telling a Redis Cluster client from a single-server one, without importing redis-py."""

from __future__ import annotations

from typing import Any


def is_cluster_client(client: Any) -> bool:
    """True for redis-py's ``RedisCluster`` (checked by shape, so readers import nothing)."""
    return hasattr(client, "nodes_manager")
