"""``make_client``: which redis-py client and options each URL form yields, built without
connecting (redis-py connects on the first command) or with its constructors recorded."""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from worker.core.redis_clients import make_client
from worker.core.urls import validate_url


def _sentinels(client: redis.Redis) -> list[tuple[str, int]]:
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    kwargs = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    return [(k["host"], k["port"]) for k in kwargs]


@pytest.mark.parametrize(("url", "hosts"), [
    ("sentinel://s1,s2:5000/0?master=mymaster", [("s1", 26379), ("s2", 5000)]),
    ("sentinel://[::1],[fe80::2]:5000/0?master=mymaster", [("::1", 26379), ("fe80::2", 5000)]),
    ("sentinel://:pw@s1/0?master=mymaster", [("s1", 26379)]),
])
def test_a_sentinel_without_a_port_is_asked_on_26379(url: str,
                                                     hosts: list[tuple[str, int]]) -> None:
    """The URL check accepts a sentinel host without a port (as it does a Redis host); the
    client asks it on Sentinel's port, 26379. (It used to take the host for the port and
    fail with a ``ValueError``.)"""
    assert validate_url(url, source="--redis") == url
    assert _sentinels(make_client(url, timeout_s=1)) == hosts


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6390/0?cluster=false",
                                 "rediss://127.0.0.1:6390/0?cluster=no&ssl_cert_reqs=none"])
def test_cluster_false_is_not_passed_to_redis_py(url: str) -> None:
    """``cluster=false`` is accepted by the URL check and means a single server; redis-py
    hands a query parameter it doesn't know to the connection, which then refused to
    connect (``TypeError: ... unexpected keyword argument 'cluster'``)."""
    assert validate_url(url, source="--redis") == url
    kwargs = make_client(url, timeout_s=1).connection_pool.connection_kwargs
    assert "cluster" not in kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 0)
