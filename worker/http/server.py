"""uvicorn (its pure-Python ``h11`` protocol) with the limits ``serve`` needs.

uvicorn arms a timer only between requests on a kept-alive connection (``timeout_keep_alive``);
a connection that sends nothing, or sends a request's headers a byte at a time (slowloris),
is kept for ever, each holding a socket and a slot of ``limit_concurrency``. So the
protocol here also gives each request ``HEADER_TIMEOUT_S`` from its connection (or its first
byte, after a kept-alive request) to the end of its headers, then closes the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
"""Longest wait for a request's headers: from the connection (or the first byte of a
request on a kept-alive connection) to the blank line that ends them."""

KEEP_ALIVE_S = 5
"""Longest idle time of a kept-alive connection between two requests."""

MAX_CONNECTIONS = 64
"""Open connections (idle kept-alive ones too) beyond which uvicorn answers 503 at once."""

MAX_HEADER_BYTES = 16 * 1024
"""Largest request head (request line and headers); a larger one is refused with 400."""


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a request after a kept-alive one
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # a pipelined request's headers were in the buffer

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def run(app: Any, *, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, with the limits above."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, http=BoundedH11Protocol, log_level="warning",
                access_log=False, server_header=False, timeout_keep_alive=KEEP_ALIVE_S,
                limit_concurrency=MAX_CONNECTIONS, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                timeout_graceful_shutdown=5, ws="none", lifespan="off")
