"""A fleet read over more than one batch, in process on fakeredis: the commands it sends
(bounded calls, one round trip of a batch after another on one worker thread, the notes of
each batch's services that are not fresh fetched while the next batch is judged, one
``INFO`` at the end), each service's report, nodes and second beat coming from its own
batch, and the second pass that names a store refusing writes.

The client here is the probe's own kind (it has ``execute_many``): it runs each round
trip on fakeredis and records it, so a test can say exactly what went to Redis.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fakeredis
import pytest

from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.core.payload import MAX_PAYLOAD_BYTES
from worker.core.redis_io import redis_time_ms
from worker.core.states import Diagnosis, State
from worker.read import fleet
from worker.read.diagnosis import MAX_MARKER_BYTES
from worker.read.fleet import (
    NOTES_SCRIPT,
    fleet_services,
    read_fleet,
    read_services,
    sort_worst_first,
)
from worker.read.nodes import FLEET_NODES_LIMIT
from worker.read.reader import READ_SCRIPT, HeartbeatReport

KEYS = Keys()
NEVER = ("no heartbeat stored for this service; never_seen: no heartbeat and no publish by "
         "beat were ever recorded")
REPLICA = "role:slave\r\nmaster_host:db\r\nmaster_port:6379\r\n"
REFUSAL = ("the store is a read-only replica (of db:6379): point beat and the workers at the "
           "primary")


class _Recorder:
    """fakeredis behind the probe client's interface, recording every round trip.

    ``EVAL_RO`` runs as ``EVAL`` (fakeredis has no ``EVAL_RO``); ``INFO`` answers ``info``
    (a store's own ``INFO`` is not what fakeredis can be made to say); ``fail`` names a
    command whose replies are errors."""

    def __init__(self, server: fakeredis.FakeRedis, info: str = "role:master\r\n",
                 fail: str | None = None) -> None:
        self.server = server
        self.info = info
        self.fail = fail
        self.trips: list[tuple[str, list[tuple[Any, ...]]]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.trips.append((threading.current_thread().name, [tuple(c) for c in commands]))
        pipe = self.server.pipeline(transaction=False)
        for command in commands:
            name = "EVAL" if command[0] == "EVAL_RO" else command[0]
            if name in ("INFO", self.fail):
                pipe.echo("placeholder")
            else:
                pipe.execute_command(name, *command[1:])
        replies = pipe.execute(raise_on_error=False)
        for n, command in enumerate(commands):
            if command[0] == self.fail:
                replies[n] = RuntimeError(f"refused {command[0]}")
            elif command[0] == "INFO":
                replies[n] = self.info
        return replies  # type: ignore[no-any-return]

    def shapes(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """Each round trip as its thread and, per command, its name (the script's) and the
        number of keys it touches."""
        scripts = {READ_SCRIPT: "read", NOTES_SCRIPT: "notes"}
        return [(thread, [(scripts[c[1]], c[2]) if c[0] in ("EVAL", "EVAL_RO") else c
                          for c in commands])
                for thread, commands in self.trips]


def _marker(client: Any, service: str, *, age_s: float, interval_s: float,
            other_beat: dict[str, Any] | None = None) -> int:
    """Beat's marker of ``service``, its last publish ``age_s`` ago; returns that time."""
    published = redis_time_ms(client.time()) - int(age_s * 1000)
    client.set(KEYS.beat(service), json.dumps({
        "published_at_ms": published, "next_due_ms": published + int(interval_s * 1000),
        "seq": 3, "queue_depth": None, "since_ms": published - 60_000, "beat_id": "b1",
        "other_beat": other_beat, "interval_s": interval_s}))
    return published


def _first_pass(services: list[str]) -> tuple[Any, ...]:
    names = [key for s in services for key in (KEYS.latest(s), KEYS.nodes(s))]
    return ("EVAL_RO", READ_SCRIPT, len(names), *names, MAX_PAYLOAD_BYTES, MAX_MARKER_BYTES,
            0, FLEET_NODES_LIMIT, 2)


def _notes(services: list[str]) -> tuple[Any, ...]:
    names = [key for s in services for key in (KEYS.beat(s), KEYS.discarded(s))]
    return ("EVAL_RO", NOTES_SCRIPT, len(names), *names, MAX_MARKER_BYTES)


def test_the_keys_a_read_names() -> None:
    """The first pass and the notes build key names themselves (no ``Keys`` call per
    service): they must be the names the publishers write."""
    assert (KEYS.latest("s"), KEYS.nodes("s")) == ("petsage:hb:{s}", "petsage:hb:{s}:nodes")
    assert (KEYS.beat("s"), KEYS.discarded("s")) == ("petsage:hb:{s}:beat",
                                                      "petsage:hb:{s}:discarded")
    other = Keys("hb2")
    server = fakeredis.FakeRedis()
    publish(server, "a", keys=other)
    publish(server, "b", keys=other)
    backdate(server, "b", 100, keys=other)
    client = _Recorder(server)
    reports = read_services(client, ["a", "b"], other)
    assert [(r.service, r.state) for r in reports] == [("a", State.FRESH), ("b", State.STALE)]
    assert client.trips[0][1][0][3:7] == ("hb2:{a}", "hb2:{a}:nodes", "hb2:{b}", "hb2:{b}:nodes")
    assert client.trips[1][1] == [("EVAL_RO", NOTES_SCRIPT, 2, "hb2:{b}:beat",
                                   "hb2:{b}:discarded", MAX_MARKER_BYTES)]


def test_a_fleet_of_5001_services_goes_in_two_batches_of_bounded_calls() -> None:
    """5,000 services a round trip (20 calls of 250 services, two keys each), then the
    rest; the notes of the services not fresh (neither the fresh one nor the invalid one)
    500 keys a call; all on the read's one worker thread, in the order it sends them; then
    one ``INFO``, since the services never seen might be a store refusing writes."""
    server = fakeredis.FakeRedis()
    names = [f"s{i:04d}" for i in range(5001)]
    publish(server, "s0000")
    server.set(KEYS.latest("s4999"), "not json")
    published = _marker(server, "s5000", age_s=60, interval_s=10)
    client = _Recorder(server)
    reports = read_services(client, names, KEYS)
    assert [r.service for r in reports] == names
    assert len({r.now_ms for r in reports}) == 1
    assert reports[0].state is State.FRESH and reports[0].diagnosis is None
    assert reports[4999].state is State.INVALID and reports[4999].diagnosis is None
    assert all(r.reason == NEVER for r in reports[1:4999])
    last = reports[5000]
    assert last.now_ms is not None
    assert (last.state, last.diagnosis) == (State.MISSING, Diagnosis.BEAT_DOWN)
    assert last.reason == ("no heartbeat stored for this service; beat_down: beat last "
                           f"published {(last.now_ms - published) / 1000:.1f}s ago")
    assert last.beat is not None and last.beat["published_at_ms"] == published
    assert client.shapes() == [
        ("fleet-read_0", [("read", 500)] * 20),
        ("fleet-read_0", [("read", 2)]),
        ("fleet-read_0", [("notes", 500)] * 19 + [("notes", 496)]),
        ("fleet-read_0", [("notes", 2)]),
        ("MainThread", [("INFO",)])]
    assert client.trips[0][1][0] == _first_pass(names[:250])
    assert client.trips[0][1][19] == _first_pass(names[4750:5000])
    assert client.trips[1][1] == [_first_pass(["s5000"])]
    assert client.trips[2][1][0] == _notes(names[1:251])
    assert client.trips[2][1][19] == _notes(names[4751:4999])
    assert client.trips[3][1] == [_notes(["s5000"])]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of six services in chunks of three (the sizes are constants of the module):
    three batches of a fourteen-service fleet, the last one short."""
    monkeypatch.setattr(fleet, "FLEET_CHUNK_SERVICES", 3)
    monkeypatch.setattr(fleet, "CHUNKS_PER_ROUND_TRIP", 2)


def _fleet_of_three_batches(server: fakeredis.FakeRedis) -> tuple[list[str], int, int]:
    """Fourteen services: s00 fresh, s07 stale (its beat silent), s08 invalid, s13 missing
    with beat's marker (a minute-interval beat, another beat seen) and two worker nodes,
    the others never seen. Returns the names, s07's and s13's beat publish times."""
    names = [f"s{i:02d}" for i in range(14)]
    publish(server, "s00")
    publish(server, "s07")
    backdate(server, "s07", 100)
    stale_beat = _marker(server, "s07", age_s=100, interval_s=10)
    server.set(KEYS.latest("s08"), "not json")
    now = redis_time_ms(server.time())
    missing_beat = _marker(server, "s13", age_s=400, interval_s=60,
                           other_beat={"seen_at_ms": now - 5000, "beat_id": "b2"})
    server.zadd(KEYS.nodes("s13"), {"w1@h": now - 5000, "w2@h": now - 100_000})
    return names, stale_beat, missing_beat


def _check_three_batches(reports: list[HeartbeatReport], names: list[str], stale_beat: int,
                         missing_beat: int, refusal: str | None) -> None:
    assert [r.service for r in reports] == names
    now_ms = reports[0].now_ms
    assert now_ms is not None and {r.now_ms for r in reports} == {now_ms}
    by = {r.service: r for r in reports}
    assert (by["s00"].state, by["s00"].diagnosis, by["s00"].beat) == (State.FRESH, None, None)
    assert by["s08"].state is State.INVALID and by["s08"].diagnosis is None
    suspect = Diagnosis.STORE_REFUSES_WRITES if refusal else None
    stale = by["s07"]
    assert stale.state is State.STALE and stale.age_s is not None
    assert stale.diagnosis is (suspect or Diagnosis.BEAT_DOWN)
    assert stale.reason == f"last heartbeat {stale.age_s:.1f}s ago, over 30s; " + (
        f"store_refuses_writes: {refusal}" if refusal else
        f"beat_down: beat last published {(now_ms - stale_beat) / 1000:.1f}s ago")
    assert stale.beat is not None and stale.beat["published_at_ms"] == stale_beat
    missing = by["s13"]
    assert missing.state is State.MISSING
    assert missing.diagnosis is (suspect or Diagnosis.BEAT_DOWN)
    two = 'two beats publish for this service ("b1" and "b2"): run exactly one'
    assert missing.reason == "no heartbeat stored for this service; " + (
        f"store_refuses_writes: {refusal}; {two}" if refusal else
        f"beat_down: beat last published {(now_ms - missing_beat) / 1000:.1f}s ago; {two}")
    assert missing.second_beat == "b2"
    # Its nodes judged on beat's minute interval: 100 s is late (not stale, as on the
    # default ten seconds).
    assert [(n.node, n.state) for n in missing.nodes] == [("w1@h", State.FRESH),
                                                          ("w2@h", State.LATE)]
    for service in set(names) - {"s00", "s07", "s08", "s13"}:
        never = by[service]
        assert never.state is State.MISSING and never.nodes == () and never.beat is None
        assert never.reason == (f"no heartbeat stored for this service; store_refuses_writes: "
                                f"{refusal}" if refusal else NEVER)


@pytest.mark.usefixtures("small_batches")
def test_each_batch_is_judged_with_its_own_values_nodes_and_notes() -> None:
    """Batch after batch on the one worker thread: the next batch is asked for before this
    one's notes, so the notes of one batch go out after the next batch's values."""
    server = fakeredis.FakeRedis()
    names, stale_beat, missing_beat = _fleet_of_three_batches(server)
    client = _Recorder(server)
    reports = read_services(client, names, KEYS)
    _check_three_batches(reports, names, stale_beat, missing_beat, None)
    worker = "fleet-read_0"
    assert client.trips == [
        (worker, [_first_pass(names[0:3]), _first_pass(names[3:6])]),
        (worker, [_first_pass(names[6:9]), _first_pass(names[9:12])]),
        (worker, [_notes(names[1:6])]),
        (worker, [_first_pass(names[12:14])]),
        (worker, [_notes(["s06", "s07", "s09", "s10", "s11"])]),
        (worker, [_notes(["s12", "s13"])]),
        ("MainThread", [("INFO",)])]


@pytest.mark.usefixtures("small_batches")
def test_a_store_refusing_writes_is_named_for_every_service_of_every_batch() -> None:
    """The second pass: the keys say beat or nothing, ``INFO`` says a read-only replica;
    every such report then names the store, in every batch."""
    server = fakeredis.FakeRedis()
    names, stale_beat, missing_beat = _fleet_of_three_batches(server)
    client = _Recorder(server, info=REPLICA)
    reports = read_services(client, names, KEYS)
    _check_three_batches(reports, names, stale_beat, missing_beat, REFUSAL)
    assert client.shapes()[-1] == ("MainThread", [("INFO",)])


def test_info_is_asked_only_when_the_keys_name_a_hop_a_refusing_store_breaks_too() -> None:
    """A failed check is the workers' own word (no write refused): no ``INFO`` for it, nor
    for fresh or invalid services. A heartbeat late for want of the worker is one."""
    server = fakeredis.FakeRedis()
    publish(server, "ok")
    publish(server, "failing", status="error")
    server.set(KEYS.latest("bad"), "[]")
    client = _Recorder(server, info=REPLICA)
    reports = read_services(client, ["ok", "failing", "bad"], KEYS)
    assert [(r.state, r.diagnosis) for r in reports] == [
        (State.FRESH, None), (State.STALE, Diagnosis.CHECK_FAILED), (State.INVALID, None)]
    assert reports[1].reason == ("status error: check redis; check_failed: a check reported "
                                 "error")
    assert [shape[1] for shape in client.shapes()] == [[("read", 6)], [("notes", 2)]]
    backdate(server, "ok", 16)
    reports = read_services(client, ["ok", "failing"], KEYS)
    assert [(r.state, r.diagnosis) for r in reports] == [
        (State.LATE, Diagnosis.STORE_REFUSES_WRITES), (State.STALE, Diagnosis.CHECK_FAILED)]
    assert reports[0].reason.endswith(f"; store_refuses_writes: {REFUSAL}")
    assert [shape[1] for shape in client.shapes()[2:]] == [[("read", 4)], [("notes", 4)],
                                                          [("INFO",)]]


def test_a_store_that_says_nothing_leaves_the_diagnosis_from_the_keys() -> None:
    server = fakeredis.FakeRedis()
    for info in ("role:master\r\n", "not info at all"):
        client = _Recorder(server, info=info)
        reports = read_services(client, ["a", "b"], KEYS)
        assert [(r.diagnosis, r.reason) for r in reports] == [(Diagnosis.NEVER_SEEN, NEVER)] * 2
        assert client.shapes()[-1] == ("MainThread", [("INFO",)])


def test_one_service_is_one_call_with_its_notes() -> None:
    """One service needs no batches: one call of the read script (four keys, notes
    included); the caller's thresholds apply to it as to a fleet."""
    server = fakeredis.FakeRedis()
    publish(server, "a")
    publish(server, "b")
    backdate(server, "a", 5)
    backdate(server, "b", 5)
    client = _Recorder(server)
    (one,) = read_services(client, ["a"], KEYS, (2.0, 100.0))
    assert one.state is State.LATE and one.thresholds is not None
    assert (one.thresholds.late_after_s, one.thresholds.stale_after_s) == (2.0, 100.0)
    assert client.shapes() == [("MainThread", [("read", 4)]), ("MainThread", [("INFO",)])]
    both = read_services(client, ["a", "b"], KEYS, (2.0, 100.0))
    assert [r.state for r in both] == [State.LATE, State.LATE]
    assert {(r.thresholds.late_after_s, r.thresholds.stale_after_s)  # type: ignore[union-attr]
            for r in both} == {(2.0, 100.0)}
    assert [r.state for r in read_services(client, ["a", "b"], KEYS, (1.0, 4.0))] == [
        State.STALE, State.STALE]
    assert [r.state for r in read_services(client, ["a", "b"], KEYS)] == [State.FRESH] * 2


def test_the_read_runs_on_one_worker_thread_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker: Redis sees a read's calls one at a time, in order (a second worker would
    send the notes and the next batch at once)."""
    made: list[dict[str, Any]] = []

    class Pool(ThreadPoolExecutor):
        def __init__(self, **kwargs: Any) -> None:
            made.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(fleet, "ThreadPoolExecutor", Pool)
    read_services(fakeredis.FakeRedis(), ["a", "b"], KEYS)
    assert made == [{"max_workers": 1, "thread_name_prefix": "fleet-read"}]


def test_the_index_is_read_in_ranges_of_a_thousand() -> None:
    server = fakeredis.FakeRedis()
    server.zadd(KEYS.index, {f"s{i:04d}": i for i in range(2001)})
    client = _Recorder(server)
    assert fleet_services(client, KEYS) == [f"s{i:04d}" for i in range(2001)]
    assert client.trips[:2] == [
        ("MainThread", [("ZCARD", KEYS.index)]),
        ("MainThread", [("ZRANGE", KEYS.index, 0, 999), ("ZRANGE", KEYS.index, 1000, 1999),
                        ("ZRANGE", KEYS.index, 2000, 2999)])]


@pytest.mark.parametrize(("command", "shards"), [
    ("TIME", False), ("ZCARD", False), ("ZRANGE", False), ("HGET", False), ("HGETALL", True),
    ("TIME", True), ("ZSCORE", False), ("EVAL_RO", False), ("EVAL_RO", True)])
def test_an_error_reply_anywhere_is_the_fleets_store_problem(
        command: str, shards: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever command the store refuses, the read is a problem, not a partial fleet
    (the whole fleet asks ZCARD, the index, TIME and the summaries: one HGET a service, or
    every shard in a fleet of 2,048 or more; then, b's summary gone, the script; one
    service ZSCORE and the script)."""
    from worker.read import fleet as fleet_module

    if shards:
        monkeypatch.setattr(fleet_module, "SUMMARY_SHARDS", 0)
    server = fakeredis.FakeRedis()
    publish(server, "a")
    publish(server, "b")
    assert server.hdel(KEYS.summary_of("b"), "b") == 1
    client = _Recorder(server, fail=command)
    asks = {None: {"TIME", "ZCARD", "HGETALL" if shards else "HGET", "ZRANGE", "EVAL_RO"},
            "a": {"ZSCORE", "EVAL_RO"}}
    for only, sent in asks.items():
        found = read_fleet(client, KEYS, only=only)
        if command in sent:
            assert (found.reports, found.store_problem) == (
                [], f"Redis could not be asked: refused {command}")
        else:
            assert found.store_problem is None
            assert sorted(r.service for r in found.reports) == (
                ["a", "b"] if only is None else ["a"])


def test_a_service_whose_age_is_unknown_sorts_as_age_zero() -> None:
    def r(service: str, age: float | None) -> HeartbeatReport:
        return HeartbeatReport(service, State.MISSING, "", age)

    assert [x.service for x in sort_worst_first([r("a", None), r("b", 0.5), r("c", 0)])] == [
        "b", "a", "c"]


def test_sorting_fresh_apart_orders_as_one_key_would() -> None:
    import random

    from worker.core.states import SEVERITY

    rank = {state: n for n, state in enumerate(SEVERITY)}
    rng = random.Random(3)
    reports = [HeartbeatReport(f"s{rng.randrange(50)}", rng.choice(list(State)), "",
                               rng.choice([None, 0, 1.5, 2.0, rng.random()]))
               for _ in range(500)]
    reports = [r for r in reports if not (r.state is State.FRESH and r.age_s is None)]
    one_key = sorted(reports, key=lambda r: (rank[r.state], -(r.age_s or 0), r.service))
    assert sort_worst_first(reports) == one_key
