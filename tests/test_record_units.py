"""The monitors' record of services, in process: when a state began (``began_ms``, both
sides of each threshold), the exact judgement ``record.lua`` gets, the calls sent (250
services a call, twenty calls a round trip, the script's head), what comes back, store
errors raised, and the Redis Cluster path (one call a service, the outbox after). fakeredis
runs the real script through lupa; a client that keeps every batch shows what was sent."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
import redis

from tests.support.publishing import backdate, publish
from tests.support.recording_client import Recording, RecordingCluster
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.core.states import Diagnosis, State, Thresholds
from worker.observe.record import (
    RECORD_SCRIPT,
    Recorded,
    _parse,
    began_ms,
    judgement,
    record,
)
from worker.read.reader import HeartbeatReport, read_heartbeat

KEYS = Keys()
TTL = str(Settings().incidents_ttl_ms)
T = Thresholds(15.0, 30.0)
PAYLOAD: Any = {"ts_ms": 1_000_000, "seq": 7}


def _report(service: str = "petsage", state: State = State.FRESH, **fields: Any,
            ) -> HeartbeatReport:
    base: dict[str, Any] = {"reason": "why", "age_s": 1.0, "thresholds": T,
                            "payload": PAYLOAD, "now_ms": 1_001_000}
    return HeartbeatReport(service, state, **{**base, **fields})


def _echo(command: tuple[Any, ...]) -> Any:
    """An EVAL answered without a script: each service's recorded state is its name."""
    numkeys = command[2]
    judged = [json.loads(j) for j in command[3 + numkeys + 5:]]
    return [[j["service"].encode(), b"", b"", 0] for j in judged]


# -- when a state began ----------------------------------------------------------------------


def test_a_fresh_state_began_when_the_heartbeat_landed() -> None:
    assert began_ms(_report()) == 1_000_000
    assert began_ms(_report(age_s=100.0)) == 1_000_000
    assert began_ms(_report(payload={"ts_ms": "1000000"})) == 1_000_000


@pytest.mark.parametrize(("state", "age_s", "began"), [
    (State.LATE, 15.0, 1_000_000),  # late at exactly its threshold: not by age
    (State.LATE, 15.001, 1_015_000),
    (State.LATE, 40.0, 1_015_000),  # late since 15 s, whatever the age
    (State.STALE, 30.0, 1_000_000),
    (State.STALE, 30.001, 1_030_000),
    (State.STALE, 20.0, 1_000_000),  # stale below its age (an error status)
    (State.MISSING, 50.0, 1_000_000),
    (State.INVALID, 50.0, 1_000_000),
])
def test_a_late_or_stale_state_began_when_the_heartbeat_reached_its_threshold(
        state: State, age_s: float, began: int) -> None:
    assert began_ms(_report(state=state, age_s=age_s)) == began


def test_the_threshold_is_rounded_to_the_millisecond() -> None:
    odd = Thresholds(15.0006, 30.0004)
    assert began_ms(_report(state=State.LATE, age_s=16.0, thresholds=odd)) == 1_015_001
    assert began_ms(_report(state=State.STALE, age_s=31.0, thresholds=odd)) == 1_030_000


@pytest.mark.parametrize("missing", ["payload", "thresholds", "age_s"])
def test_without_the_heartbeat_a_state_began_at_the_judgement(missing: str) -> None:
    report = _report(state=State.STALE, age_s=40.0)._replace(**{missing: None})
    assert began_ms(report) == 1_001_000
    assert began_ms(report._replace(now_ms=None)) == 0


# -- the judgement sent ----------------------------------------------------------------------


def test_the_judgement_of_a_report_with_its_heartbeat() -> None:
    report = _report(state=State.LATE, age_s=16.23456, reason="r" * 301,
                     diagnosis=Diagnosis.BEAT_DOWN, now_ms=1_016_234)
    assert judgement(report) == json.dumps({
        "service": "petsage", "to": "late", "diagnosis": "beat_down", "reason": "r" * 300,
        "at": 1_015_000, "seen": 1_016_234, "age": "16.235", "seq": "7"})


def test_the_judgement_of_a_report_without_a_heartbeat() -> None:
    report = HeartbeatReport("petsage", State.MISSING, "no heartbeat", now_ms=None)
    assert judgement(report) == (
        '{"service": "petsage", "to": "missing", "diagnosis": "", "reason": "no heartbeat", '
        '"at": 0, "seen": 0, "age": "", "seq": ""}')
    no_seq = _report(payload={"ts_ms": 5}, age_s=0.0)
    assert json.loads(judgement(no_seq))["seq"] == ""
    assert json.loads(judgement(no_seq))["age"] == "0.000"


# -- what is sent, and what comes back -------------------------------------------------------


def test_250_services_a_call_and_twenty_calls_a_round_trip() -> None:
    """5,001 services: 21 calls (20 of 250 and one of 1), in two round trips, each call
    with its 751 keys, the script's head and its services' judgements; every service's
    reply read back in order."""
    reports = [_report(f"s{i}") for i in range(5001)]
    client = Recording(answer=_echo)
    recorded = record(client, KEYS, reports, monitor_id="m1")
    assert [len(batch) for batch in client.batches] == [20, 1]
    calls = client.batches[0] + client.batches[1]
    for index, call in enumerate(calls):
        chunk = reports[index * 250:(index + 1) * 250]
        names = [r.service for r in chunk]
        assert call == ("EVAL", RECORD_SCRIPT, 3 * len(chunk) + 1,
                        *KEYS.monitor_keys(names), KEYS.outbox, "1000", TTL, "10000", "m1",
                        "1", *(judgement(r) for r in chunk))
    assert calls[0][2] == 751 and calls[-1][2] == 4
    assert [r.service for r in recorded] == [f"s{i}" for i in range(5001)]
    assert all(r.state == r.service and r.incident == "" and r.notification is None
               for r in recorded)


def test_the_head_takes_the_cap_and_the_ttl_given() -> None:
    client = Recording(answer=_echo)
    record(client, KEYS, [_report()], monitor_id="host:1", incidents_len=10, ttl_ms=5000)
    (call,) = client.batches[0]
    assert call[:7] == ("EVAL", RECORD_SCRIPT, 4, *KEYS.monitor_keys(["petsage"]),
                        KEYS.outbox)
    assert call[7:12] == ("10", "5000", "10000", "host:1", "1")


def test_unreachable_and_unclocked_reports_are_not_sent() -> None:
    client = Recording(answer=_echo)
    reports = [_report("a"), _report("b", State.UNREACHABLE), _report("c", now_ms=0),
               _report("d", now_ms=None), _report("e", State.MISSING)]
    assert [r.service for r in record(client, KEYS, reports, monitor_id="m")] == ["a", "e"]
    assert record(client, KEYS, reports[1:4], monitor_id="m") == []
    assert len(client.batches) == 1  # nothing to send: no round trip


def test_an_error_reply_is_raised() -> None:
    error = redis.ResponseError("NOSCRIPT no")
    client = Recording(answer=lambda _: error)
    with pytest.raises(redis.ResponseError) as raised:
        record(client, KEYS, [_report()], monitor_id="m")
    assert raised.value is error


def test_the_reply_is_read_as_text_and_the_notification_as_json() -> None:
    reply = [[b"late", b"5-0", b'{"kind": "transition", "seq": "7"}', 0], [b"fresh", b"", b"", 1]]
    assert _parse([_report("a"), _report("b")], reply) == [
        Recorded("a", "late", "5-0", {"kind": "transition", "seq": "7"}),
        Recorded("b", "fresh", "", None, settled=True)]
    with pytest.raises(ValueError, match="zip"):
        _parse([_report("a")], reply)


def test_on_fakeredis_a_transition_comes_back_with_its_incident_and_notification() -> None:
    server = fakeredis.FakeRedis()
    publish(server, interval_s=10)
    first = record(server, KEYS, [read_heartbeat(server, "petsage")], monitor_id="m1")
    assert first == [Recorded("petsage", "fresh", "", None, settled=True)]
    backdate(server, "petsage", 20)
    report = read_heartbeat(server, "petsage")
    (late,) = record(server, KEYS, [report], monitor_id="m1")
    ((incident, fields),) = server.xrange(KEYS.incidents("petsage"))
    ((_, event),) = server.xrange(KEYS.outbox)
    assert late.service == "petsage" and late.state == "late"
    assert late.incident == incident.decode()
    assert late.notification == json.loads(event[b"event"])
    assert late.notification is not None and late.notification["new_state"] == "late"
    assert fields[b"monitor"] == b"m1" and fields[b"to"] == b"late"
    assert server.pttl(KEYS.incidents("petsage")) > Settings().incidents_ttl_ms - 60_000


# -- on a Redis Cluster ----------------------------------------------------------------------


def test_on_a_cluster_each_service_is_one_call_and_the_outbox_comes_after() -> None:
    server = fakeredis.FakeRedis()
    for service in ("a", "b"):
        publish(server, service, interval_s=10)
    client = RecordingCluster(server)
    reports = [read_heartbeat(server, s) for s in ("a", "b")]
    assert record(client, KEYS, reports, monitor_id="m1") == [
        Recorded("a", "fresh", "", None, True), Recorded("b", "fresh", "", None, True)]
    assert client.batches == [[
        ("EVAL", RECORD_SCRIPT, 3, *KEYS.monitor_keys([r.service]), "1000", TTL, "10000",
         "m1", "0", judgement(r)) for r in reports]]  # no notification: no second trip
    backdate(server, "a", 20)
    backdate(server, "b", 40)
    client.batches.clear()
    reports = [read_heartbeat(server, s) for s in ("a", "b")]
    recorded = record(client, KEYS, reports, monitor_id="m1", incidents_len=20, ttl_ms=9000)
    assert [(r.service, r.state) for r in recorded] == [("a", "late"), ("b", "stale")]
    assert len(client.batches) == 2
    assert client.batches[0][0][6:11] == ("20", "9000", "10000", "m1", "0")
    assert client.batches[1] == [
        ("XADD", KEYS.outbox, "MAXLEN", "~", 10000, "*", "event", json.dumps(r.notification))
        for r in recorded]
    events = [json.loads(f[b"event"]) for _, f in server.xrange(KEYS.outbox)]
    assert events == [r.notification for r in recorded]
    assert [e["new_state"] for e in events] == ["late", "stale"]
    assert 8000 < server.pttl(KEYS.incidents("a")) <= 9000


def test_on_a_cluster_a_service_not_notified_adds_nothing_to_the_outbox() -> None:
    server = fakeredis.FakeRedis()
    publish(server, "a", interval_s=10)
    publish(server, "b", interval_s=10)
    client = RecordingCluster(server)
    record(client, KEYS, [read_heartbeat(server, s) for s in ("a", "b")], monitor_id="m")
    backdate(server, "b", 20)
    client.batches.clear()
    recorded = record(client, KEYS, [read_heartbeat(server, s) for s in ("a", "b")],
                      monitor_id="m")
    assert [r.notification is None for r in recorded] == [True, False]
    assert client.batches[1] == [("XADD", KEYS.outbox, "MAXLEN", "~", 10000, "*", "event",
                                  json.dumps(recorded[1].notification))]


def test_on_a_cluster_an_error_reply_is_raised_for_the_record_and_for_the_outbox() -> None:
    error = redis.ResponseError("CROSSSLOT")
    with pytest.raises(redis.ResponseError) as raised:
        record(RecordingCluster(answer=lambda _: error), KEYS, [_report()], monitor_id="m")
    assert raised.value is error

    note = b'{"kind": "transition"}'

    def outbox_fails(command: tuple[Any, ...]) -> Any:
        return [[b"late", b"1-0", note, 1]] if command[0] == "EVAL" else error

    client = RecordingCluster(answer=outbox_fails)
    with pytest.raises(redis.ResponseError) as raised:
        record(client, KEYS, [_report()], monitor_id="m")
    assert raised.value is error
    assert [c[0] for batch in client.batches for c in batch] == ["EVAL", "XADD"]


class Short(RecordingCluster):
    """A cluster client whose batches come back one reply short."""

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return super().execute_many(commands)[:-1]


def test_on_a_cluster_a_reply_short_of_the_calls_is_an_error_not_a_service_dropped() -> None:
    client = Short(answer=lambda c: [[b"fresh", b"", b"", 1]])
    with pytest.raises(ValueError, match="zip"):
        record(client, KEYS, [_report("a"), _report("b")], monitor_id="m")
