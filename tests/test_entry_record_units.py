"""The monitors' record of beat entries, in process: when an entry's state began
(``entry_began_ms``, every state, each missing field, the clamps), the exact judgement
``entry_record.lua`` gets, which services have entries (a thousand ``EXISTS`` a round
trip), the calls sent (one a service, twenty a round trip, the script's head, whether the
judgements cover every entry), store errors raised, the Redis Cluster path, and the
rounds' budget: services read in turns, each round going on where the last stopped, said
once when they fall behind. fakeredis runs the real script through lupa; a client that
keeps every batch shows what was sent; the clock of the rounds is a fake one."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
import redis

from tests.support.recording_client import Recording, RecordingCluster
from worker.core.entries import EntryState
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.observe import entry_record as module
from worker.observe.entry_record import (
    ENTRY_RECORD_SCRIPT,
    EntryRecorded,
    EntryRounds,
    _call,
    _num,
    entry_began_ms,
    entry_judgement,
    record_entries,
    services_with_entries,
)
from worker.read.entries import MAX_ENTRIES_READ, EntriesReport, EntryReport

KEYS = Keys()
TTL = str(Settings().incidents_ttl_ms)
NOW = 20_000
RECORD: dict[str, Any] = {
    "grace_s": 2, "next_due_ms": 10_000, "max_runtime_s": 3, "removed_ms": 7000,
    "duplicate_ms": 6000,
    "run": {"waiting_since_ms": 4500, "dispatched_ms": 4000, "started_ms": 5000,
            "finished_ms": 8000}}


def _echo(command: tuple[Any, ...]) -> Any:
    """An EVAL answered without a script: each entry's recorded state is its name."""
    numkeys = command[2]
    judged = [json.loads(j) for j in command[3 + numkeys + 8:]]
    return [[j["entry"].encode(), b"", b""] for j in judged]


def _entry(name: str = "nightly", state: str = "failed", record: dict[str, Any] | None = None,
           diagnosis: str | None = "task_failed") -> EntryReport:
    return EntryReport(name, EntryState(state), diagnosis, f"why {state}", record or {})


def _service(service: str = "petsage", now_ms: int | None = NOW, *entries: EntryReport,
             error: str | None = None) -> EntriesReport:
    return EntriesReport(service, now_ms, entries or (_entry(),), error)


# -- when an entry's state began -------------------------------------------------------------


def test_a_number_is_an_int_or_a_float_not_a_bool_or_text() -> None:
    assert _num(5) == 5.0 and type(_num(5)) is float
    assert _num(2.5) == 2.5
    assert _num(True) is None and _num("5") is None and _num(None) is None


@pytest.mark.parametrize(("state", "change", "began"), [
    ("failed", {}, 8000),
    ("ok", {}, 8000),
    ("failed", {"run": "x"}, NOW),  # a run that is not an object
    ("ok", {"run": {}}, NOW),
    ("not_started", {}, 6500),  # waiting since + grace
    ("not_started", {"run": {"dispatched_ms": 4000}}, 6000),  # dispatched + grace
    ("not_started", {"run": {"started_ms": 4000}}, NOW),
    ("not_started", {"grace_s": None}, 4500),
    ("not_started", {"grace_s": "2"}, 4500),  # a grace that is not a number: none
    ("not_started", {"grace_s": 0.0015}, 4502),  # 4501.5, rounded
    ("missed", {}, 12_000),  # due + grace
    ("missed", {"next_due_ms": None}, NOW),
    ("overrun", {}, 8000),  # started + max runtime
    ("overrun", {"max_runtime_s": None}, NOW),
    ("overrun", {"run": {"finished_ms": 1}}, NOW),
    ("overrun", {"max_runtime_s": 0.0016}, 5002),  # 5001.6, rounded
    ("removed", {}, 7000),
    ("duplicate", {}, 6000),
    ("removed", {"removed_ms": None}, NOW),
    ("duplicate", {"duplicate_ms": "6000"}, NOW),
    ("running", {}, NOW),
    ("pending", {}, NOW),
    ("retrying", {}, NOW),
    ("failed", {"run": {"finished_ms": 0}}, NOW),  # not a time
    ("failed", {"run": {"finished_ms": -5}}, NOW),
    ("failed", {"run": {"finished_ms": 1}}, 1),
    ("failed", {"run": {"finished_ms": 1234.6}}, 1235),
    ("failed", {"run": {"finished_ms": NOW + 1}}, NOW),  # never after the judgement
    ("failed", {"run": {"finished_ms": NOW}}, NOW),
    ("missed", {"next_due_ms": NOW - 2001}, NOW - 1),
])
def test_when_an_entry_state_began(state: str, change: dict[str, Any], began: int) -> None:
    report = EntryReport("x", EntryState(state), None, "", {**RECORD, **change})
    assert entry_began_ms(report, NOW) == began
    assert type(entry_began_ms(report, NOW)) is int


def test_the_judgement_of_an_entry() -> None:
    report = _entry("nightly export", "missed", RECORD, "beat_down")._replace(
        reason="r" * 301)
    assert entry_judgement(report, NOW) == json.dumps({
        "entry": "nightly export", "to": "missed", "diagnosis": "beat_down",
        "reason": "r" * 300, "at": 12_000})
    assert entry_judgement(_entry("e", "ok", diagnosis=None), 5) == (
        '{"entry": "e", "to": "ok", "diagnosis": "", "reason": "why ok", "at": 5}')


# -- which services have entries -------------------------------------------------------------


def test_services_with_entries_a_thousand_exists_a_round_trip() -> None:
    services = [f"s{i}" for i in range(1001)]
    client = Recording(answer=lambda c: 1 if c[1] in (KEYS.entries("s3"),
                                                       KEYS.entries("s1000")) else 0)
    assert services_with_entries(client, KEYS, services) == ["s3", "s1000"]
    assert [len(batch) for batch in client.batches] == [1000, 1]
    assert client.batches[0][:2] == [("EXISTS", KEYS.entries("s0")),
                                     ("EXISTS", KEYS.entries("s1"))]
    assert client.batches[1] == [("EXISTS", KEYS.entries("s1000"))]
    assert services_with_entries(client, KEYS, []) == [] and len(client.batches) == 2


def test_services_with_entries_on_fakeredis_and_a_store_error_raised() -> None:
    server = fakeredis.FakeRedis()
    server.hset(KEYS.entries("b"), "e", "{}")
    assert services_with_entries(server, KEYS, ["a", "b", "c"]) == ["b"]
    error = redis.ResponseError("WRONGTYPE")
    with pytest.raises(redis.ResponseError) as raised:
        services_with_entries(Recording(answer=lambda _: error), KEYS, ["a"])
    assert raised.value is error


# -- the calls sent --------------------------------------------------------------------------


def test_one_call_a_service_with_its_keys_head_clock_and_judgements() -> None:
    head = ("10", "5000", "10000", "m1")
    entries = (_entry("a", "ok", diagnosis=None), _entry("b", "missed", RECORD, "beat_down"))
    report = _service("petsage", NOW, *entries)
    assert _call(KEYS, report, head, True) == (
        "EVAL", ENTRY_RECORD_SCRIPT, 5, *KEYS.entry_monitor_keys("petsage"), KEYS.outbox,
        "10", "5000", "10000", "m1", "1", "petsage", "20000", "1",
        *(entry_judgement(e, NOW) for e in entries))
    assert _call(KEYS, report, head, False) == (
        "EVAL", ENTRY_RECORD_SCRIPT, 4, *KEYS.entry_monitor_keys("petsage"),
        "10", "5000", "10000", "m1", "0", "petsage", "20000", "1",
        *(entry_judgement(e, NOW) for e in entries))
    assert _call(KEYS, _service("s", None), head, True)[14] == "0"  # no clock: 0


def test_the_judgements_cover_every_entry_only_below_the_read_bound() -> None:
    """At ``MAX_ENTRIES_READ`` entries some may not have been read: the records of entries
    not judged are then kept (``complete`` is '0')."""
    head = ("10", "5000", "10000", "m1")
    below = _service("s", NOW, *(_entry(f"e{i}", "ok") for i in range(MAX_ENTRIES_READ - 1)))
    at = _service("s", NOW, *(_entry(f"e{i}", "ok") for i in range(MAX_ENTRIES_READ)))
    assert _call(KEYS, below, head, True)[15] == "1"
    assert _call(KEYS, at, head, True)[15] == "0"


def test_twenty_calls_a_round_trip_each_reply_read_back_in_order() -> None:
    reports = [_service(f"s{i}", NOW, _entry(f"e{i}"), _entry(f"f{i}", "ok"))
               for i in range(21)]
    client = Recording(answer=_echo)
    recorded = record_entries(client, KEYS, reports, monitor_id="m1")
    assert [len(batch) for batch in client.batches] == [20, 1]
    head = ("1000", TTL, "10000", "m1")
    assert client.batches[0] + client.batches[1] == [_call(KEYS, r, head, True)
                                                      for r in reports]
    assert [(r.service, r.entry, r.state) for r in recorded] == [
        (f"s{i}", name, name) for i in range(21) for name in (f"e{i}", f"f{i}")]
    assert all(r.incident == "" and r.notification is None for r in recorded)


def test_reports_the_store_could_not_give_are_skipped() -> None:
    client = Recording(answer=_echo)
    reports = [_service("a"), _service("b", error="ConnectionError: down"),
               _service("c", 0), _service("d", None), _service("e")]
    recorded = record_entries(client, KEYS, reports, monitor_id="m", incidents_len=10,
                              ttl_ms=5000)
    assert [r.service for r in recorded] == ["a", "e"]
    assert [c[13] for c in client.batches[0]] == ["a", "e"]
    assert client.batches[0][0][8:12] == ("10", "5000", "10000", "m")
    assert record_entries(client, KEYS, reports[1:4], monitor_id="m") == []
    assert len(client.batches) == 1


def test_an_error_reply_is_raised() -> None:
    error = redis.ResponseError("NOSCRIPT")
    with pytest.raises(redis.ResponseError) as raised:
        record_entries(Recording(answer=lambda _: error), KEYS, [_service()], monitor_id="m")
    assert raised.value is error


def test_on_fakeredis_a_change_comes_back_with_its_incident_and_notification() -> None:
    server = fakeredis.FakeRedis()
    assert record_entries(server, KEYS, [_service("petsage", 1000, _entry("e", "ok"))],
                          monitor_id="m1") == [EntryRecorded("petsage", "e", "ok", "", None)]
    (failed,) = record_entries(server, KEYS, [_service("petsage", 2000, _entry("e"))],
                               monitor_id="m1", ttl_ms=9000)
    ((incident, fields),) = server.xrange(KEYS.entry_incidents("petsage"))
    ((_, event),) = server.xrange(KEYS.outbox)
    assert failed.service == "petsage" and failed.entry == "e" and failed.state == "failed"
    assert failed.incident == incident.decode()
    assert failed.notification == json.loads(event[b"event"])
    assert fields[b"monitor"] == b"m1" and fields[b"to"] == b"failed"
    assert 8000 < server.pttl(KEYS.entry_incidents("petsage")) <= 9000


# -- on a Redis Cluster ----------------------------------------------------------------------


def test_on_a_cluster_the_notifications_are_added_after_the_record() -> None:
    server = fakeredis.FakeRedis()
    client = RecordingCluster(server)
    first = [_service("a", 1000, _entry("e", "ok")), _service("b", 1000, _entry("e", "ok"))]
    record_entries(client, KEYS, first, monitor_id="m1")
    head = ("1000", TTL, "10000", "m1")
    assert client.batches == [[_call(KEYS, r, head, False) for r in first]]  # no notes
    client.batches.clear()
    second = [_service("a", 2000, _entry("e", "ok")), _service("b", 2000, _entry("e"))]
    recorded = record_entries(client, KEYS, second, monitor_id="m1")
    assert [r.notification is None for r in recorded] == [True, False]
    assert client.batches[1] == [("XADD", KEYS.outbox, "MAXLEN", "~", 10000, "*", "event",
                                  json.dumps(recorded[1].notification))]
    events = [json.loads(f[b"event"]) for _, f in server.xrange(KEYS.outbox)]
    assert events == [recorded[1].notification]
    assert (events[0]["service"], events[0]["entry"], events[0]["new_state"]) == (
        "b", "e", "failed")


def test_on_a_cluster_an_error_reply_of_the_outbox_is_raised() -> None:
    error = redis.ResponseError("CROSSSLOT")
    note = b'{"kind": "transition"}'

    def outbox_fails(command: tuple[Any, ...]) -> Any:
        return [[b"failed", b"1-0", note]] if command[0] == "EVAL" else error

    client = RecordingCluster(answer=outbox_fails)
    with pytest.raises(redis.ResponseError) as raised:
        record_entries(client, KEYS, [_service()], monitor_id="m")
    assert raised.value is error
    assert [c[0] for batch in client.batches for c in batch] == ["EVAL", "XADD"]


# -- the rounds ------------------------------------------------------------------------------


class Clock:
    """``time`` for the rounds: reading a service's entries takes ``step`` seconds."""

    def __init__(self) -> None:
        self.now = 100.0
        self.step = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def rounds(monkeypatch: pytest.MonkeyPatch) -> tuple[EntryRounds, Clock, list[str],
                                                     Recording]:
    """Rounds over services a, b and c (with entries) and x (none): reads recorded and
    answered without the store, the record made on fakeredis."""
    clock = Clock()
    read: list[str] = []
    server = fakeredis.FakeRedis()
    recording = Recording(server)

    def read_entries(client: Any, service: str, *, keys: Keys) -> EntriesReport:
        assert client is recording and keys is KEYS
        read.append(service)
        clock.now += clock.step
        return _service(service, 1000, _entry("e", "ok"))

    monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(module, "read_entries", read_entries)
    for service in ("a", "b", "c"):
        server.hset(KEYS.entries(service), "e", "{}")
    return (EntryRounds(recording, KEYS, monitor_id="m1", incidents_len=10, ttl_ms=5000),
            clock, read, recording)


Rounds = tuple[EntryRounds, Clock, list[str], Recording]
BEHIND = ("monitor: the entries of 3 services take longer than a round to read; they are "
          "judged in turns")


def test_a_round_reads_and_records_every_service_with_entries(
        rounds: Rounds, caplog: pytest.LogCaptureFixture) -> None:
    entry_rounds, _, read, client = rounds
    with caplog.at_level(logging.WARNING, logger="petsage_heartbeat.monitor"):
        recorded = entry_rounds.judge(["a", "x", "b", "c"], 1.0)
        assert read == ["a", "b", "c"]
        assert [(r.service, r.entry, r.state) for r in recorded] == [
            ("a", "e", "ok"), ("b", "e", "ok"), ("c", "e", "ok")]
        evals = [c for c in client.batches[-1] if c[0] == "EVAL"]
        assert [c[8:12] for c in evals] == [("10", "5000", "10000", "m1")] * 3
        read.clear()
        entry_rounds.judge(["a", "x", "b", "c"], 1.0)
        assert read == ["a", "b", "c"]  # all read: the next round starts at the first again
    assert caplog.messages == []
    assert entry_rounds.judge(["x"], 1.0) == [] and read == ["a", "b", "c"]


def test_a_round_over_its_budget_stops_and_the_next_goes_on_where_it_stopped(
        rounds: Rounds, caplog: pytest.LogCaptureFixture) -> None:
    entry_rounds, clock, read, _ = rounds
    clock.step = 0.6
    with caplog.at_level(logging.WARNING, logger="petsage_heartbeat.monitor"):
        recorded = entry_rounds.judge(["a", "b", "c", "x"], 1.0)
        assert read == ["a", "b"] and [r.service for r in recorded] == ["a", "b"]
        assert caplog.messages == [BEHIND]
        read.clear()
        entry_rounds.judge(["a", "b", "c", "x"], 1.0)
        assert read == ["c", "a"]
        assert caplog.messages == [BEHIND]  # said once while behind
        read.clear()
        clock.step = 0.5  # at the budget exactly: still within it
        entry_rounds.judge(["a", "b", "c", "x"], 1.0)
        assert read == ["b", "c", "a"]
        read.clear()
        clock.step = 2.0
        entry_rounds.judge(["a", "b", "c", "x"], 1.0)
        assert read == ["b"]
    assert caplog.messages == [BEHIND, BEHIND]  # behind again: said again
    assert caplog.records[0].levelno == logging.WARNING


def test_a_service_whose_entries_cannot_be_read_raises(
        rounds: Rounds, monkeypatch: pytest.MonkeyPatch) -> None:
    entry_rounds = rounds[0]

    def down(client: Any, service: str, *, keys: Keys) -> EntriesReport:
        return EntriesReport(service, None, (), "ConnectionError: refused")

    monkeypatch.setattr(module, "read_entries", down)
    with pytest.raises(ConnectionError) as raised:
        entry_rounds.judge(["a"], 1.0)
    assert str(raised.value) == "ConnectionError: refused"


class Short(Recording):
    """A client whose batches come back one reply short."""

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return super().execute_many(commands)[:-1]


def test_a_reply_short_of_the_commands_is_an_error_not_a_service_dropped() -> None:
    with pytest.raises(ValueError, match="zip"):
        services_with_entries(Short(answer=lambda _: 1), KEYS, ["a", "b"])
    with pytest.raises(ValueError, match="zip"):
        record_entries(Short(answer=_echo), KEYS, [_service("a"), _service("b")],
                       monitor_id="m")


def test_a_reply_short_of_the_entries_is_an_error_not_an_entry_dropped() -> None:
    def one_row(command: tuple[Any, ...]) -> Any:
        return _echo(command)[:1]

    with pytest.raises(ValueError, match="zip"):
        record_entries(Recording(answer=one_row), KEYS,
                       [_service("a", NOW, _entry("e"), _entry("f"))], monitor_id="m")
