"""The heartbeat queue's backlog, exactly: its depth across kombu's priority lists, the
oldest message's age from its header, the errors on one line, and RabbitMQ's passive
declare. fakeredis holds the lists; stubs fail the broker or stand for kombu."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from tests.support.pipelines import Pipelines as _Pipelines
from tests.support.pipelines import fresh_pipelines
from worker.publish.backlog import _published_at, amqp_backlog, redis_backlog

Q = "hb"
SUB3, SUB6, SUB9 = "hb\x06\x163", "hb\x06\x166", "hb\x06\x169"


def _message(published_at_ms: Any = None, **headers: Any) -> str:
    if published_at_ms is not None:
        headers["published_at_ms"] = published_at_ms
    return json.dumps({"body": "e30=", "headers": headers})


@pytest.fixture
def client() -> _Pipelines:
    return fresh_pipelines()


# -- the published_at_ms header -------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (_message(1_700_000_000_123), 1_700_000_000_123.0),
    (_message(12.5).encode(), 12.5),
    (_message("12"), None),
    (_message(None), None),  # no header
    (json.dumps({"headers": {"published_at_ms": None}}), None),
    (json.dumps({"headers": None}), None),
    (json.dumps({"body": "e30="}), None),
    ("[]", None),
    ("null", None),
    ("not json", None),
    (b"\xff", None),
    (None, None),
])
def test_published_at_is_the_headers_number_or_nothing(raw: Any, expected: float | None
                                                      ) -> None:
    got = _published_at(raw)
    assert got == expected and type(got) is type(expected)


# -- on a Redis broker ----------------------------------------------------------------------

def test_the_depth_counts_every_priority_list_and_the_age_is_the_oldest_messages(
        client: _Pipelines) -> None:
    """kombu pushes on the left, so each list's oldest is its last; the age is from the
    oldest of all lists, rounded to the microsecond, in one pipeline without MULTI."""
    for stamp in (1000, 2000, 3000):  # the oldest first, as kombu pushes them
        client.lpush(Q, _message(stamp))
    client.lpush(SUB3, _message(500))
    client.lpush(SUB3, _message(4000))
    client.lpush(SUB9, _message())  # no stamp: counted, not aged
    assert redis_backlog(client, Q, 10_000.1234567) == {
        "depth": 6, "oldest_age_ms": 9500.123, "error": None}
    assert client.asked == [{"transaction": False, "shard_hint": None}]


def test_only_the_last_message_of_each_list_is_read(client: _Pipelines) -> None:
    client.lpush(Q, _message(1000), _message(2000))
    client.lpush(SUB6, "not json")
    assert redis_backlog(client, Q, 5000) == {
        "depth": 3, "oldest_age_ms": 4000.0, "error": None}


def test_a_stamp_ahead_of_now_is_an_age_of_zero(client: _Pipelines) -> None:
    client.lpush(Q, _message(7000))
    assert redis_backlog(client, Q, 6000) == {"depth": 1, "oldest_age_ms": 0.0, "error": None}
    assert redis_backlog(client, Q, 7000.25) == {
        "depth": 1, "oldest_age_ms": 0.25, "error": None}


def test_an_empty_queue_or_one_without_stamps_has_no_age(client: _Pipelines) -> None:
    assert redis_backlog(client, Q, 1000) == {"depth": 0, "oldest_age_ms": None, "error": None}
    client.lpush(SUB9, "junk", _message())
    assert redis_backlog(client, Q, 1000) == {"depth": 2, "oldest_age_ms": None, "error": None}


class _Failing:
    """A client whose pipeline fails as the broker does."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def pipeline(self, transaction: bool = True) -> Any:
        def execute() -> Any:
            raise self.error

        return SimpleNamespace(llen=lambda name: None, lindex=lambda name, at: None,
                               execute=execute)


@pytest.mark.parametrize("error", [
    redis.ConnectionError("Error 111 connecting to redis://:pw@broker:6379/0. " + "z" * 300),
    ConnectionRefusedError("Error 111 connecting to redis://:pw@broker:6379/0. " + "z" * 300),
])
def test_a_failing_broker_is_an_unknown_backlog_with_a_short_masked_error(
        error: BaseException) -> None:
    expected = (f"{type(error).__name__}: Error 111 connecting to redis://:***@broker:6379/0. "
                + "z" * 300)[:200]
    assert redis_backlog(_Failing(error), Q, 1000) == {  # type: ignore[arg-type]
        "depth": None, "oldest_age_ms": None, "error": expected}


def test_errors_other_than_the_brokers_are_raised() -> None:
    with pytest.raises(KeyError):
        redis_backlog(_Failing(KeyError("bug")), Q, 1000)  # type: ignore[arg-type]


# -- on RabbitMQ ----------------------------------------------------------------------------

class _Amqp:
    """An app whose read connection declares queues through ``declare`` (or fails)."""

    def __init__(self, declare: Any) -> None:
        self.declared: list[dict[str, Any]] = []
        self.closed = 0
        self._declare = declare

    @contextmanager
    def connection_for_read(self) -> Iterator[Any]:
        def queue_declare(**kwargs: Any) -> Any:
            self.declared.append(kwargs)
            return self._declare()

        try:
            yield SimpleNamespace(default_channel=SimpleNamespace(queue_declare=queue_declare))
        finally:
            self.closed += 1


def test_rabbitmq_gives_the_depth_by_a_passive_declare_and_no_age() -> None:
    app = _Amqp(lambda: SimpleNamespace(queue="hb", message_count=4, consumer_count=1))
    assert amqp_backlog(app, "hb") == {"depth": 4, "oldest_age_ms": None, "error": None}
    assert app.declared == [{"queue": "hb", "passive": True}] and app.closed == 1


def test_a_failing_rabbitmq_is_an_unknown_depth_with_a_short_masked_error() -> None:
    def refuse() -> Any:
        raise LookupError("NOT_FOUND amqp://guest:pw@rabbit:5672// " + "q" * 300)

    assert amqp_backlog(_Amqp(refuse), "hb") == {
        "depth": None, "oldest_age_ms": None,
        "error": ("LookupError: NOT_FOUND amqp://guest:***@rabbit:5672// " + "q" * 300)[:200]}
