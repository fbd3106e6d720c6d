"""The helpers both Redis paths share: one round trip, error replies as values, TIME in
milliseconds, replies as text or bytes whatever was stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

import worker.publish
from worker.core.redis_io import (
    as_bytes,
    as_text,
    execute_many,
    is_cluster_client,
    lua_script,
    redis_time_ms,
)


class _ProbeClient:
    """Stands for the probe's own client: it runs a batch itself."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[Any, ...]]] = []

    def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.batches.append(list(commands))
        return ["reply"] * len(commands)


class _Recorder:
    """A redis-py-shaped client that records whether a pipeline was used."""

    def __init__(self, error: Exception | None = None, cluster: bool = False) -> None:
        self.single: list[tuple[Any, ...]] = []
        self.piped: list[tuple[Any, ...]] = []
        self.raise_on_error: list[bool] = []
        self.transaction: list[bool] = []
        self.error = error
        if cluster:
            self.nodes_manager = object()

    def execute_command(self, *args: Any) -> Any:
        self.single.append(args)
        if self.error is not None:
            raise self.error
        return "one"

    def pipeline(self, transaction: bool = True) -> _Recorder:
        self.transaction.append(transaction)
        return self

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.raise_on_error.append(raise_on_error)
        out, self.piped = [f"piped {args[0]}" for args in self.single], list(self.single)
        self.single = []
        return out


def test_the_probes_client_runs_the_batch_itself() -> None:
    probe = _ProbeClient()
    assert execute_many(probe, [("GET", "a"), ("TIME",)]) == ["reply", "reply"]
    assert probe.batches == [[("GET", "a"), ("TIME",)]]


def test_one_command_skips_the_pipeline_and_several_share_one() -> None:
    client = _Recorder()
    assert execute_many(client, [("GET", "a")]) == ["one"]
    assert client.single == [("GET", "a")] and client.transaction == []
    client = _Recorder()
    assert execute_many(client, [("GET", "a"), ("GET", "b")]) == ["piped GET", "piped GET"]
    assert client.piped == [("GET", "a"), ("GET", "b")]
    assert client.transaction == [False] and client.raise_on_error == [False]


def test_a_cluster_always_goes_through_a_pipeline() -> None:
    client = _Recorder(cluster=True)
    assert is_cluster_client(client) and not is_cluster_client(_Recorder())
    assert execute_many(client, [("GET", "a")]) == ["piped GET"]
    assert client.transaction == [False] and client.raise_on_error == [False]


def test_an_error_reply_is_a_value_and_any_other_error_is_raised() -> None:
    reply = redis.exceptions.ReadOnlyError("READONLY You can't write against a replica.")
    assert execute_many(_Recorder(error=reply), [("SET", "a", "1")]) == [reply]
    with pytest.raises(redis.exceptions.ConnectionError):
        execute_many(_Recorder(error=redis.exceptions.ConnectionError("gone")), [("GET", "a")])
    with pytest.raises(ValueError, match=r"^bad$"):
        execute_many(_Recorder(error=ValueError("bad")), [("GET", "a")])


def test_error_replies_in_a_real_pipeline_are_values_in_their_place() -> None:
    client = fakeredis.FakeRedis()
    client.set("s", "x")
    replies = execute_many(client, [("GET", "s"), ("LPUSH", "s", "y"), ("GET", "none")])
    assert replies[0] == b"x" and replies[2] is None
    assert isinstance(replies[1], redis.exceptions.ResponseError)


def test_as_text_and_as_bytes() -> None:
    assert as_text(b"caf\xc3\xa9") == "café"
    assert as_text(b"\xff") == "\ufffd"
    assert as_text(12) == "12" and as_text("x") == "x"
    assert as_bytes(b"\xff") == b"\xff" and as_bytes("é") == b"\xc3\xa9" and as_bytes(7) == b"7"


def test_lua_scripts_are_read_from_beside_their_package() -> None:
    beside = Path(worker.publish.__file__).with_name("publish.lua")
    assert lua_script("worker.publish", "publish.lua") == beside.read_text(encoding="utf-8")


def test_time_replies_in_milliseconds() -> None:
    assert redis_time_ms((b"1700000000", b"123999")) == 1_700_000_000_123
    assert redis_time_ms(("5", "999")) == 5000 and redis_time_ms([0, 1000]) == 1
