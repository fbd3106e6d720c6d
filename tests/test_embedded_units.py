"""The embedded Redis-compatible server of ``run``, in process: served from a daemon thread
on a free loopback port (or the one given), its URL, an error reply that keeps the
connection, stopping, and the one line when the extra is not installed."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import redis

from worker.cli import embedded as embedded_mod
from worker.cli.embedded import EmbeddedRedis


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    started = EmbeddedRedis().start()
    yield started
    started.stop()


def test_available_with_fakeredis_and_lupa(monkeypatch: pytest.MonkeyPatch) -> None:
    assert embedded_mod.available() is True
    monkeypatch.setitem(sys.modules, "lupa", None)  # ``import lupa`` fails: no Lua
    assert embedded_mod.available() is False
    monkeypatch.delitem(sys.modules, "lupa")
    monkeypatch.setattr(embedded_mod, "HAVE_FAKEREDIS", False)
    assert embedded_mod.available() is False


def test_without_the_extra_the_server_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_mod, "available", lambda: False)
    with pytest.raises(RuntimeError) as caught:
        EmbeddedRedis()
    assert str(caught.value) == ("the embedded server needs: pip install "
                                 "'petsage-heartbeat[embedded]'")


def test_it_serves_on_a_free_loopback_port_from_a_daemon_thread(server: EmbeddedRedis) -> None:
    assert server.host == "127.0.0.1"
    assert server.port >= 1024  # a free port the system chose, not 0 or 1
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert server._thread.name == "embedded-redis" and server._thread.daemon is True
    assert server._thread.is_alive()
    # Each connection's thread is a daemon and stopping does not wait for them.
    assert (server._server.daemon_threads, server._server.block_on_close) == (True, False)
    assert server._server.server_address == ("127.0.0.1", server.port)
    client = redis.Redis.from_url(server.url)
    try:
        assert client.set("k", "v") is True and client.get("k") == b"v"
    finally:
        client.close()


def test_an_error_reply_keeps_the_connection(server: EmbeddedRedis) -> None:
    assert server._server.RequestHandlerClass is embedded_mod._Handler
    connection = redis.Connection(host=server.host, port=server.port, socket_timeout=10)
    try:
        connection.send_command("EVALSHA", "0" * 40, "0")
        with pytest.raises(redis.ResponseError, match="No matching script"):
            connection.read_response()
        connection.send_command("PING")  # on the same socket: not hung up on
        assert connection.read_response() in (b"PONG", "PONG")
    finally:
        connection.disconnect()


def test_a_given_port_is_used_and_stop_closes_it() -> None:
    first = EmbeddedRedis().start()
    port = first.port
    first.stop()
    second = EmbeddedRedis(port=port).start()
    try:
        assert second.port == port and second.url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        assert client.ping() is True
        client.close()
    finally:
        second.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2).ping()
