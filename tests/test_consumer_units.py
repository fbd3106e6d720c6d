"""The worker's consumer, in process: its reconnect pace, the refusals and role changes it
takes for a lost connection, its quiet log and the close that can't kill the worker.

A real ``HeartbeatConsumer`` is built on Celery's in-memory broker (no worker process);
its connections are small stubs, so each promise is seen on exact values and log lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.worker import loops
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from worker.core.settings import Settings
from worker.publish import consumer as consumer_module
from worker.publish.consumer import (
    BrokerRoleChanged,
    HeartbeatConsumer,
    RepeatedConnectErrors,
    _connection_error,
    _detached_close,
    _state_changes_as_lost_connection,
    changes_role,
    refusal_errors,
    refuses_writes,
    retry_max_s,
)
from worker.publish.install import install_heartbeat

CELERY_LOGGER = "celery.worker.consumer.consumer"
LOGGER = "worker.publish.consumer"


class FakeClock:
    """``time`` as the consumer sees it: a monotonic clock set by hand, sleeps recorded."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(consumer_module, "time", fake)
    return fake


def _quiet_filters() -> list[logging.Filter]:
    return [f for f in logging.getLogger(CELERY_LOGGER).filters
            if isinstance(f, RepeatedConnectErrors)]


@pytest.fixture
def no_quiet_filter() -> Iterator[None]:
    """Celery's consumer logger without this module's filter, before and after the test."""
    celery_logger = logging.getLogger(CELERY_LOGGER)
    before = _quiet_filters()
    for f in before:
        celery_logger.removeFilter(f)
    yield
    for f in _quiet_filters():
        celery_logger.removeFilter(f)
    for f in before:
        celery_logger.addFilter(f)


def _app(interval_s: str | None = None) -> Celery:
    app = Celery("consumer-units", broker="memory://")
    # Keep Celery's own reconnect handler to its promises (no pool, no deprecation notice).
    app.conf.worker_cancel_long_running_tasks_on_connection_loss = True
    app.conf.worker_enable_prefetch_count_reduction = False
    if interval_s is not None:
        install_heartbeat(app, Settings.from_env({"CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
                                                  "HEARTBEAT_INTERVAL_S": interval_s}))
    return app


def _consumer(app: Celery, **kwargs: Any) -> HeartbeatConsumer:
    return HeartbeatConsumer(lambda *_: None, app=app, hostname="units@host",
                             controller=SimpleNamespace(use_eventloop=False, state=None),
                             without_mingle=True, without_gossip=True,
                             without_heartbeat=True, **kwargs)


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


# -- the reconnect pace ---------------------------------------------------------------------

@pytest.mark.parametrize(("interval_s", "expected"), [
    (0.2, 0.5), (1.0, 0.5), (1.2, 0.6), (3.0, 1.5), (9.0, 4.5), (10.0, 5.0), (60.0, 5.0)])
def test_the_longest_wait_is_half_the_interval_between_half_a_second_and_five(
        interval_s: float, expected: float) -> None:
    """Both bounds and the half between them, each side of each bound."""
    assert retry_max_s(interval_s) == expected


def test_the_pace_comes_from_the_installed_settings_or_a_ten_second_interval() -> None:
    """The consumer reads its interval from the app it runs in; an app without the heartbeat
    installed is paced as the default interval."""
    consumer = HeartbeatConsumer.__new__(HeartbeatConsumer)
    consumer.app = _app("3")
    assert consumer._retry_max_s() == 1.5
    consumer.app = _app()
    assert consumer._retry_max_s() == 5.0


def test_ensure_connected_retries_at_once_then_every_half_interval() -> None:
    """kombu's back-off is replaced: 0.2 s first, then steps of 0.5 s up to half the
    interval; Celery's own handler and retry count still go through."""
    consumer = HeartbeatConsumer.__new__(HeartbeatConsumer)
    consumer.app = _app("3")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    conn = SimpleNamespace()

    def ensure_connection(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return conn

    conn.ensure_connection = ensure_connection
    assert consumer.ensure_connected(conn) is conn
    ((args, kwargs),) = calls
    assert args[1] == consumer.app.conf.broker_connection_max_retries
    assert {k: v for k, v in kwargs.items() if k != "callback"} == {
        "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.5}


# -- what the constructor adds to Celery's consumer -----------------------------------------

@pytest.mark.usefixtures("no_quiet_filter")
def test_the_consumer_quiets_celerys_logger_once_however_many_are_built() -> None:
    """One filter on Celery's consumer logger, not one per consumer built."""
    app = _app()
    _consumer(app)
    _consumer(app)
    filters = logging.getLogger(CELERY_LOGGER).filters
    assert len(_quiet_filters()) == 1
    assert None not in filters


def test_a_refused_write_counts_as_a_lost_connection() -> None:
    """The transport's own connection errors, then redis-py's two refusals, in that order."""
    app = _app()
    consumer = _consumer(app)
    known = tuple(app.connection_for_read().connection_errors)
    assert consumer.connection_errors == (*known, OutOfMemoryError, ReadOnlyError)


def test_the_event_loop_is_celerys_own_wrapped_to_turn_a_role_change_into_a_lost_connection(
        ) -> None:
    consumer = _consumer(_app())
    assert consumer.loop.__wrapped__ is loops.synloop
    assert consumer.loop is not loops.synloop


# -- the close that can't kill the worker ---------------------------------------------------

class _DetachedConnection:
    """A broken connection whose close fails as kombu's does on a detached transport."""

    connection_errors = ()
    channel_errors = ()

    def __init__(self) -> None:
        self.collected = 0

    def collect(self, **_: Any) -> None:
        self.collected += 1

    def close(self) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")


def test_a_connection_lost_with_an_unacknowledged_message_is_closed_quietly(
        caplog: pytest.LogCaptureFixture) -> None:
    consumer = _consumer(_app())
    broken = _DetachedConnection()
    consumer.connection = broken
    with caplog.at_level(logging.INFO):
        consumer.on_connection_error_after_connected(ConnectionError("lost"))
    assert consumer.connection is None and broken.collected == 1
    assert _records(caplog) == [(LOGGER, logging.WARNING,
                                 "the broker connection was lost with a message not yet "
                                 "acknowledged; kombu restores it after its visibility timeout "
                                 "('NoneType' object has no attribute 'hostname')")]


def test_no_connection_at_all_is_left_to_celery(caplog: pytest.LogCaptureFixture) -> None:
    consumer = _consumer(_app())
    consumer.connection = None
    consumer.on_connection_error_after_connected(ConnectionError("lost"))
    assert consumer.connection is None and _records(caplog) == []


def test_the_safe_close_returns_what_close_returns_and_lets_other_errors_through(
        caplog: pytest.LogCaptureFixture) -> None:
    def close() -> str:
        return "closed"

    safe = _detached_close(close)
    assert safe() == "closed" and safe.__wrapped__ is close  # type: ignore[attr-defined]

    def refused() -> None:
        raise ValueError("not the detached transport")

    with pytest.raises(ValueError, match=r"^not the detached transport$"):
        _detached_close(refused)()
    assert _records(caplog) == []

    def detached() -> str:
        raise AttributeError("gone")

    assert _detached_close(detached)() is None
    assert [m for *_, m in _records(caplog)] == [
        "the broker connection was lost with a message not yet acknowledged; kombu restores "
        "it after its visibility timeout (gone)"]


# -- connect: waiting while the broker refuses writes ---------------------------------------

class _Conn:
    """A connection whose registration with the event loop fails with ``error`` (if any)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.released = 0
        self.connection = object()
        self.registered: list[tuple[Any, Any]] = []
        self.transport = SimpleNamespace(register_with_event_loop=self._register)

    def _register(self, connection: Any, hub: Any) -> None:
        self.registered.append((connection, hub))
        if self.error is not None:
            raise self.error

    def release(self) -> None:
        self.released += 1


def _connecting(errors: list[BaseException | None], hub: Any = "hub"
                ) -> tuple[HeartbeatConsumer, list[_Conn], list[Any]]:
    consumer = HeartbeatConsumer.__new__(HeartbeatConsumer)
    consumer.app = _app("3")
    consumer.hub = hub
    consumer.amqheartbeat = 7
    conns = [_Conn(e) for e in errors]
    heartbeats: list[Any] = []

    def connection_for_read(heartbeat: Any = None) -> _Conn:
        heartbeats.append(heartbeat)
        return conns[len(heartbeats) - 1]

    consumer.connection_for_read = connection_for_read  # type: ignore[method-assign]
    return consumer, conns, heartbeats


def test_connect_waits_while_the_broker_refuses_writes_saying_so_once(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Each refused attempt is released, then the consumer sleeps half the interval; one
    line when the refusal starts (password masked), one when writes work again."""
    refusal = OutOfMemoryError("command not allowed (redis://:pw@broker:6379) " + "x" * 300)
    consumer, conns, heartbeats = _connecting([refusal, ReadOnlyError("READONLY"), None])
    with caplog.at_level(logging.INFO):
        assert consumer.connect() is conns[2]
    assert heartbeats == [7, 7, 7]
    assert [c.released for c in conns] == [1, 1, 0]
    assert [c.registered for c in conns] == [[(c.connection, "hub")] for c in conns]
    assert clock.slept == [1.5, 1.5]
    shown = ("command not allowed (redis://:***@broker:6379) " + "x" * 300)[:200]
    assert _records(caplog) == [
        (LOGGER, logging.ERROR, f"the broker refuses writes ({shown}); the worker waits and "
                                "retries every 1.5s"),
        (LOGGER, logging.WARNING, "the broker accepts writes again; the worker consumes")]


def test_connect_says_nothing_when_the_broker_accepts_at_once(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    consumer, conns, _ = _connecting([None])
    with caplog.at_level(logging.INFO):
        assert consumer.connect() is conns[0]
    assert conns[0].released == 0 and clock.slept == [] and _records(caplog) == []


def test_connect_without_an_event_loop_registers_nothing(clock: FakeClock) -> None:
    consumer, conns, _ = _connecting([RuntimeError("never raised")], hub=None)
    assert consumer.connect() is conns[0]
    assert conns[0].registered == [] and conns[0].released == 0


def test_connect_lets_any_other_error_through_after_releasing_the_connection(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    consumer, conns, _ = _connecting([RuntimeError("boom")])
    with pytest.raises(RuntimeError, match=r"^boom$"):
        consumer.connect()
    assert conns[0].released == 1 and clock.slept == [] and _records(caplog) == []


# -- Celery's "Cannot connect" line, once every 30 s ----------------------------------------

def _line(msg: str) -> logging.LogRecord:
    return logging.LogRecord(CELERY_LOGGER, logging.ERROR, "f", 1, msg, None, None)


def test_cannot_connect_is_let_through_at_once_then_every_thirty_seconds(
        clock: FakeClock) -> None:
    """At a clock of 0 the first line passes; 29.999 s later it is held, 30 s later it
    passes and the 30 s start again from there."""
    quiet = RepeatedConnectErrors()
    said = []
    for now in (0.0, 29.999, 30.0, 59.999, 60.0):
        clock.now = now
        said.append(quiet.filter(_line("consumer: Cannot connect to %s: %s.\n%s\n")))
    assert said == [True, False, True, False, True]
    clock.now = 60.5
    assert quiet.filter(_line("consumer: Connection to broker lost")) is True
    assert quiet.filter(_line("Consumer: Cannot connect")) is True  # not Celery's line


# -- the broker's change of role ------------------------------------------------------------

def test_changes_role_is_redis_unblocking_a_client_only() -> None:
    assert changes_role(ResponseError("UNBLOCKED force unblock from blocking operation"))
    assert not changes_role(ResponseError("ERR unknown command"))
    assert not changes_role(ValueError("UNBLOCKED"))
    assert not changes_role(ResponseError("the server said UNBLOCKED"))


def test_the_loop_raises_a_role_change_as_a_lost_connection() -> None:
    """The loop's arguments go through, its result comes back; UNBLOCKED becomes
    ``BrokerRoleChanged`` (a redis ConnectionError) with the cause kept and the text cut
    to 200 characters, passwords masked; any other error is raised as it is."""
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    failure: list[Exception] = []

    def loop(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        if failure:
            raise failure[0]
        return "done"

    consume = _state_changes_as_lost_connection(loop)
    assert consume(1, 2, key="v") == "done" and seen == [((1, 2), {"key": "v"})]
    unblocked = ResponseError("UNBLOCKED force unblock redis://:pw@h:1 " + "y" * 300)
    failure.append(unblocked)
    with pytest.raises(BrokerRoleChanged) as info:
        consume()
    assert str(info.value) == ("UNBLOCKED force unblock redis://:***@h:1 " + "y" * 300)[:200]
    assert info.value.__cause__ is unblocked
    assert isinstance(info.value, redis.exceptions.ConnectionError)
    other = ResponseError("ERR other")
    failure[0] = other
    with pytest.raises(ResponseError) as raised:
        consume()
    assert raised.value is other


def test_without_redis_py_a_role_change_is_a_plain_connection_error_and_nothing_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An AMQP-only install: no redis errors to add or to raise."""
    assert _connection_error() is redis.exceptions.ConnectionError
    assert refusal_errors() == (OutOfMemoryError, ReadOnlyError)
    monkeypatch.setitem(sys.modules, "redis.exceptions", None)
    assert _connection_error() is ConnectionError
    assert refusal_errors() == ()


# -- what counts as a refused write ---------------------------------------------------------

class _MyOutOfMemoryError(OutOfMemoryError):
    pass


@pytest.mark.parametrize(("exc", "refused"), [
    (OutOfMemoryError("anything"), True),
    (ReadOnlyError("anything"), True),
    (_MyOutOfMemoryError("a subclass"), True),
    (ResponseError("OOM command not allowed when used memory > 'maxmemory'."), True),
    (ResponseError("READONLY You can't write against a read only replica."), True),
    (ResponseError("ERR not READONLY"), False),
    (ResponseError("ERR max memory"), False),
    (RuntimeError("boom"), False),
])
def test_refuses_writes(exc: BaseException, refused: bool) -> None:
    """By class (or a parent's), by the memory limit's name anywhere, or a READONLY reply."""
    assert refuses_writes(exc) is refused
