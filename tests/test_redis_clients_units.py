"""``make_client``: which redis-py client and options each URL form yields, built without
connecting (redis-py connects on the first command) or with its constructors recorded."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import redis
from redis.backoff import NoBackoff
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


COMMON = {"socket_timeout": 1.5, "socket_connect_timeout": 1.5, "socket_keepalive": True,
          "health_check_interval": 15, "decode_responses": False}
"""What every client gets: connect and reads bounded by the timeout, keepalive, a PING
before reusing a connection idle for 15 s, and bytes back unless asked for text."""


def _record(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[Any]:
    """Replaces ``target.name`` (a constructor) with one that records its arguments and
    hands back a marker object; returns the record."""
    calls: list[Any] = []

    def record(*args: Any, **kwargs: Any) -> object:
        calls.append((args, kwargs))
        return calls

    monkeypatch.setattr(target, name, record)
    return calls


def _shown(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with its ``retry`` shown as (backoff type, retries)."""
    retry = kwargs.get("retry")
    if retry is None:
        return kwargs
    return {**kwargs, "retry": (type(retry._backoff), retry._retries)}


@pytest.mark.parametrize(("options", "expected"), [
    ({}, COMMON),
    ({"decode_responses": True}, {**COMMON, "decode_responses": True}),
    ({"retries": 0}, {**COMMON, "retry": (NoBackoff, 0)}),
    ({"retries": 3}, {**COMMON, "retry": (NoBackoff, 3)}),
])
def test_a_redis_url_gives_redis_with_bounded_timeouts(
        options: dict[str, Any], expected: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``redis://`` and ``rediss://`` go to ``redis.Redis.from_url`` as they are; redis-py's
    own retry unless ``retries`` is given (then that many, without backoff)."""
    calls = _record(monkeypatch, redis.Redis, "from_url")
    url = "rediss://:pw@cache.example:6380/2?ssl_cert_reqs=none"
    assert make_client(url, timeout_s=1.5, **options) is calls
    [(args, kwargs)] = calls
    assert args == (url,)
    assert _shown(kwargs) == expected


def test_the_options_are_ones_redis_py_takes() -> None:
    """Built for real (no connection until the first command), the pool holds the URL's
    server and the options above."""
    client = make_client("redis://:pw@cache.example:6380/2", timeout_s=1.5, retries=2)
    kwargs = client.connection_pool.connection_kwargs
    assert type(client) is redis.Redis
    assert {k: kwargs[k] for k in (*COMMON, "host", "port", "db", "password")} == {
        **COMMON, "host": "cache.example", "port": 6380, "db": 2, "password": "pw"}
    assert (type(kwargs["retry"]._backoff), kwargs["retry"]._retries) == (NoBackoff, 2)


@pytest.mark.parametrize(("url", "passed"), [
    ("rediss://:pw@n1:7000/0?cluster=true&ssl_cert_reqs=none",
     "rediss://:pw@n1:7000/0?ssl_cert_reqs=none"),
    ("redis://n1:7000?cluster=1", "redis://n1:7000"),
])
def test_cluster_true_gives_redis_cluster_without_the_parameter(
        url: str, passed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``RedisCluster`` (which connects as it is built, so recorded here) gets the URL
    without ``cluster`` and the same options."""
    from redis.cluster import RedisCluster

    calls = _record(monkeypatch, RedisCluster, "from_url")
    assert make_client(url, timeout_s=1.5, retries=1) is calls
    [(args, kwargs)] = calls
    assert args == (passed,)
    assert _shown(kwargs) == {**COMMON, "retry": (NoBackoff, 1)}


class _Sentinel:
    """Records how ``Sentinel`` was built and which master was asked for."""

    made: ClassVar[list[_Sentinel]] = []

    def __init__(self, sentinels: list[tuple[str, int]], *,
                 sentinel_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.sentinels, self.sentinel_kwargs, self.kwargs = sentinels, sentinel_kwargs, kwargs
        self.master: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        _Sentinel.made.append(self)

    def master_for(self, *args: Any, **kwargs: Any) -> str:
        self.master = (args, kwargs)
        return "the master"


@pytest.mark.parametrize(("url", "hosts", "auth", "db"), [
    ("sentinel://s1:26379,sX:26380,[::1]:26381/3?master=mymaster",
     [("s1", 26379), ("sX", 26380), ("::1", 26381)], {}, 3),
    ("sentinel://reader:p%40ss@s1:5000,s2/?master=mymaster",
     [("s1", 5000), ("s2", 26379)], {"username": "reader", "password": "p@ss"}, 0),
    ("sentinel://:p@ss@s1:5000/0?master=mymaster", [("s1", 5000)], {"password": "p@ss"}, 0),
    ("sentinel://:@s1:5000?master=mymaster", [("s1", 5000)], {"password": ""}, 0),
    ("sentinel://s1:5000/0?master=other&master=mymaster&master=last",
     [("s1", 5000)], {}, 0),
])
def test_a_sentinel_url_asks_its_sentinels_for_the_master(
        url: str, hosts: list[tuple[str, int]], auth: dict[str, str], db: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sentinel (bracketed IPv6 unbracketed, 26379 by default) is asked with the
    timeout alone; the master's connections get the options, the URL's user and password
    (decoded; the password is the master's) and database; the last ``master=`` wins."""
    monkeypatch.setattr("worker.core.redis_clients.Sentinel", _Sentinel)
    monkeypatch.setattr(_Sentinel, "made", [])
    assert make_client(url, timeout_s=1.5) == "the master"
    [sentinel] = _Sentinel.made
    assert sentinel.sentinels == hosts
    assert sentinel.sentinel_kwargs == {"socket_timeout": 1.5, "socket_connect_timeout": 1.5}
    assert sentinel.kwargs == {**COMMON, **auth}
    master = "last" if "master=last" in url else "mymaster"
    assert sentinel.master == ((master,), {"db": db})


def test_a_sentinel_client_is_built_without_connecting() -> None:
    """For real: a client of the named master through a Sentinel pool."""
    client = make_client("sentinel://:pw@s1:26379/4?master=mymaster", timeout_s=1.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    kwargs = pool.connection_kwargs
    assert {k: kwargs[k] for k in (*COMMON, "db", "password")} == {
        **COMMON, "db": 4, "password": "pw"}
    assert _sentinels(client) == [("s1", 26379)]
