"""Beat's bound on a Redis broker's heartbeat queue, exactly: which messages are kept across
kombu's priority lists, the depth it returns, the one warning per outage, and another
queue's depth. fakeredis runs the real ``queue_bound.lua``; stubs fail the broker."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support.pipelines import Pipelines as _Pipelines
from tests.support.pipelines import fresh_pipelines
from worker.publish.queue_bound import QueueBound

Q = "hb"
SUB3, SUB6, SUB9 = "hb\x06\x163", "hb\x06\x166", "hb\x06\x169"
LOGGER = "worker.publish.queue_bound"


@pytest.fixture
def client() -> _Pipelines:
    return fresh_pipelines()


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


def test_the_queue_keeps_its_newest_ten_by_default(client: _Pipelines) -> None:
    client.lpush(Q, *[f"m{n}" for n in range(25)])  # m24 is the newest
    assert QueueBound(client, Q).trim() == 10
    assert client.lrange(Q, 0, -1) == [f"m{n}".encode() for n in range(24, 14, -1)]
    assert QueueBound(client, Q).trim() == 10  # at the bound: untouched
    assert client.llen(Q) == 10


def test_the_bound_spans_the_priority_lists_in_their_order(client: _Pipelines) -> None:
    """The queue's own list first, then each sub-queue: what is over the bound goes, the
    list that crosses it keeps its newest, the lists after it are deleted."""
    client.lpush(Q, "a1", "a2")
    client.lpush(SUB3, "b1", "b2")
    client.lpush(SUB6, "c1")
    client.lpush(SUB9, "d1")
    assert QueueBound(client, Q, max_messages=3).trim() == 3
    assert client.lrange(Q, 0, -1) == [b"a2", b"a1"]
    assert client.lrange(SUB3, 0, -1) == [b"b2"]
    assert not client.exists(SUB6) and not client.exists(SUB9)


def test_under_the_bound_nothing_is_dropped(client: _Pipelines) -> None:
    client.lpush(Q, "a")
    client.lpush(SUB9, "d")
    assert QueueBound(client, Q, max_messages=2).trim() == 2
    assert (client.llen(Q), client.llen(SUB9)) == (1, 1)
    assert QueueBound(client, "empty").trim() == 0


class _Script:
    """A registered script that records its calls and fails while ``error`` is set."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.calls: list[dict[str, Any]] = []

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        self.calls.append({"keys": keys, "args": args, "client": client})
        if self.error is not None:
            raise self.error
        return b"4"


class _ScriptClient:
    def __init__(self) -> None:
        self.script = _Script()

    def register_script(self, source: str) -> _Script:
        assert "LTRIM" in source
        return self.script


def test_the_script_gets_the_queues_lists_and_the_bound() -> None:
    stub = _ScriptClient()
    assert QueueBound(stub, Q, max_messages=7).trim() == 4  # type: ignore[arg-type]
    assert stub.script.calls == [{"keys": [Q, SUB3, SUB6, SUB9], "args": [7], "client": None}]


def test_a_failing_broker_is_no_depth_and_one_warning_per_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    stub = _ScriptClient()
    bound = QueueBound(stub, Q)  # type: ignore[arg-type]
    stub.script.error = ConnectionError("Error 111 connecting to redis://:pw@b:6379 "
                                        + "y" * 300)
    with caplog.at_level(logging.INFO):
        assert bound.trim() is None
        assert bound.trim() is None
        stub.script.error = None
        assert bound.trim() == 4
        stub.script.error = OSError("down again")
        assert bound.trim() is None
    said = "heartbeat queue not trimmed: " + ("ConnectionError: Error 111 connecting to "
                                              "redis://:***@b:6379 " + "y" * 300)[:200]
    assert _records(caplog) == [(logging.WARNING, said),
                                (logging.WARNING, "heartbeat queue not trimmed: OSError: "
                                                  "down again")]


def test_a_working_broker_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    stub = _ScriptClient()
    with caplog.at_level(logging.INFO):
        assert QueueBound(stub, Q).trim() == 4  # type: ignore[arg-type]
    assert _records(caplog) == []


def test_another_queues_depth_is_read_in_one_pipeline_without_multi(
        client: _Pipelines) -> None:
    client.lpush("jobs", "a", "b")
    client.lpush("jobs\x06\x169", "c")
    client.lpush(Q, "not counted")
    bound = QueueBound(client, Q)
    assert bound.depth("jobs") == 3
    assert bound.depth("none") == 0
    assert client.asked == [{"transaction": False, "shard_hint": None}] * 2


def test_another_queues_depth_is_unknown_when_the_broker_fails(client: _Pipelines) -> None:
    bound = QueueBound(client, Q)
    client.set("jobs", "not a list")
    assert bound.depth("jobs") is None
