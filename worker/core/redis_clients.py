"""Build redis-py clients from validated URLs, with timeouts that bound every call.

The worker, ``run`` and the HTTP server use these; the ``check`` probe has its own small
client (``worker.read.resp_client``) so that it doesn't pay for importing redis-py.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker.core.urls import is_cluster, without_param

HEALTH_CHECK_INTERVAL_S = 15
"""An idle pooled connection is PINGed before reuse after this long (catches half-open ones)."""


def make_client(url: str, *, timeout_s: float, decode_responses: bool = False,
                retries: int | None = None) -> redis.Redis:
    """A redis-py client for ``url`` whose connect and reads give up after ``timeout_s``.

    ``url`` is one that ``Settings`` validated (it is not checked again here).

    ``rediss://`` verifies the server certificate unless the URL says
    ``ssl_cert_reqs=none``; pass a CA bundle with ``?ssl_ca_certs=/path/ca.pem``.
    ``sentinel://h1:26379,h2:26379/0?master=NAME`` asks the sentinels for the master.
    ``redis://node:7000/0?cluster=true`` is a Redis Cluster (``RedisCluster``).
    ``retries`` replaces redis-py's default retry on connection errors (0: fail at once).
    """
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "decode_responses": decode_responses,
    }
    if retries is not None:
        common["retry"] = Retry(NoBackoff(), retries)
    parts = urlsplit(url)
    if is_cluster(url):
        from redis.cluster import RedisCluster

        # Not a subclass of redis.Redis, but it speaks the same commands (and scripts,
        # pipelines, pub/sub) for everything this package sends.
        return cast(redis.Redis, RedisCluster.from_url(without_param(url, "cluster"), **common))
    if parts.scheme != "sentinel":
        # redis-py hands a query parameter it doesn't know to the connection, which refuses
        # it when it connects: "cluster=false" is ours.
        return redis.Redis.from_url(without_param(url, "cluster"), **common)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    hosts = []
    for hostport in parts.netloc.rpartition("@")[2].split(","):
        host, sep, port = hostport.rpartition(":")
        if not sep or hostport.endswith("]"):  # no port: "h1" or "[::1]"
            host, port = hostport, ""
        hosts.append((host.strip("[]"), int(port or 26379)))
    auth: dict[str, Any] = {}
    if parts.password is not None:
        auth["password"] = unquote(parts.password)
    if parts.username:
        auth["username"] = unquote(parts.username)
    db = int(parts.path.strip("/") or 0)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        hosts, sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
        **common, **auth)
    master: redis.Redis = sentinel.master_for(query["master"], db=db)  # type: ignore[no-untyped-call]
    return master
