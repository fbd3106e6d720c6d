"""``serve``'s HTTP protocol in process, on a transport of its own and a loop that records
its timers: the header deadline armed at the connection and at a kept-alive request's first
byte, kept (not re-armed) while headers trickle in, disarmed once they are in, closing only
an idle connection; and the limits ``run`` hands uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import h11
import pytest
import uvicorn
from uvicorn.server import ServerState

from worker.http import server
from worker.http.server import BoundedH11Protocol


class Transport(asyncio.Transport):
    """Records what the protocol writes and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closes = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closes += 1
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Loop:
    """A real event loop whose ``call_later`` calls are recorded."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timers: list[tuple[float, Callable[[], None], asyncio.TimerHandle]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        handle = self.loop.call_later(delay, callback)
        self.timers.append((delay, callback, handle))
        return handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def loop() -> Iterator[Loop]:
    real = asyncio.new_event_loop()
    yield Loop(real)
    real.close()


def _protocol(loop: Loop) -> tuple[BoundedH11Protocol, Transport]:
    config = uvicorn.Config(_app, http=BoundedH11Protocol, log_level="warning",
                            lifespan="off", ws="none")
    proto = BoundedH11Protocol(config, ServerState(), {}, _loop=loop)  # type: ignore[arg-type]
    transport = Transport()
    proto.connection_made(transport)
    return proto, transport


def _answer(proto: BoundedH11Protocol, loop: Loop) -> None:
    """Let the app answer every request handed to it."""
    loop.loop.run_until_complete(asyncio.gather(*proto.tasks))


HEAD = b"GET /system/health HTTP/1.1\r\nHost: localhost\r\n"


def test_the_deadline_runs_from_the_connection_to_the_end_of_the_headers(loop: Loop) -> None:
    proto, transport = _protocol(loop)
    assert [(delay, callback) for delay, callback, _ in loop.timers] == [
        (10.0, proto._too_slow)]
    (_, _, timer), = loop.timers
    assert proto._header_timer is timer
    proto.data_received(HEAD[:10])
    proto.data_received(HEAD[10:])  # still no blank line: the same deadline, not a new one
    assert len(loop.timers) == 1 and proto._header_timer is timer and not timer.cancelled()
    proto.data_received(b"\r\n")
    assert timer.cancelled() and proto._header_timer is None
    _answer(proto, loop)
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert proto.conn.their_state is h11.IDLE and proto._header_timer is None
    assert [delay for delay, _, _ in loop.timers] == [10.0, 5]  # uvicorn's keep-alive
    # A kept-alive connection: the next request's first byte starts its deadline.
    proto.data_received(b"G")
    delay, callback, second = loop.timers[-1]
    assert (delay, callback) == (10.0, proto._too_slow) and proto._header_timer is second
    proto.data_received(HEAD[1:] + b"\r\n")
    assert second.cancelled() and proto._header_timer is None
    assert len(loop.timers) == 3
    _answer(proto, loop)
    proto.connection_lost(None)


def test_a_connection_lost_cancels_its_deadline(loop: Loop) -> None:
    proto, _ = _protocol(loop)
    (_, _, timer), = loop.timers
    proto.connection_lost(None)
    assert timer.cancelled() and proto._header_timer is None


def test_the_deadline_closes_an_idle_connection_once(loop: Loop) -> None:
    proto, transport = _protocol(loop)
    proto.data_received(HEAD)
    (_, fire, _), = loop.timers
    fire()
    assert transport.closes == 1 and proto._header_timer is None
    fire()  # already closing: not closed again
    assert transport.closes == 1
    proto.connection_lost(None)
    assert transport.closes == 2  # uvicorn's own close on a clean loss


def test_the_deadline_spares_a_request_whose_headers_are_in(loop: Loop) -> None:
    """A deadline that fires late (its request's headers arrived meanwhile) closes nothing."""
    proto, transport = _protocol(loop)
    (_, fire, _), = loop.timers
    proto.data_received(HEAD + b"\r\n")
    fire()
    assert transport.closes == 0
    _answer(proto, loop)


def test_run_hands_uvicorn_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    server.run(_app, host="127.0.0.1", port=9808)
    assert calls == [((_app,), {
        "host": "127.0.0.1", "port": 9808, "http": BoundedH11Protocol, "log_level": "warning",
        "access_log": False, "server_header": False, "timeout_keep_alive": 5,
        "limit_concurrency": 64, "h11_max_incomplete_event_size": 16384,
        "timeout_graceful_shutdown": 5, "ws": "none", "lifespan": "off"})]
