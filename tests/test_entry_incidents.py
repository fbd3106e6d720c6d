"""The monitors' record of beat entries, fast: verdicts (ok up, running and pending no
verdict, every other state its own), each change recorded and queued once however many
monitors judge, a slower monitor's judgement ignored, silences of the entry or the service
holding notifications back, the bodies, ``silence --entry`` and its reader, ``forget``.
fakeredis (the real scripts through lupa); the real-process claims are in
``test_entries_monitor_e2e.py``.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from tests.support.publishing import publish
from worker.cli import silence as admin
from worker.core.entries import EntryState
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.core.settings import Settings
from worker.observe.entry_record import (
    EntryRecorded,
    entry_began_ms,
    record_entries,
    services_with_entries,
)
from worker.observe.monitor import Monitor
from worker.observe.webhooks import event_body, render
from worker.read.entries import EntriesReport, EntryReport
from worker.read.entry_silence import read_entry_silence, read_entry_silences

KEYS = Keys()
URL = "redis://fake.invalid:6379/0"
DIAGNOSES = {"failed": "task_failed", "retrying": "task_retrying",
             "not_started": "no_consumer", "missed": "beat_down"}


def _report(now_ms: int, service: str = "petsage", **states: str) -> EntriesReport:
    entries = tuple(EntryReport(name.replace("_", " "), EntryState(state),
                                DIAGNOSES.get(state), f"why {state}", {})
                    for name, state in states.items())
    return EntriesReport(service, now_ms, entries, None)


def _judge(client: fakeredis.FakeRedis, now_ms: int, monitor: str = "m1",
           **states: str) -> list[EntryRecorded]:
    return record_entries(client, KEYS, [_report(now_ms, **states)], monitor_id=monitor)


def _stream(client: fakeredis.FakeRedis) -> list[tuple[str, str, str]]:
    return [(f[b"entry"].decode(), f[b"from"].decode(), f[b"to"].decode())
            for _, f in client.xrange(KEYS.entry_incidents("petsage"))]


def _outbox(client: fakeredis.FakeRedis) -> list[tuple[str, str, str]]:
    return [(e["entry"], e["old_state"], e["new_state"]) for e in
            (json.loads(f[b"event"]) for _, f in client.xrange(KEYS.outbox))]


def test_an_entry_of_a_one_second_schedule_flipping_ok_and_running_is_never_news() -> None:
    client = fakeredis.FakeRedis()
    for i in range(20):
        _judge(client, 1000 * (i + 1), every_second="ok" if i % 2 else "running")
    assert _stream(client) == [] and _outbox(client) == []
    # The record says ok (pending or running first, then ok: the same verdict said better).
    record = json.loads(client.hget(KEYS.entry_observed("petsage"), "every second") or b"{}")
    assert record["state"] == "ok" and record["first_state"] == "running"


def test_each_change_of_verdict_is_recorded_and_queued_once_however_many_monitors() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, raises="pending")
    _judge(client, 2000, raises="ok")
    for monitor in ("m1", "m2", "m1"):
        recorded = _judge(client, 3000, monitor, raises="failed")
    assert recorded[0].incident == "" and recorded[0].notification is None
    # The next run starts (running), fails again: still failed, nothing new.
    for now, state in ((4000, "running"), (5000, "failed"), (6000, "running"),
                       (7000, "pending"), (8000, "failed")):
        for monitor in ("m1", "m2"):
            _judge(client, now, monitor, raises=state)
    _judge(client, 9000, raises="ok")
    _judge(client, 9000, "m2", raises="ok")
    assert _stream(client) == [("raises", "ok", "failed"), ("raises", "failed", "ok")]
    assert _outbox(client) == [("raises", "ok", "failed"), ("raises", "failed", "ok")]
    first = json.loads(client.xrange(KEYS.outbox)[0][1][b"event"])
    assert first["service"] == "petsage" and first["diagnosis"] == "task_failed"
    assert first["reason"] == "why failed" and first["incident"] == _first_incident(client)
    fields = client.xrange(KEYS.entry_incidents("petsage"))[0][1]
    assert fields[b"diagnosis"] == b"task_failed" and fields[b"monitor"] == b"m1"
    assert 0 < client.pttl(KEYS.entry_incidents("petsage")) <= Settings().incidents_ttl_ms
    assert 0 < client.pttl(KEYS.entry_observed("petsage")) <= Settings().incidents_ttl_ms


def _first_incident(client: fakeredis.FakeRedis) -> str:
    return client.xrange(KEYS.entry_incidents("petsage"))[0][0].decode()


def test_retries_are_one_retrying_and_one_ok_and_every_bad_state_is_its_own_verdict() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, retries="ok")
    for now, state in enumerate(["retrying", "running", "retrying", "running", "ok"], 2):
        _judge(client, now * 1000, retries=state)
    assert _outbox(client) == [("retries", "ok", "retrying"), ("retries", "retrying", "ok")]
    client.delete(KEYS.outbox)
    bad = ["failed", "overrun", "not_started", "missed", "duplicate", "removed", "retrying"]
    for now, state in enumerate(bad, 10):
        _judge(client, now * 1000, retries=state)
    steps = list(zip(["ok", *bad], bad, strict=False))
    assert [(old, new) for _, old, new in _outbox(client)] == steps


def test_a_judgement_older_than_the_recorded_change_changes_nothing() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, raises="ok")
    _judge(client, 3000, raises="failed")
    _judge(client, 2999, "slow", raises="ok")  # judged before the change, sent after it
    assert _stream(client) == [("raises", "ok", "failed")]
    assert _outbox(client) == [("raises", "ok", "failed")]


def test_an_entry_first_seen_bad_is_notified_from_unknown_one_first_seen_up_is_not() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, nobody_consumes="not_started", every_second="running", weekly="pending")
    assert _stream(client) == []  # the first judgement starts the record
    assert _outbox(client) == [("nobody consumes", "unknown", "not_started")]


def test_a_silenced_entry_is_recorded_not_notified_and_said_once_when_it_ends() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, raises="ok", other="ok")
    client.hset(KEYS.entry_silence("petsage"), "raises",
                json.dumps({"until_ms": 5000, "since_ms": 1000, "reason": "known bug"}))
    _judge(client, 2000, raises="failed", other="failed")
    assert _stream(client) == [("raises", "ok", "failed"), ("other", "ok", "failed")]
    assert _outbox(client) == [("other", "ok", "failed")]  # only the silenced one is held
    _judge(client, 4999, raises="failed", other="failed")
    assert len(_outbox(client)) == 1
    _judge(client, 5000, raises="failed", other="failed")  # ended, on the judgement's clock
    assert _outbox(client)[1:] == [("raises", "ok", "failed")]
    _judge(client, 6000, raises="failed", other="failed")
    assert len(_outbox(client)) == 2  # said once
    # Down and up again within a silence: nothing to say when it ends.
    client.hset(KEYS.entry_silence("petsage"), "raises", json.dumps({"until_ms": 9000}))
    _judge(client, 7000, raises="ok")
    _judge(client, 8000, raises="failed")
    _judge(client, 9500, raises="failed")
    assert len(_outbox(client)) == 2


def test_an_entry_first_seen_up_during_its_silence_says_its_first_change_from_there() -> None:
    client = fakeredis.FakeRedis()
    client.hset(KEYS.entry_silence("petsage"), "slow", json.dumps({"until_ms": 3000}))
    _judge(client, 1000, slow="pending", stuck="not_started")
    _judge(client, 2000, slow="overrun")
    _judge(client, 3000, slow="overrun")
    assert _outbox(client) == [("stuck", "unknown", "not_started"),
                               ("slow", "pending", "overrun")]


def test_a_silenced_service_holds_its_entries_notifications_too() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, raises="ok")
    client.set(KEYS.silence("petsage"), "{}")
    _judge(client, 2000, raises="failed")
    assert _stream(client) == [("raises", "ok", "failed")] and _outbox(client) == []
    client.delete(KEYS.silence("petsage"))
    _judge(client, 3000, raises="failed")
    assert _outbox(client) == [("raises", "ok", "failed")]


def test_the_record_of_an_entry_gone_from_the_entries_goes_too() -> None:
    client = fakeredis.FakeRedis()
    _judge(client, 1000, a="ok", b="ok")
    _judge(client, 2000, a="ok")
    assert client.hkeys(KEYS.entry_observed("petsage")) == [b"a"]


def test_when_an_entry_state_began_comes_from_its_record() -> None:
    record: dict[str, Any] = {"grace_s": 2, "next_due_ms": 10_000, "max_runtime_s": 3,
                              "removed_ms": 7000, "duplicate_ms": 6000,
                              "run": {"dispatched_ms": 4000, "started_ms": 5000,
                                      "finished_ms": 8000}}

    def began(state: str, now: int = 20_000, rec: dict[str, Any] = record) -> int:
        return entry_began_ms(EntryReport("x", EntryState(state), None, "", rec), now)

    assert began("failed") == 8000 and began("ok") == 8000
    assert began("not_started") == 6000  # dispatched + grace
    assert began("missed") == 12_000  # due + grace
    assert began("overrun") == 8000  # started + max runtime
    assert began("removed") == 7000 and began("duplicate") == 6000
    assert began("running") == 20_000 and began("failed", rec={}) == 20_000
    assert began("missed", now=11_000) == 11_000  # never after the judgement


def test_an_entry_body_names_the_entry_json_and_slack() -> None:
    event = {"kind": "transition", "service": "billing", "entry": "nightly export",
             "old_state": "ok", "new_state": "failed", "diagnosis": "task_failed",
             "reason": "the last run raised 1.0s ago: ValueError boom", "since_ms": 5,
             "incident": "1-0"}
    body = event_body("9-0", event, None)
    assert body["entry"] == "nightly export" and body["new_state"] == "failed"
    assert body["kind"] == "transition" and body["service"] == "billing"
    text = render("slack", body)["text"]
    assert text == ("PetSage heartbeat: billing entry 'nightly export' ok -> failed "
                    "(task_failed): the last run raised 1.0s ago: ValueError boom")
    assert "entry" not in event_body("9-0", {**event, "entry": None}, None)


def _failed_record(now_ms: int) -> str:
    return json.dumps({"task": "app.raises", "grace_s": 2, "period_s": 2,
                       "run": {"id": "r1", "dispatched_ms": now_ms - 50,
                               "started_ms": now_ms - 40, "finished_ms": now_ms - 30,
                               "outcome": "failed", "error_type": "ValueError"}})


def test_the_monitor_judges_the_entries_of_services_that_have_any() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "petsage", interval_s=10)
    publish(client, "billing", interval_s=10)  # no entries: skipped
    now = redis_time_ms(client.time())
    client.hset(KEYS.entries("petsage"), "raises", json.dumps({"grace_s": 2, "period_s": 2}))
    assert services_with_entries(client, KEYS, ["petsage", "billing"]) == ["petsage"]
    monitor = Monitor(Settings(), client, every_s=1.0, owner="m1")
    monitor.judge_once()
    assert [(e.service, e.entry, e.state) for e in monitor.entries_recorded] == [
        ("petsage", "raises", "pending")]
    client.hset(KEYS.entries("petsage"), "raises", _failed_record(now))
    monitor.judge_once()
    Monitor(Settings(), client, every_s=1.0, owner="m2").judge_once()
    assert _stream(client) == [("raises", "pending", "failed")]
    assert _outbox(client) == [("raises", "pending", "failed")]
    assert not client.exists(KEYS.entry_observed("billing"))


@pytest.fixture
def cli_client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    for name in ("HEARTBEAT_REDIS_URL", "HEARTBEAT_KEY_PREFIX", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    fake = fakeredis.FakeRedis()
    monkeypatch.setattr(admin, "make_client", lambda url, **_: fake)
    return fake


def _silence(**options: Any) -> int:
    return admin.run_silence(**{"service": "petsage", "entry": "raises", "duration": "90s",
                                "reason": "known bug", "redis_url": URL, "prefix": None,
                                **options})


def test_silence_entry_ends_on_the_redis_clock_and_its_reader_says_so(
        cli_client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(cli_client, "petsage")
    cli_client.hset(KEYS.entries("petsage"), "raises", "{}")
    cli_client.hset(KEYS.entries("petsage"), "every second", "{}")
    assert _silence() == 0
    out = capsys.readouterr().out
    assert out.startswith("petsage entry 'raises' silenced until ") and "(90 s): known bug" in out
    now = redis_time_ms(cli_client.time())
    stored = json.loads(cli_client.hget(KEYS.entry_silence("petsage"), "raises") or b"{}")
    assert now - 1000 <= stored["since_ms"] <= now and stored["until_ms"] == (
        stored["since_ms"] + 90_000)
    assert 88_000 < cli_client.pttl(KEYS.entry_silence("petsage")) <= 90_000
    silence = read_entry_silence(cli_client, "petsage", "raises")
    assert silence is not None and silence.reason == "known bug"
    assert read_entry_silence(cli_client, "petsage", "every second") is None
    assert not cli_client.exists(KEYS.silence("petsage"))  # the service is not silenced
    # The hash lives as long as its longest silence; an ended one is no silence.
    assert _silence(entry="every second", duration="1h") == 0
    assert 3_590_000 < cli_client.pttl(KEYS.entry_silence("petsage")) <= 3_600_000
    cli_client.hset(KEYS.entry_silence("petsage"), "raises",
                    json.dumps({**stored, "until_ms": now - 1}))
    assert read_entry_silence(cli_client, "petsage", "raises") is None
    assert set(read_entry_silences(cli_client, "petsage")) == {"every second"}
    assert _silence(entry="every second", duration="2h") == 0
    assert cli_client.hkeys(KEYS.entry_silence("petsage")) == [b"every second"]  # dropped
    capsys.readouterr()
    assert admin.run_unsilence(service="petsage", entry="every second", redis_url=URL,
                               prefix=None) == 0
    assert capsys.readouterr().out == ("petsage entry 'every second' unsilenced; a transition "
                                       "held back is notified at the monitor's next round\n")
    assert read_entry_silences(cli_client, "petsage") == {}
    assert admin.run_unsilence(service="petsage", entry="raises", redis_url=URL,
                               prefix=None) == 0
    assert capsys.readouterr().out == "petsage entry 'raises' was not silenced\n"


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "tab\there", "\x1b[31mred", "x" * 201])
def test_silence_entry_refuses_hostile_names_in_one_line(
        cli_client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], name: str) -> None:
    publish(cli_client, "petsage")
    for run in (lambda: _silence(entry=name), lambda: admin.run_unsilence(
            service="petsage", entry=name, redis_url=URL, prefix=None)):
        assert run() == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--entry" in err and "accepted: 1-200 printable" in err
    assert not cli_client.exists(KEYS.entry_silence("petsage"))


def test_silence_entry_refuses_an_entry_or_service_not_watched(
        cli_client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    assert _silence() == 2
    assert "service 'petsage' is not known" in capsys.readouterr().err
    publish(cli_client, "petsage")
    assert _silence(entry="nightly exprot") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "entry 'nightly exprot' of 'petsage' is not watched" in err
    assert not cli_client.exists(KEYS.entry_silence("petsage"))


def test_forget_deletes_the_entries_record_stream_and_silences(
        cli_client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(cli_client, "petsage")
    cli_client.hset(KEYS.entries("petsage"), "raises", _failed_record(
        redis_time_ms(cli_client.time())))
    _judge(cli_client, 1000, raises="ok")
    _judge(cli_client, 2000, raises="failed")
    assert _silence() == 0
    for key in (KEYS.entry_observed("petsage"), KEYS.entry_incidents("petsage"),
                KEYS.entry_silence("petsage")):
        assert cli_client.exists(key), key
    assert admin.run_forget(service="petsage", yes=True, redis_url=URL, prefix=None) == 0
    assert [k for k in cli_client.scan_iter("*") if b"{petsage}" in k] == []
