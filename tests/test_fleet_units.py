"""A fleet read in-process on fakeredis (its Lua runs ``read.lua`` and ``notes.lua``): every
indexed service judged on the Redis clock, worst first; the services not fresh diagnosed
each from its own notes (a missing service that beat never published for, one whose beat
stopped, one whose queue nobody consumes); the caps on what a read fetches; node records;
the store's errors as a problem, never raised."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.core.payload import MAX_PAYLOAD_BYTES
from worker.core.redis_io import redis_time_ms
from worker.core.states import State
from worker.read.diagnosis import MAX_MARKER_BYTES, Diagnosis
from worker.read.fleet import (
    CHUNKS_PER_ROUND_TRIP,
    FLEET_CHUNK_KEYS,
    FLEET_CHUNK_SERVICES,
    Fleet,
    _fetch_notes,
    fleet_services,
    read_fleet,
    read_services,
    sort_worst_first,
)
from worker.read.reader import HeartbeatReport

KEYS = Keys()


def _marker(client: Any, service: str, *, age_s: float, depth: int | None = None,
            interval_s: float = 10) -> None:
    now = redis_time_ms(client.time())
    published = now - int(age_s * 1000)
    client.set(KEYS.beat(service), json.dumps({
        "published_at_ms": published, "next_due_ms": published + int(interval_s * 1000),
        "seq": 3, "queue_depth": depth, "since_ms": published - 60_000, "beat_id": "b1",
        "other_beat": None, "interval_s": interval_s}))


def _index(client: Any, *services: str) -> None:
    client.zadd(KEYS.index, dict.fromkeys(services, 1))


def test_the_chunk_sizes() -> None:
    assert (FLEET_CHUNK_KEYS, FLEET_CHUNK_SERVICES, CHUNKS_PER_ROUND_TRIP) == (1000, 250, 20)


def test_missing_services_are_each_diagnosed_from_their_own_notes() -> None:
    client = fakeredis.FakeRedis()
    _index(client, "never", "beatless", "unconsumed")
    publish(client, "ok", interval_s=10)
    _marker(client, "beatless", age_s=60)
    _marker(client, "unconsumed", age_s=1, depth=3)
    fleet = read_fleet(client, KEYS)
    assert fleet.store_problem is None
    by = {r.service: r for r in fleet.reports}
    assert {s: r.state for s, r in by.items()} == {
        "never": State.MISSING, "beatless": State.MISSING, "unconsumed": State.MISSING,
        "ok": State.FRESH}
    assert by["never"].diagnosis is Diagnosis.NEVER_SEEN
    assert by["beatless"].diagnosis is Diagnosis.BEAT_DOWN
    assert by["unconsumed"].diagnosis is Diagnosis.NO_CONSUMER
    assert by["ok"].diagnosis is None and by["ok"].beat is None
    assert by["unconsumed"].beat is not None and by["unconsumed"].beat["queue_depth"] == 3
    assert by["beatless"].beat is not None and by["beatless"].beat["queue_depth"] is None
    assert fleet.reports[-1].service == "ok" and fleet.exit_code == 2


def test_ages_are_on_the_redis_clock() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    publish(client, "b", interval_s=10)
    backdate(client, "b", 60)
    now = redis_time_ms(client.time())
    reports = {r.service: r for r in read_services(client, ["a", "b"], KEYS)}
    assert reports["a"].state is State.FRESH and reports["a"].age_s is not None
    assert 0 <= reports["a"].age_s < 2
    assert reports["b"].state is State.STALE and reports["b"].age_s == pytest.approx(60, abs=2)
    assert reports["a"].now_ms == reports["b"].now_ms  # one clock reading for the read
    assert reports["a"].now_ms is not None and abs(reports["a"].now_ms - now) < 2000


def test_an_oversized_value_is_judged_by_its_size_not_read() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    publish(client, "big", interval_s=10)
    value = client.get(KEYS.latest("big")) or b""
    client.set(KEYS.latest("big"), value[:-1] + b',"pad":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}')
    reports = {r.service: r for r in read_services(client, ["a", "big"], KEYS)}
    assert reports["big"].state is State.INVALID
    assert str(MAX_PAYLOAD_BYTES) in reports["big"].reason, reports["big"].reason
    assert reports["a"].state is State.FRESH


def test_notes_are_read_capped_each_service_its_own() -> None:
    client = fakeredis.FakeRedis()
    client.set(KEYS.beat("a"), "A" * (MAX_MARKER_BYTES * 3))
    client.set(KEYS.discarded("a"), "a-note")
    client.set(KEYS.beat("b"), "b-marker")
    client.rpush(KEYS.discarded("b"), "not a string")  # another type: ''
    notes = _fetch_notes(client, KEYS, ["a", "b", "c"])
    assert notes == [b"A" * MAX_MARKER_BYTES, b"a-note", b"b-marker", b"", b"", b""]


def test_notes_of_many_services_come_in_several_calls_in_order() -> None:
    client = fakeredis.FakeRedis()
    services = [f"s{i}" for i in range(FLEET_CHUNK_KEYS // 2 + 10)]
    for s in services:
        client.set(KEYS.beat(s), s)
    notes = _fetch_notes(client, KEYS, services)
    assert notes[::2] == [s.encode() for s in services] and set(notes[1::2]) == {b""}


def test_the_index_lists_valid_names_once_across_chunks() -> None:
    client = fakeredis.FakeRedis()
    names = [f"s{i:04d}" for i in range(FLEET_CHUNK_KEYS + 5)]
    client.zadd(KEYS.index, {name: i for i, name in enumerate(names)})
    client.zadd(KEYS.index, {"a b": 0, "x" * 65: 0, "{x}": 0})
    assert fleet_services(client, KEYS) == names


def test_node_records_come_newest_first() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    publish(client, "b", interval_s=10)
    now = redis_time_ms(client.time())
    client.zadd(KEYS.nodes("a"), {"w1@h": now - 5000, "w2@h": now - 1000, "w3@h": now - 60_000})
    reports = {r.service: r for r in read_services(client, ["a", "b"], KEYS)}
    assert [n.node for n in reports["a"].nodes] == ["w2@h", "w1@h", "w3@h"]
    assert reports["b"].nodes == ()


def test_only_one_service_and_an_unknown_one() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    publish(client, "b", interval_s=10)
    fleet = read_fleet(client, KEYS, only="b")
    assert [r.service for r in fleet.reports] == ["b"] and fleet.exit_code == 0
    empty = read_fleet(client, KEYS, only="zz")
    assert empty.reports == [] and empty.store_problem is None and empty.exit_code == 2
    assert read_services(client, [], KEYS) == []


class _Broken:
    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ConnectionError("Error 111 connecting to redis://:s3cret@db:6379 " + "x" * 300)
        return refuse


def test_a_store_that_cannot_be_asked_is_a_problem_not_an_exception() -> None:
    fleet = read_fleet(_Broken(), KEYS)
    assert fleet.reports == [] and fleet.exit_code == 3
    assert fleet.store_problem is not None
    assert fleet.store_problem.startswith("Redis could not be asked: Error 111")
    assert "s3cret" not in fleet.store_problem
    assert len(fleet.store_problem) == len("Redis could not be asked: ") + 200
    assert read_fleet(_Broken(), KEYS, only="a").exit_code == 3


def test_worst_first_then_oldest_then_by_name() -> None:
    def r(service: str, state: State, age: float | None) -> HeartbeatReport:
        return HeartbeatReport(service, state, "", age)

    reports = [r("b", State.FRESH, 1), r("a", State.FRESH, 1), r("c", State.FRESH, 5),
               r("m", State.MISSING, None), r("s", State.STALE, 50), r("t", State.STALE, 90),
               r("l", State.LATE, 12)]
    assert [x.service for x in sort_worst_first(reports)] == ["m", "t", "s", "l", "c", "a", "b"]
    assert Fleet([r("a", State.FRESH, 1), r("l", State.LATE, 12)]).exit_code == 1
    assert Fleet([]).exit_code == 2 and Fleet([], "down").exit_code == 3
