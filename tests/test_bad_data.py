"""Hostile stored values (Hypothesis): the reader says ``invalid``, never raises, reads at most
16 KiB of the value and answers within its time budget, on a real redis-server."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import RedisServer
from tests.support.publishing import publish
from worker import State, read_heartbeat
from worker.core.names import Keys
from worker.core.payload import MAX_PAYLOAD_BYTES
from worker.read.fleet import read_fleet
from worker.read.resp_client import ProbeClient

KEY = Keys().latest("petsage")
REQUIRED = ["seq", "ts_ms", "timestamp", "schema", "service", "status", "message",
            "interval_s", "stale_after_s", "checks"]
BUDGET_S = 0.5
MARKER_AND_OVERHEAD_BYTES = 4096 + 1024
"""What a read may transfer besides at most 16 KiB of the value: the beat marker (4 KiB at
most) and the replies' framing."""


def valid_payload(now_ms: int) -> dict[str, Any]:
    return {"seq": 3, "ts_ms": now_ms, "timestamp": "2026-11-26T00:00:00.000+00:00",
            "schema": 1, "service": "petsage", "status": "ok", "message": "m",
            "interval_s": 10, "stale_after_s": 30, "checks": {}}


WRONG_TYPES = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers()),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def broken_payloads(draw: st.DrawFn) -> bytes:
    """A JSON payload broken in one of the ways a reader must survive."""
    data = valid_payload(1_795_000_000_000)
    kind = draw(st.sampled_from(["missing", "wrong-type", "ts", "number", "schema", "status"]))
    if kind == "missing":
        for name in draw(st.lists(st.sampled_from(REQUIRED), min_size=1, unique=True)):
            del data[name]
        data.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(),
                                         max_size=3)))  # extra fields don't make it valid
    elif kind == "wrong-type":
        name = draw(st.sampled_from(REQUIRED))
        value = draw(WRONG_TYPES)
        if name in ("checks",) and isinstance(value, dict):
            value = [value]
        if name in ("timestamp", "service", "status", "message") and isinstance(value, str):
            value = [value]
        data[name] = value
    elif kind == "ts":
        data["ts_ms"] = draw(st.sampled_from([1e308, -1, -10**15, 2**63, 10**17, 1.5]))
    elif kind == "number":
        text = json.dumps(data).replace('"interval_s": 10', '"interval_s": '
                                        + draw(st.sampled_from(["NaN", "Infinity", "-Infinity",
                                                                "1e999"])))
        return text.encode()
    elif kind == "schema":
        data["schema"] = draw(st.integers().filter(lambda n: n != 1))
    else:
        data["status"] = draw(st.text(max_size=10).filter(lambda s: s not in ("ok", "degraded",
                                                                              "error")))
    return json.dumps(data, allow_nan=True).encode()


VALUES = st.one_of(
    st.binary(min_size=1, max_size=20_000),
    st.binary(min_size=1, max_size=64).map(lambda b: b"\xff\xfe" + b),  # invalid UTF-8
    st.text(min_size=1, max_size=200).filter(lambda t: not t.strip().startswith("{"))
    .map(str.encode),
    broken_payloads(),
)


def _out_bytes(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_net_output_bytes"])


def _judge(server: RedisServer, admin: redis.Redis) -> State:
    # Each INFO reply is counted by the next reading: measure one, and take it off.
    first = _out_bytes(admin)
    before = _out_bytes(admin)
    info_reply = before - first
    started = time.monotonic()
    with ProbeClient(server.url, timeout_s=2) as probe:
        report = read_heartbeat(probe, "petsage")
    elapsed = time.monotonic() - started
    sent = _out_bytes(admin) - before - info_reply
    assert sent <= MAX_PAYLOAD_BYTES + MARKER_AND_OVERHEAD_BYTES, sent
    assert elapsed < BUDGET_S
    redis_py = read_heartbeat(server.client(), "petsage")
    assert redis_py.state is report.state
    return report.state


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=VALUES)
def test_any_garbage_value_reads_as_invalid(redis_server: RedisServer, value: bytes) -> None:
    admin = redis_server.client()
    admin.set(KEY, value)
    assert _judge(redis_server, admin) is State.INVALID


@pytest.mark.parametrize("kind", ["hash", "list", "set", "zset", "stream"])
def test_other_redis_types_at_the_key_are_invalid(redis_server: RedisServer, real: redis.Redis,
                                                  kind: str) -> None:
    {"hash": lambda: real.hset(KEY, "a", "1"), "list": lambda: real.rpush(KEY, "a"),
     "set": lambda: real.sadd(KEY, "a"), "zset": lambda: real.zadd(KEY, {"a": 1}),
     "stream": lambda: real.xadd(KEY, {"a": "1"})}[kind]()
    assert _judge(redis_server, real) is State.INVALID


def test_a_10_mb_value_is_invalid_and_never_transferred(redis_server: RedisServer,
                                                        real: redis.Redis) -> None:
    real.set(KEY, b"{" + b" " * (10 * 1024 * 1024) + b"}")
    assert _judge(redis_server, real) is State.INVALID
    real.zadd(Keys().index, {"petsage": 1})
    before = _out_bytes(real)
    with ProbeClient(redis_server.url, timeout_s=2) as probe:
        fleet = read_fleet(probe, Keys())
    assert fleet.store_problem is None and fleet.reports[0].state is State.INVALID
    assert _out_bytes(real) - before < 64 * 1024


@pytest.mark.parametrize("ahead_ms", [10_000, 10**12])
def test_future_timestamps_are_invalid(redis_server: RedisServer, real: redis.Redis,
                                       ahead_ms: int) -> None:
    now = int(real.time()[0]) * 1000
    real.set(KEY, json.dumps(valid_payload(now + ahead_ms)))
    assert _judge(redis_server, real) is State.INVALID


def test_extra_fields_alone_stay_valid_for_forward_compatibility(real: redis.Redis) -> None:
    publish(real)
    data = json.loads(real.get(KEY) or b"")
    data["added_in_schema_1_1"] = {"anything": [1, 2, math.pi]}
    real.set(KEY, json.dumps(data))
    assert read_heartbeat(real, "petsage").state is State.FRESH
