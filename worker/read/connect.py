"""The readers' client (check, status): the cheapest one that can reach the store.

The client is the probe's own small one for ``redis://`` and
``rediss://`` (cheap to import) and redis-py for ``sentinel://``.
"""

from __future__ import annotations

from typing import Any

from worker.core.urls import is_cluster


def reader_client(url: str, timeout_s: float) -> Any:
    """A client for the reader: the small probe client, or redis-py for Sentinel/Cluster."""
    if url.startswith("sentinel://") or is_cluster(url):
        from worker.core.redis_clients import make_client

        return make_client(url, timeout_s=timeout_s)
    from worker.read.resp_client import ProbeClient

    return ProbeClient(url, timeout_s=timeout_s)
