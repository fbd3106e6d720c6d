"""``reader_client``: the probe's small client for one server, redis-py for Sentinel and
Cluster (which the small client doesn't speak), each with the reader's timeout."""

from __future__ import annotations

from typing import Any

import pytest

from worker.read.connect import reader_client
from worker.read.resp_client import ProbeClient


@pytest.mark.parametrize(("url", "tls"), [
    ("redis://reader:pw@cache.example:6390/3", False),
    ("rediss://cache.example:6390/3?ssl_cert_reqs=none", True),
    ("redis://cache.example:6390/3?cluster=false", False),
])
def test_one_server_gets_the_probe_client(url: str, tls: bool) -> None:
    """Built without connecting, for the URL's server and with the timeout given."""
    client = reader_client(url, 2.5)
    assert type(client) is ProbeClient
    assert (client.host, client.port, client.db, client.tls, client.timeout_s) == (
        "cache.example", 6390, 3, tls, 2.5)


@pytest.mark.parametrize("url", [
    "sentinel://s1:26379,s2:26379/0?master=mymaster",
    "redis://n1:7000/0?cluster=true",
    "rediss://n1:7000?cluster=yes&ssl_cert_reqs=none",
])
def test_sentinel_and_cluster_get_redis_py(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL as it is and the timeout go to ``make_client``; its client is handed back."""
    calls: list[tuple[Any, ...]] = []

    def make_client(*args: Any, **kwargs: Any) -> object:
        calls.append((args, kwargs))
        return calls

    monkeypatch.setattr("worker.core.redis_clients.make_client", make_client)
    assert reader_client(url, 2.5) is calls
    assert calls == [((url,), {"timeout_s": 2.5})]
