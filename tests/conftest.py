"""Fixtures: fakeredis for fast unit tests, real redis-server processes for claims about Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from tests.support.helpers import Proc, RedisServer
from tests.support.processes import kill_all, processes_left, wait_gone
from worker.publish import health_checks

LEFT_GRACE_S = 5.0
"""How long processes still running at the end of the session get to exit on their own."""


@pytest.fixture(scope="session", autouse=True)
def _no_process_left() -> Iterator[None]:
    """Fails the run if a process started by a test is still running at the end.

    Set up before any other session fixture, so torn down after all of them (the session's
    redis-server is gone by then). Looks at every process started through
    ``tests.support.processes`` and, as a safety net, every descendant of pytest in /proc;
    kills what is left and names it."""
    yield
    left = processes_left()
    still = wait_gone([p.pid for p in left], LEFT_GRACE_S)
    left = [p for p in processes_left() if p.pid in still]
    if left:
        kill_all(left)
        pytest.fail("processes started by tests were still running at the end of the session "
                    "(now killed):\n" + "\n".join(f"  {p}" for p in left), pytrace=False)


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    """A fresh in-memory fake server (Lua runs through lupa)."""
    return fakeredis.FakeRedis()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests that kill Redis start their own."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def real(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's real redis-server, emptied before each test."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to kill and restart."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Proc]]:
    """Subprocesses started by a test; all stopped (process groups killed) at the end."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop(timeout_s=5)


@pytest.fixture(autouse=True)
def _clean_check_registry() -> Iterator[None]:
    """Tests that register checks don't leak them into other tests."""
    before = health_checks.registered_checks()
    yield
    for name in health_checks.registered_checks():
        if name not in before:
            health_checks.unregister_check(name)


SERVER_FIXTURES = frozenset({"redis_server", "own_redis", "procs", "cluster", "amqp_url"})
"""Fixtures that start redis-server, RabbitMQ or Celery processes (directly or not)."""


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """An id without ``::`` or brackets: a node id holding them can't be selected again
    (``pytest 'tests/x.py::test[a::b]'`` is a usage error), which the mutation run does."""
    text = val.decode(errors="replace") if isinstance(val, bytes) else val
    if isinstance(text, str) and ("::" in text or "[" in text or "]" in text):
        while "::" in text:
            text = text.replace("::", ":_:")
        return text.replace("[", "(").replace("]", ")")
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true",
                     help="run only the fast tests: none that starts redis-server, "
                          "RabbitMQ or Celery processes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts servers ``servers``; ``--fast`` leaves those out."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_real_redis = callspec is not None and "redis-server" in callspec.params.values()
        if (item.get_closest_marker("e2e") or on_real_redis
                or SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.servers)
    if config.getoption("--fast"):
        slow = [item for item in items if item.get_closest_marker("servers")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("servers")]
