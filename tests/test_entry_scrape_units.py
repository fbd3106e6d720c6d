"""The entries of every service in one scrape (``worker.read.entry_scrape``), in process on
fakeredis and a fixed Redis clock: the ``HLEN`` pass (1,000 to a round trip) and the read
pass (20 services to a round trip, one service at a time on a Cluster), the bound on the
entries read at both sides with what it leaves out counted, a wrong type at a key, a store
that fails (redacted, cut), and the last run's duration and queue wait.
tests/test_http_entries.py serves the same read on ``/metrics`` and ``/api/entries``."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from worker.core.names import Keys
from worker.core.redis_io import execute_many
from worker.read.entries import entries_commands, read_entries
from worker.read.entry_scrape import EntriesFleet, last_run_ms, read_fleet_entries

NOW_MS = 1_800_000_000_000
KEYS = Keys()
ACME = Keys("acme")
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """fakeredis on a fixed Redis clock."""
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    return fakeredis.FakeRedis()


class Counting:
    """A client answered by fakeredis that records each round trip's commands; ``counts``
    overrides ``HLEN``'s reply per key, ``failing`` the round trips that raise."""

    def __init__(self, client: Any, counts: dict[str, Any] | None = None,
                 failing: Sequence[int] = ()) -> None:
        self.client, self.counts, self.failing = client, counts or {}, set(failing)
        self.sent: list[list[tuple[Any, ...]]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.sent.append(list(commands))
        if len(self.sent) in self.failing:
            raise ConnectionError("Error connecting to redis://u:secret@db:6379/0 " + "x" * 300)
        replies = execute_many(self.client, commands)
        return [self.counts[c[1]] if c[0] == "HLEN" and c[1] in self.counts else r
                for c, r in zip(commands, replies, strict=True)]


class Cluster(Counting):
    """The same, shaped as redis-py's ``RedisCluster``."""

    nodes_manager = None


def _put(client: fakeredis.FakeRedis, service: str, count: int, keys: Keys = KEYS) -> None:
    for i in range(count):
        client.hset(keys.entries(service), f"e{i}",
                    json.dumps({"next_due_ms": NOW_MS + 60_000, "grace_s": 5}))


def _served(fleet: EntriesFleet) -> list[tuple[str, int]]:
    return [(r.service, len(r.entries)) for r in fleet.reports]


def test_only_services_with_entries_are_read_in_name_order(fake: fakeredis.FakeRedis) -> None:
    _put(fake, "a", 2, ACME)
    _put(fake, "c", 1, ACME)
    counting = Counting(fake)
    fleet = read_fleet_entries(counting, ["c", "a", "b", "a"], ACME)
    assert counting.sent == [
        [("HLEN", "acme:{a}:entries"), ("HLEN", "acme:{b}:entries"),
         ("HLEN", "acme:{c}:entries")],
        [*entries_commands("a", ACME), *entries_commands("c", ACME)]]
    assert fleet == EntriesFleet([read_entries(fake, "a", keys=ACME),
                                  read_entries(fake, "c", keys=ACME)], 0, None)
    assert _served(fleet) == [("a", 2), ("c", 1)]
    assert read_fleet_entries(fake, ["a"]) == EntriesFleet([], 0, None)  # another prefix
    assert read_fleet_entries(fake, []) == EntriesFleet([], 0, None)


@pytest.mark.parametrize(("limit", "served", "omitted"), [
    (5, [("a", 2), ("b", 2), ("c", 1)], 0),
    (4, [("a", 2), ("b", 2)], 1),
    (3, [("a", 2), ("c", 1)], 2),  # b does not fit, c still does
    (2, [("a", 2)], 3),
    (1, [("c", 1)], 4),
    (0, [], 5),
])
def test_the_bound_takes_whole_services_in_name_order_and_counts_the_rest(
        fake: fakeredis.FakeRedis, limit: int, served: list[tuple[str, int]],
        omitted: int) -> None:
    for service, count in (("a", 2), ("b", 2), ("c", 1)):
        _put(fake, service, count)
    fleet = read_fleet_entries(fake, ["a", "b", "c"], limit=limit)
    assert (_served(fleet), fleet.omitted, fleet.problem) == (served, omitted, None)


def test_at_most_5000_entries_by_default(fake: fakeredis.FakeRedis) -> None:
    """The counts decide, before any record is read: 4,999 + 1 fit, one more does not."""
    for service in ("a", "b", "c"):
        _put(fake, service, 1)
    counting = Counting(fake, counts={KEYS.entries("a"): 4999})
    fleet = read_fleet_entries(counting, ["a", "b", "c"])
    assert [r.service for r in fleet.reports] == ["a", "b"]
    assert fleet.omitted == 1


def test_a_count_of_none_is_no_entries(fake: fakeredis.FakeRedis) -> None:
    _put(fake, "a", 1)
    _put(fake, "b", 1)
    fleet = read_fleet_entries(Counting(fake, counts={KEYS.entries("a"): None}), ["a", "b"])
    assert (_served(fleet), fleet.omitted) == ([("b", 1)], 0)


def test_1000_counts_to_a_round_trip(fake: fakeredis.FakeRedis) -> None:
    names = [f"s{i:04d}" for i in range(1001)]
    _put(fake, "s1000", 1)
    _put(fake, "s0000", 1)
    counting = Counting(fake)
    fleet = read_fleet_entries(counting, names)
    assert [len(sent) for sent in counting.sent] == [1000, 1, 10]
    assert counting.sent[1] == [("HLEN", KEYS.entries("s1000"))]
    assert _served(fleet) == [("s0000", 1), ("s1000", 1)]


def test_20_services_read_to_a_round_trip(fake: fakeredis.FakeRedis) -> None:
    names = [f"s{i:02d}" for i in range(21)]
    for service in names:
        _put(fake, service, 1)
    counting = Counting(fake)
    fleet = read_fleet_entries(counting, names)
    assert [len(sent) for sent in counting.sent] == [21, 100, 5]
    assert counting.sent[2] == entries_commands("s20", KEYS)
    assert fleet.reports == [read_entries(fake, s) for s in names]


def test_on_a_cluster_each_service_is_read_on_its_own(fake: fakeredis.FakeRedis) -> None:
    _put(fake, "a", 2, ACME)
    _put(fake, "c", 1, ACME)
    cluster = Cluster(fake)
    fleet = read_fleet_entries(cluster, ["a", "b", "c"], ACME)
    assert cluster.sent[1:] == [entries_commands("a", ACME), entries_commands("c", ACME)]
    assert fleet == EntriesFleet([read_entries(fake, "a", keys=ACME),
                                  read_entries(fake, "c", keys=ACME)], 0, None)


def test_a_wrong_type_counts_as_one_entry_and_is_the_problem(fake: fakeredis.FakeRedis) -> None:
    fake.set(KEYS.entries("bad"), "not a hash")
    fake.set(KEYS.entries("worse"), "not a hash")
    _put(fake, "c", 1)
    fleet = read_fleet_entries(fake, ["bad", "c", "worse"])
    assert _served(fleet) == [("c", 1)]
    assert fleet.problem == f"bad: ResponseError: {WRONGTYPE}"
    bounded = read_fleet_entries(fake, ["bad", "c"], limit=1)
    assert (bounded.reports, bounded.omitted) == ([], 1)  # bad took the one place


@pytest.mark.parametrize("failing", [1, 2])
def test_a_store_that_fails_is_the_problem_redacted_and_cut(
        fake: fakeredis.FakeRedis, failing: int) -> None:
    """In either pass: nothing read, nothing counted as left out."""
    _put(fake, "a", 1)
    _put(fake, "b", 1)
    fleet = read_fleet_entries(Counting(fake, failing=[failing]), ["a", "b"], limit=1)
    said = "Error connecting to redis://u:***@db:6379/0 " + "x" * 300
    assert fleet == EntriesFleet([], 0, "Redis could not be asked: " + said[:200])


def test_the_last_run_s_duration_and_queue_wait() -> None:
    """The last dispatched run's own, once it has one; else the last success's."""
    record = {"run": {"duration_ms": 120, "queue_wait_ms": 4.5},
              "last_duration_ms": 999, "last_queue_wait_ms": 9}
    assert last_run_ms(record, "duration_ms") == 120
    assert last_run_ms(record, "queue_wait_ms") == 4.5
    for run in ({}, {"duration_ms": None}, {"duration_ms": True}, {"duration_ms": "120"},
                "not a run", None):
        assert last_run_ms({"run": run, "last_duration_ms": 999}, "duration_ms") == 999
    assert last_run_ms({"run": {"duration_ms": 0}, "last_duration_ms": 999},
                       "duration_ms") == 0
    assert last_run_ms({"last_duration_ms": False}, "duration_ms") is None
    assert last_run_ms({"last_duration_ms": "5"}, "duration_ms") is None
    assert last_run_ms({"last_duration_ms": 7.25}, "duration_ms") == 7.25
    assert last_run_ms({}, "duration_ms") is None
