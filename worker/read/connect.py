"""Settings and clients for the readers (check, status, watch, serve), from flags and env.

Flags override the environment variables the worker uses, so a probe configured like the
worker needs no flags at all. The client is the probe's own small one for ``redis://`` and
``rediss://`` (cheap to import) and redis-py for ``sentinel://``.
"""

from __future__ import annotations

import os
from typing import Any

from worker.core.names import validate_prefix, validate_service
from worker.core.settings import Settings
from worker.core.urls import is_cluster, validate_url


def reader_settings(*, redis_url: str | None = None, service: str | None = None,
                    prefix: str | None = None) -> Settings:
    """Settings from the environment with the CLI's flags applied; raises ``ConfigError``."""
    env = dict(os.environ)
    if redis_url is not None:
        env["HEARTBEAT_REDIS_URL"] = validate_url(redis_url, source="--redis")
    if service is not None:
        env["HEARTBEAT_SERVICE"] = validate_service(service, source="--service")
    if prefix is not None:
        env["HEARTBEAT_KEY_PREFIX"] = validate_prefix(prefix, source="--prefix")
    return Settings.from_env(env)


def reader_client(url: str, timeout_s: float) -> Any:
    """A client for the reader: the small probe client, or redis-py for Sentinel/Cluster."""
    if url.startswith("sentinel://") or is_cluster(url):
        from worker.core.redis_clients import make_client

        return make_client(url, timeout_s=timeout_s, source="--redis")
    from worker.read.resp_client import ProbeClient

    return ProbeClient(url, timeout_s=timeout_s)
