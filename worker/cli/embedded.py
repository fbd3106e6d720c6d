"""An in-process Redis-compatible server (fakeredis over TCP) for ``petsage-heartbeat run``.

fakeredis's stock TCP handler closes the connection after any error reply. Clients that
rely on error replies (redis-py's ``register_script`` gets ``NOSCRIPT`` on first use, and
so does kombu) would see a spurious "connection lost" on their first script call, so the
handler here answers the error and keeps the connection, as a real server does.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

import redis

try:
    from fakeredis import TcpFakeServer
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler
except ImportError:  # pragma: no cover - the [embedded] extra is not installed
    HAVE_FAKEREDIS = False
else:
    HAVE_FAKEREDIS = True

_POLL_INTERVAL_S = 0.01


def available() -> bool:
    """True when fakeredis (with lupa for Lua) is installed."""
    if not HAVE_FAKEREDIS:
        return False
    try:
        import lupa  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


if HAVE_FAKEREDIS:

    class _Handler(TCPFakeRequestHandler):
        """fakeredis's handler, but an error reply is a reply, not a reason to hang up."""

        def handle(self) -> None:
            shutdown: threading.Event = self.server._shutdown_event
            client = self.current_client
            while not shutdown.is_set():
                try:
                    if client.can_read():
                        try:
                            response: Any = client.read_response()
                        except redis.ResponseError as exc:
                            response = exc
                        self.writer.dump(response)
                        continue
                    data = self.rfile.readline()
                    if data == b"":
                        readable, _, _ = select.select([self.connection], [], [], _POLL_INTERVAL_S)
                        if not readable:
                            continue
                        data = self.rfile.readline()
                        if data == b"":
                            break
                    client.get_socket().sendall(data)
                except (ConnectionError, OSError):
                    break


class EmbeddedRedis:
    """A fakeredis TCP server on a free loopback port, served from a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not available():
            raise RuntimeError(
                "the embedded server needs: pip install 'petsage-heartbeat[embedded]'")
        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.host = host
        self.port = port
        self._server = TcpFakeServer((host, port))
        self._server.RequestHandlerClass = _Handler
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="embedded-redis", daemon=True)

    @property
    def url(self) -> str:
        """The URL other processes (and other terminals) use to reach it."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
