"""The entries of many services read in chunks (``worker.read.entry_fleet``), in process on
fakeredis and a fixed Redis clock: 25 services to a round trip by default, each service's
report the one ``read_entries`` gives it, in the order asked, under the prefix given, and a
chunk that fails reported for each of its services while the next chunks are still read.
tests/test_entries_cli.py reads them through ``status --all --entries``."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from worker.core.entries import EntryState
from worker.core.names import Keys
from worker.core.redis_io import execute_many
from worker.read.entries import EntriesReport, entries_commands, read_entries
from worker.read.entry_fleet import read_entries_of

NOW_MS = 1_800_000_000_000
ACME = Keys("acme")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """fakeredis on a fixed Redis clock."""
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    return fakeredis.FakeRedis()


class Counting:
    """A client answered by fakeredis that records each round trip's commands; the round
    trips numbered in ``failing`` raise instead."""

    def __init__(self, client: Any, failing: Sequence[int] = ()) -> None:
        self.client, self.failing = client, set(failing)
        self.sent: list[list[tuple[Any, ...]]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.sent.append(list(commands))
        if len(self.sent) in self.failing:
            raise ConnectionError("reset by peer " + "x" * 300)
        return execute_many(self.client, commands)


def _fleet(client: fakeredis.FakeRedis, count: int, keys: Keys) -> list[str]:
    """``count`` services with one entry each, named for its service; every fifth missed."""
    names = [f"svc-{i:02d}" for i in range(count)]
    for i, service in enumerate(names):
        due = NOW_MS - 60_000 if i % 5 == 0 else NOW_MS + 60_000
        client.hset(keys.entries(service), f"entry of {service}",
                    json.dumps({"next_due_ms": due, "grace_s": 5}))
    return names


def test_25_services_to_a_round_trip_each_report_its_own(fake: fakeredis.FakeRedis) -> None:
    names = _fleet(fake, 26, ACME)
    counting = Counting(fake)
    reports = read_entries_of(counting, names, keys=ACME)
    assert [len(sent) for sent in counting.sent] == [125, 5]  # 5 commands a service
    assert counting.sent[1] == entries_commands("svc-25", ACME)
    assert reports == [read_entries(fake, s, keys=ACME) for s in names]
    assert [(r.service, r.now_ms, [e.name for e in r.entries], r.error) for r in reports] == [
        (s, NOW_MS, [f"entry of {s}"], None) for s in names]
    assert [r.entries[0].state for r in reports[:6]] == [
        EntryState.MISSED, *[EntryState.PENDING] * 4, EntryState.MISSED]


def test_a_chunk_of_several_services_splits_its_replies_in_order(
        fake: fakeredis.FakeRedis) -> None:
    names = _fleet(fake, 5, Keys())
    asked = [names[3], names[0], "nobody", names[4]]
    counting = Counting(fake)
    reports = read_entries_of(counting, asked, chunk=3)
    assert [len(sent) for sent in counting.sent] == [15, 5]
    assert reports == [read_entries(fake, s) for s in asked]
    assert [[e.name for e in r.entries] for r in reports] == [
        ["entry of svc-03"], ["entry of svc-00"], [], ["entry of svc-04"]]
    assert reports[2] == EntriesReport("nobody", NOW_MS, (), None)


def test_a_failed_chunk_is_an_error_for_each_of_its_services_and_the_next_is_read(
        fake: fakeredis.FakeRedis) -> None:
    names = _fleet(fake, 5, ACME)
    reports = read_entries_of(Counting(fake, failing=[2]), names, keys=ACME, chunk=2)
    error = ("ConnectionError: reset by peer " + "x" * 300)[:200]
    assert len(error) == 200
    assert reports[2:4] == [EntriesReport("svc-02", None, (), error),
                            EntriesReport("svc-03", None, (), error)]
    assert reports[:2] + reports[4:] == [read_entries(fake, s, keys=ACME)
                                         for s in ("svc-00", "svc-01", "svc-04")]


def test_no_services_is_no_round_trip(fake: fakeredis.FakeRedis) -> None:
    counting = Counting(fake)
    assert read_entries_of(counting, []) == []
    assert counting.sent == []
