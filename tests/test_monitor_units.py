"""The monitor's round, in process: who a monitor is, what it hands the record, the
entries and each webhook's delivery, the lines a round logs (each transition, a store
problem said once with its URL's password masked, the store answering again), and the
loop's timing (a round every ``every_s`` seconds, never two at once after a slow one, the
deliveries started, stopped and joined). The fleet, the record and the entries' rounds are
replaced where a line or an argument is what is pinned; fakeredis runs the real scripts
where the whole round is."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import fakeredis
import pytest

from tests.support.helpers import wait_for
from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.core.states import State
from worker.core.webhook_urls import parse_webhooks
from worker.observe import monitor as module
from worker.observe.delivery import Delivery
from worker.observe.entry_record import EntryRecorded
from worker.observe.monitor import ENTRIES_BUDGET, Monitor, monitor_id
from worker.observe.record import Recorded
from worker.read.fleet import Fleet
from worker.read.reader import HeartbeatReport

KEYS = Keys()
LOGGER = "petsage_heartbeat.monitor"


def test_a_monitor_is_its_host_cut_to_64_characters_and_its_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module.socket, "gethostname", lambda: "h" * 70)
    monkeypatch.setattr(module.os, "getpid", lambda: 4242)
    assert monitor_id() == "h" * 64 + ":4242"
    monkeypatch.setattr(module.socket, "gethostname", lambda: "box")
    assert monitor_id() == "box:4242"


def test_a_monitor_hands_its_settings_to_the_entries_and_each_webhook() -> None:
    hooks = parse_webhooks("https://a.example.com/x https://b.example.com/y")
    settings = Settings(webhooks=hooks, webhook_format="slack", incidents_len=20,
                        dashboard_url="https://dash.example.com/", retention_s=40 * 86_400)
    client = fakeredis.FakeRedis()
    monitor = Monitor(settings, client, every_s=2.0, owner="m1", poll_s=0.5, lease_s=8.0)
    assert (monitor.settings, monitor.client, monitor.every_s, monitor.owner) == (
        settings, client, 2.0, "m1")
    assert monitor.rounds == 0 and monitor.entries_recorded == []
    assert monitor._problem is None and not monitor.stopping.is_set()
    rounds = monitor.entry_rounds
    assert (rounds.client, rounds.keys, rounds.monitor_id) == (client, settings.keys, "m1")
    assert (rounds.incidents_len, rounds.ttl_ms) == (20, 40 * 86_400_000)
    assert [d.webhook for d in monitor.deliveries] == list(hooks)
    for delivery in monitor.deliveries:
        assert isinstance(delivery, Delivery) and not delivery.is_alive()
        assert (delivery.client, delivery.keys, delivery.owner, delivery.fmt) == (
            client, settings.keys, "m1", "slack")
        assert delivery.dashboard_url == "https://dash.example.com/"
        assert (delivery.poll_s, delivery.lease_ms) == (0.5, 8000)
    assert Monitor(Settings(), client, every_s=1.0).owner == monitor_id()
    assert Monitor(Settings(), client, every_s=1.0, owner="").owner == monitor_id()
    assert Monitor(Settings(), client, every_s=1.0).deliveries == []


def test_stop_ends_the_loop_after_the_current_round() -> None:
    monitor = Monitor(Settings(), fakeredis.FakeRedis(), every_s=1.0, owner="m1")
    monitor.stop()
    assert monitor.stopping.is_set()


# -- one round -------------------------------------------------------------------------------


REPORTS = [HeartbeatReport("a", State.LATE, "why", now_ms=5),
           HeartbeatReport("b", State.FRESH, "why", now_ms=5)]


class Round:
    """The fleet, the record and the entries' rounds of one monitor, replaced: each call
    kept, each answer (or error) set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, monitor: Monitor) -> None:
        self.fleet = Fleet(list(REPORTS))
        self.recorded: list[Recorded] | Exception = []
        self.entries: list[EntryRecorded] | Exception = []
        self.calls: list[tuple[str, Any, Any]] = []
        self.client, self.keys = monitor.client, monitor.settings.keys
        monkeypatch.setattr(module, "read_fleet", self.read_fleet)
        monkeypatch.setattr(module, "record", self.record)
        monkeypatch.setattr(monitor.entry_rounds, "judge", self.judge)

    def read_fleet(self, client: Any, keys: Keys) -> Fleet:
        self.calls.append(("read_fleet", client, keys))
        return self.fleet

    def record(self, client: Any, keys: Keys, reports: list[HeartbeatReport],
               **options: Any) -> list[Recorded]:
        assert client is self.client and keys == self.keys
        self.calls.append(("record", reports, options))
        if isinstance(self.recorded, Exception):
            raise self.recorded
        return self.recorded

    def judge(self, services: list[str], budget_s: float) -> list[EntryRecorded]:
        self.calls.append(("judge", services, budget_s))
        if isinstance(self.entries, Exception):
            raise self.entries
        return self.entries


@pytest.fixture
def monitor() -> Monitor:
    return Monitor(Settings(incidents_len=20), fakeredis.FakeRedis(), every_s=2.5,
                   owner="m1")


def test_a_round_records_the_fleet_then_judges_its_entries_within_half_the_round(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Round(monkeypatch, monitor)
    fake.recorded = [Recorded("a", "late", "1-0", {"kind": "transition"})]
    fake.entries = [EntryRecorded("a", "e", "ok", "", None)]
    assert monitor.judge_once() == fake.recorded
    assert fake.calls == [
        ("read_fleet", monitor.client, monitor.settings.keys),
        ("record", REPORTS, {"monitor_id": "m1", "incidents_len": 20,
                             "ttl_ms": Settings().incidents_ttl_ms}),
        ("judge", ["a", "b"], 1.25)]
    assert ENTRIES_BUDGET == 0.5
    assert monitor.rounds == 1 and monitor.entries_recorded == fake.entries
    monitor.judge_once()
    assert monitor.rounds == 2


def test_a_round_logs_each_transition_and_notification(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    fake = Round(monkeypatch, monitor)
    note = {"kind": "transition"}
    fake.recorded = [Recorded("a", "late", "1-0", note), Recorded("b", "stale", "2-0", None),
                     Recorded("c", "fresh", "", note), Recorded("d", "fresh", "", None)]
    fake.entries = [EntryRecorded("a", "nightly", "failed", "3-0", note),
                    EntryRecorded("a", "hourly", "missed", "4-0", None),
                    EntryRecorded("b", "weekly", "ok", "", note),
                    EntryRecorded("b", "daily", "ok", "", None)]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        monitor.judge_once()
    assert caplog.messages == [
        "monitor: a is late (incident 1-0)",
        "monitor: b is stale (incident 2-0), not notified",
        "monitor: c is fresh, notified",
        "monitor: a entry 'nightly' is failed (incident 3-0)",
        "monitor: a entry 'hourly' is missed (incident 4-0), not notified",
        "monitor: b entry 'weekly' is ok, notified"]
    assert {r.levelno for r in caplog.records} == {logging.INFO}


PROBLEM = "ConnectionError: redis://:hunter2@store.example:6379/0 refused"
SAID = ("monitor: cannot judge the fleet: ConnectionError: redis://:***@store.example:6379/0 "
        "refused; retrying every 2.5 s")


def test_a_store_problem_is_said_once_masked_and_its_end_once(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    fake = Round(monkeypatch, monitor)
    fake.fleet = Fleet([], PROBLEM)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert monitor.judge_once() == []
        assert [c[0] for c in fake.calls] == ["read_fleet"]  # nothing recorded or judged
        fake.fleet = Fleet([], "another problem")
        assert monitor.judge_once() == []
        assert monitor._problem == "another problem"
        assert caplog.messages == [SAID]
        assert caplog.records[0].levelno == logging.WARNING
        assert monitor.rounds == 0
        fake.fleet = Fleet(list(REPORTS))
        monitor.judge_once()
        monitor.judge_once()
        assert caplog.messages == [SAID, "monitor: the store answers again"]
        assert caplog.records[1].levelno == logging.WARNING
        assert monitor._problem is None and monitor.rounds == 2
        fake.fleet = Fleet([], PROBLEM)
        monitor.judge_once()
    assert caplog.messages == [SAID, "monitor: the store answers again", SAID]


def test_a_record_refused_is_a_problem_and_nothing_is_judged(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    fake = Round(monkeypatch, monitor)
    fake.recorded = ConnectionError("Error 111 connecting to redis://:pw@h:1. Refused.")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert monitor.judge_once() == []
    assert [c[0] for c in fake.calls] == ["read_fleet", "record"]
    assert caplog.messages == [
        "monitor: cannot judge the fleet: Redis refused the record: Error 111 connecting to "
        "redis://:***@h:1. Refused.; retrying every 2.5 s"]
    assert monitor.rounds == 0


def test_entries_refused_are_a_problem_after_the_services_are_recorded(
        monitor: Monitor, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    fake = Round(monkeypatch, monitor)
    fake.recorded = [Recorded("a", "late", "1-0", {"kind": "transition"})]
    fake.entries = [EntryRecorded("a", "e", "ok", "", None)]
    monitor.judge_once()
    fake.entries = ConnectionError("OOM command not allowed")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert monitor.judge_once() == fake.recorded
    assert caplog.messages == [
        "monitor: cannot judge the fleet: Redis refused the entries' record: OOM command "
        "not allowed; retrying every 2.5 s"]
    assert monitor.rounds == 1  # the round did not complete
    assert monitor.entries_recorded == [EntryRecorded("a", "e", "ok", "", None)]


def test_a_long_problem_is_cut_to_200_characters_and_every_s_shown_short(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monitor = Monitor(Settings(), fakeredis.FakeRedis(), every_s=2.0, owner="m1")
    Round(monkeypatch, monitor).fleet = Fleet([], "x" * 300)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        monitor.judge_once()
    assert caplog.messages == [f"monitor: cannot judge the fleet: {'x' * 200}; retrying "
                               "every 2 s"]


def test_a_whole_round_on_fakeredis() -> None:
    """Unreplaced: the fleet read, recorded through the real script, and logged."""
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    monitor = Monitor(Settings(), client, every_s=1.0, owner="m1")
    assert monitor.judge_once() == [Recorded("a", "fresh", "", None, settled=True)]
    backdate(client, "a", 20)
    (late,) = monitor.judge_once()
    assert (late.service, late.state) == ("a", "late") and late.incident != ""
    assert monitor.rounds == 2 and monitor.entries_recorded == []
    ((_, fields),) = client.xrange(KEYS.incidents("a"))
    assert fields[b"monitor"] == b"m1"


def test_a_steady_service_is_sent_again_only_in_its_slice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Judged as recorded and notified: skipped until its slice's turn; a change, or a
    record held back by a silence, each round."""
    from worker.core.names import summary_shard

    monkeypatch.setattr(module, "REFRESH_SLICES", 3)
    client = fakeredis.FakeRedis()
    names = ["a", "b", "c", "d", "e", "f"]
    for name in names:
        publish(client, name, interval_s=10)
    client.set(KEYS.silence("f"), '{"until_ms": 9999999999999}')  # silenced: nothing notified
    monitor = Monitor(Settings(), client, every_s=1.0, owner="m1")
    first = monitor.judge_once()  # a restarted monitor sends every service
    assert sorted((r.service, r.settled) for r in first) == [
        ("a", True), ("b", True), ("c", True), ("d", True), ("e", True), ("f", False)]
    slices = {name: summary_shard(name) % 3 for name in names}
    assert len(set(slices.values())) > 1  # the names fall in different slices
    backdate(client, "b", 20)  # late now
    (late,) = [r for r in monitor.judge_once() if r.service == "b"]  # a change: sent
    assert (late.state, late.settled) == ("late", True)
    for turn in (2, 3, 4):  # late and recorded late: steady too
        sent = {r.service for r in monitor.judge_once()}
        steady = {n for n in "abcde" if slices[n] == turn % 3}
        assert sent == steady | {"f"}, turn
    client.delete(KEYS.silence("f"))
    (f,) = [r for r in monitor.judge_once() if r.service == "f"]
    assert f.settled  # nothing held back any more: skipped from now on
    assert "f" not in {r.service for r in monitor.judge_once()} or slices["f"] == 2


def test_a_service_gone_from_the_fleet_is_forgotten_by_the_monitor() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    monitor = Monitor(Settings(), client, every_s=1.0, owner="m1")
    monitor.judge_once()
    assert monitor._settled == {"a": ("fresh", "")}
    client.zrem(KEYS.index, "a")
    client.hdel(KEYS.summary_of("a"), "a")
    publish(client, "b", interval_s=10)
    monitor.judge_once()
    assert monitor._settled == {"b": ("fresh", "")}


# -- the loop --------------------------------------------------------------------------------


class Clock:
    """``time`` for the loop: each reading of the clock takes a quarter of a second."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        now = self.now
        self.now += 0.25
        return now


class Stopping:
    """The loop's ``stopping`` event: a wait passes the time it was given."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.flag = False
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        self.flag = True

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.flag


class FakeDelivery:
    """A webhook's delivery thread, as the loop sees it: every call kept in ``log``."""

    def __init__(self, shown: str, log: list[str], cursor_error: Exception | None = None,
                 ) -> None:
        self.webhook = parse_webhooks(shown)[0]
        self.name = shown.split("//")[1]
        self.log = log
        self.cursor_error = cursor_error

    def start_cursor(self) -> str:
        self.log.append(f"cursor {self.name}")
        if self.cursor_error is not None:
            raise self.cursor_error
        return "0-0"

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    def join(self, timeout: float | None = None) -> None:
        self.log.append(f"join {self.name} {timeout}")


def _looping(monkeypatch: pytest.MonkeyPatch, durations: list[float],
             error: Exception | None = None) -> tuple[Monitor, Stopping, list[str]]:
    """A monitor whose rounds take ``durations`` (then it stops, or raises ``error``)."""
    clock = Clock()
    monkeypatch.setattr(module, "time", clock)
    monitor = Monitor(Settings(), fakeredis.FakeRedis(), every_s=2.0, owner="m1")
    stopping = Stopping(clock)
    monitor.stopping = stopping  # type: ignore[assignment]
    log: list[str] = []
    monitor.deliveries = [  # type: ignore[list-item]
        FakeDelivery("https://a.example", log),
        FakeDelivery("https://b.example:8443", log,
                     ConnectionError("Connection refused " + "x" * 300))]
    left = list(durations)

    def judge_once() -> list[Recorded]:
        log.append("round")
        clock.now += left.pop(0)
        if not left:
            if error is not None:
                raise error
            monitor.stop()
        return []

    monkeypatch.setattr(monitor, "judge_once", judge_once)
    return monitor, stopping, log


def test_the_loop_keeps_time_and_never_runs_two_rounds_at_once_after_a_slow_one(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Rounds start every 2 s from the first; one that took longer than that is followed
    by the next at once (no wait), and the time after is counted from there."""
    monitor, stopping, log = _looping(monkeypatch, [0.5, 3.0, 0.5])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        monitor.run()
    assert stopping.waits == [1.0, 0.0, 0.75]
    assert log == ["cursor a.example", "start a.example", "cursor b.example:8443",
                   "start b.example:8443", "round", "round", "round", "stop a.example",
                   "stop b.example:8443", "join a.example 10.0", "join b.example:8443 10.0"]
    assert caplog.messages == [
        "monitor: webhook https://b.example:8443: cannot start its cursor yet: Connection "
        "refused " + "x" * 181]
    assert caplog.records[0].levelno == logging.WARNING


def test_the_deliveries_are_stopped_and_joined_when_a_round_raises(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monitor, stopping, log = _looping(monkeypatch, [0.5, 0.5], RuntimeError("bug"))
    with pytest.raises(RuntimeError) as raised:
        monitor.run()
    assert str(raised.value) == "bug" and stopping.waits == [1.0]
    assert log[-4:] == ["stop a.example", "stop b.example:8443", "join a.example 10.0",
                        "join b.example:8443 10.0"]


def test_a_stopped_monitor_runs_no_round_and_its_deliveries_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monitor, stopping, log = _looping(monkeypatch, [0.5])
    monitor.stop()
    monitor.run()
    assert "round" not in log and stopping.waits == []
    assert log[-2:] == ["join a.example 10.0", "join b.example:8443 10.0"]


def test_a_real_monitor_thread_stops_when_asked() -> None:
    """With the real clock and event: ``stop()`` ends ``run()`` within its wait."""
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    monitor = Monitor(Settings(), client, every_s=0.05, owner=f"m{os.getpid()}")
    thread = threading.Thread(target=monitor.run, daemon=True)
    thread.start()
    wait_for(lambda: monitor.rounds >= 2, 60, what="two rounds")  # no promise: a busy machine
    monitor.stop()
    thread.join(timeout=60)
    assert not thread.is_alive() and monitor.rounds >= 2


def test_a_steady_state_with_a_new_diagnosis_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.core.names import summary_shard
    from worker.core.states import Diagnosis

    monkeypatch.setattr(module, "REFRESH_SLICES", 1000)
    monitor = Monitor(Settings(), fakeredis.FakeRedis(), every_s=1.0, owner="m1")
    name = next(n for n in (f"s{i}" for i in range(100)) if summary_shard(n) % 1000 != 0)
    monitor._settled = {name: ("stale", "beat_down")}
    same = HeartbeatReport(name, State.STALE, "r", diagnosis=Diagnosis.BEAT_DOWN)
    moved = same._replace(diagnosis=Diagnosis.BROKER_DOWN)
    assert monitor._due([same]) == []
    assert monitor._due([moved]) == [moved]
    assert monitor._due([same._replace(state=State.LATE)]) == [same._replace(state=State.LATE)]


def test_a_service_never_seen_fresh_has_nothing_to_notify_and_is_settled() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "g", interval_s=10)
    backdate(client, "g", 60)  # stale at its first judgement: recorded, never notified
    monitor = Monitor(Settings(), client, every_s=1.0, owner="m1")
    (first,) = monitor.judge_once()
    assert (first.state, first.notification, first.settled) == ("stale", None, True)
    assert monitor._settled == {"g": ("stale", first_diagnosis(client))}


def first_diagnosis(client: fakeredis.FakeRedis) -> str:
    return (client.hget(KEYS.observed("g"), "diagnosis") or b"").decode()


def test_a_transition_another_monitor_recorded_makes_this_one_send_everything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "REFRESH_SLICES", 10**6)  # no slice: only the counter
    client = fakeredis.FakeRedis()
    publish(client, "x", interval_s=10)
    a = Monitor(Settings(), client, every_s=1.0, owner="a")
    b = Monitor(Settings(), client, every_s=1.0, owner="b")
    a.judge_once()
    b.judge_once()
    assert a._settled == {"x": ("fresh", "")}
    backdate(client, "x", 20)
    (late,) = b.judge_once()  # b records x late; a never sees it late
    assert late.incident and int(client.get(KEYS.transitions) or 0) == 1
    publish(client, "x", interval_s=10)  # back: fresh again, as a last remembers it
    (back,) = a.judge_once()  # the counter moved: a sends x, and records the recovery
    assert (back.service, back.state) == ("x", "fresh") and back.incident
    assert int(client.get(KEYS.transitions) or 0) == 2
    assert a.judge_once() == []  # settled again: nothing sent
