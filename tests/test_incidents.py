"""The monitors' record, fast: transitions recorded once however many monitors judge,
uptime and MTTR from the incident stream, silences holding notifications back, webhook
delivery in order with retries, URLs never shown whole. fakeredis and a fake poster; the
real-process claims are in ``test_monitor_e2e.py``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
import time
from typing import Any

import fakeredis
import pytest

from tests.support.helpers import wait_for
from tests.support.publishing import backdate, publish
from tests.support.receiver import Receiver
from worker.cli.silence import parse_duration
from worker.core.errors import ConfigError
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.core.states import State, Thresholds
from worker.core.webhook_urls import parse_format, parse_webhooks
from worker.observe.delivery import Delivery, post, split_credentials
from worker.observe.record import began_ms, record
from worker.observe.webhooks import event_body, render, text_line
from worker.read.incidents import Transition, parse_silence, read_incidents, summarize
from worker.read.reader import HeartbeatReport, read_heartbeat

KEYS = Keys()


def _judge(client: fakeredis.FakeRedis, monitor: str = "m1") -> list[Any]:
    return record(client, KEYS, [read_heartbeat(client, "petsage")], monitor_id=monitor)


def _stream(client: fakeredis.FakeRedis) -> list[tuple[str, str, str]]:
    return [(f[b"from"].decode(), f[b"to"].decode(), f[b"diagnosis"].decode())
            for _, f in client.xrange(KEYS.incidents("petsage"))]


def _outbox(client: fakeredis.FakeRedis) -> list[tuple[str, str]]:
    return [(e["old_state"], e["new_state"]) for e in
            (json.loads(f[b"event"]) for _, f in client.xrange(KEYS.outbox))]


def test_each_transition_is_recorded_and_queued_once_however_many_monitors_judge() -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    for monitor in ("m1", "m2", "m1"):
        _judge(client, monitor)
    assert _stream(client) == []  # the first judgement starts the record; no transition
    assert client.hget(KEYS.observed("petsage"), "first_state") == b"fresh"
    backdate(client, "petsage", 20)
    recorded = [_judge(client, m)[0] for m in ("m1", "m2")]
    assert [r.incident != "" for r in recorded] == [True, False]  # the second finds it done
    backdate(client, "petsage", 40)
    _judge(client, "m2")
    _judge(client, "m1")
    publish(client, interval_s=10)
    _judge(client, "m1")
    _judge(client, "m2")
    assert _stream(client) == [("fresh", "late", "beat_down"), ("late", "stale", "beat_down"),
                               ("stale", "fresh", "")]
    assert _outbox(client) == [("fresh", "late"), ("late", "stale"), ("stale", "fresh")]
    assert client.hget(KEYS.observed("petsage"), "transitions") == b"3"
    assert 0 < client.pttl(KEYS.incidents("petsage")) <= Settings().incidents_ttl_ms


def test_a_judgement_older_than_the_recorded_change_changes_nothing() -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    early = read_heartbeat(client, "petsage")  # fresh, judged first but sent last
    _judge(client)
    backdate(client, "petsage", 20)
    _judge(client)  # fresh -> late
    record(client, KEYS, [early._replace(now_ms=early.now_ms - 1)], monitor_id="slow")
    assert _stream(client) == [("fresh", "late", "beat_down")]


def test_a_state_begins_when_the_heartbeat_says_not_when_a_monitor_looked() -> None:
    thresholds = Thresholds(15.0, 30.0)
    payload: Any = {"ts_ms": 1_000_000, "seq": 1}
    base = HeartbeatReport("s", State.FRESH, "", age_s=1.0, thresholds=thresholds,
                           payload=payload, now_ms=1_001_000)
    assert began_ms(base) == 1_000_000
    assert began_ms(base._replace(state=State.LATE, age_s=20.0, now_ms=1_020_000)) == 1_015_000
    assert began_ms(base._replace(state=State.STALE, age_s=40.0, now_ms=1_040_000)) == 1_030_000
    # late because degraded (not by age): since that heartbeat landed
    assert began_ms(base._replace(state=State.LATE, age_s=2.0)) == 1_000_000
    assert began_ms(HeartbeatReport("s", State.MISSING, "", now_ms=5)) == 5


def _t(at_ms: int, old: str, new: str, diagnosis: str = "") -> Transition:
    return Transition(f"{at_ms}-0", old, new, diagnosis, "why", at_ms)


def test_uptime_outages_and_mttr_per_window() -> None:
    hour = 3_600_000
    now = 40 * 86_400_000
    record_ = {"state": "fresh", "first_ms": str(now - 10 * 86_400_000), "at_ms": str(now - hour)}
    transitions = [
        _t(now - 9 * 86_400_000, "fresh", "stale", "beat_down"),   # 1 h outage, 9 days ago
        _t(now - 9 * 86_400_000 + hour, "stale", "fresh"),
        _t(now - 3 * hour, "fresh", "late"),                      # late is up
        _t(now - 2 * hour, "late", "stale", "no_consumer"),       # stale, then missing:
        _t(now - 2 * hour + 600_000, "stale", "missing"),         # one outage of 1 h
        _t(now - hour, "missing", "fresh"),
    ]
    s = summarize("petsage", record_, transitions, None, now)
    assert s.uptime["24h"] == pytest.approx(23 / 24)
    assert s.outages == {"24h": 1, "7d": 1, "30d": 2}
    assert s.mttr_s["24h"] == pytest.approx(3600)
    assert s.covered_s["30d"] == pytest.approx(10 * 86_400)  # watched for 10 days only
    assert s.uptime["30d"] == pytest.approx(1 - 2 / 240)
    assert [o.diagnosis for o in s.recent] == ["no_consumer", "beat_down"]  # newest first
    ongoing = summarize("petsage", {**record_, "state": "stale"},
                        [*transitions, _t(now - 1800_000, "fresh", "stale", "broker_down")],
                        None, now)
    assert ongoing.recent[0].ended_ms is None and ongoing.outages["24h"] == 2
    assert ongoing.uptime["24h"] == pytest.approx(1 - 1.5 / 24)
    never = summarize("x", {}, [], None, now)
    assert not never.monitored and never.uptime["24h"] is None


def test_a_silence_holds_notifications_back_and_the_end_releases_what_changed() -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    _judge(client)
    client.set(KEYS.silence("petsage"), json.dumps({"until_ms": 2**41, "reason": "upgrade"}))
    backdate(client, "petsage", 40)
    _judge(client)
    assert _stream(client) == [("fresh", "stale", "beat_down")]  # recorded
    assert _outbox(client) == []  # not notified
    client.delete(KEYS.silence("petsage"))
    _judge(client)
    _judge(client)
    assert _outbox(client) == [("fresh", "stale")]  # held back, said once at the end
    # Down and up again within a silence: nothing to say when it ends.
    client.set(KEYS.silence("petsage"), "{}")
    publish(client, interval_s=10)
    _judge(client)
    backdate(client, "petsage", 40)
    _judge(client)
    client.delete(KEYS.silence("petsage"))
    _judge(client)
    assert _outbox(client) == [("fresh", "stale")]  # notified stale, still stale
    assert parse_silence(b"not json") is None


def test_a_service_never_seen_fresh_is_recorded_not_notified_and_its_keys_go_soon() -> None:
    """A name added to the index that never published (or a service first seen down) is
    recorded, not notified, and its record expires within an hour; seen fresh once, it is
    notified like any other, and kept the full retention."""
    client = fakeredis.FakeRedis()
    publish(client, "a", interval_s=10)
    publish(client, "b", interval_s=10)
    backdate(client, "b", 40)
    client.zadd(KEYS.index, {f"junk-{i}": 1 for i in range(300)})
    for _ in range(2):
        record(client, KEYS, [read_heartbeat(client, s) for s in
                              ("a", "b", *(f"junk-{i}" for i in range(300)))], monitor_id="m")
    assert _outbox(client) == []  # a first seen fresh is not news; b and junk never fresh
    assert client.hget(KEYS.observed("b"), "state") == b"stale"
    assert 0 < client.pttl(KEYS.observed("b")) <= 3_600_000
    assert 0 < client.pttl(KEYS.observed("junk-7")) <= 3_600_000
    assert client.pttl(KEYS.observed("a")) > 3_600_000
    assert client.hget(KEYS.observed("b"), "notified") is None
    publish(client, "b", interval_s=10)  # b is fresh at last: known from now on
    record(client, KEYS, [read_heartbeat(client, "b")], monitor_id="m")
    assert _outbox(client) == [] and client.pttl(KEYS.observed("b")) > 3_600_000
    assert client.hget(KEYS.observed("b"), "fresh_ms") is not None
    backdate(client, "b", 40)
    backdate(client, "a", 40)
    record(client, KEYS, [read_heartbeat(client, s) for s in ("a", "b")], monitor_id="m")
    assert _outbox(client) == [("fresh", "stale"), ("fresh", "stale")]


def test_a_record_from_before_fresh_ms_was_kept_still_notifies() -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    backdate(client, "petsage", 40)
    client.hset(KEYS.observed("petsage"), mapping={
        "state": "fresh", "at_ms": 1, "seen_ms": 1, "notified": "fresh"})
    _judge(client)
    assert _outbox(client) == [("fresh", "stale")]


def test_reading_the_record_back() -> None:
    client = fakeredis.FakeRedis()
    publish(client, interval_s=10)
    _judge(client)
    backdate(client, "petsage", 40)
    _judge(client)
    now_ms, found = read_incidents(client, KEYS, ["petsage", "other"])
    assert found["petsage"].state == "stale" and found["petsage"].outages["24h"] == 1
    assert not found["other"].monitored
    shape = found["petsage"].as_json(now_ms)
    assert set(shape) == {"monitored", "state", "since_ms", "first_ms", "truncated",
                          "windows", "outages", "silence"}
    assert shape["truncated"] is False
    assert set(shape["windows"]) == {"24h", "7d", "30d"}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900),
                                               ("2h", 7200), ("1d", 86_400),
                                               ("1h30m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "abc", "1w", "400d", "1.5h", "5 m x"])
def test_bad_durations_are_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="accepted: a duration"):
        parse_duration(text)


def test_webhook_urls_are_checked_and_never_shown_whole() -> None:
    hooks = parse_webhooks("https://user:pw@hooks.example.com/services/T/B/SECRET, "
                           "http://127.0.0.1:8080/hook https://hooks.example.com/services/T/B/SECRET")
    assert [h.shown for h in hooks] == ["https://hooks.example.com", "http://127.0.0.1:8080",
                                        "https://hooks.example.com"]
    assert all("SECRET" not in h.shown and "pw" not in h.shown and "SECRET" not in h.id
               for h in hooks)
    for bad in ("ftp://x/y", "hooks.example.com/x", "https://", "http://h:99999/"):
        with pytest.raises(ConfigError) as info:
            parse_webhooks(f"https://ok.example.com/a,{bad}")
        assert "accepted: http:// or https://" in str(info.value)
        assert "/y" not in str(info.value) and "/x" not in str(info.value)
    with pytest.raises(ConfigError, match="accepted: json, slack"):
        parse_format("xml")
    with pytest.raises(ConfigError, match="HEARTBEAT_WEBHOOK_URLS"):
        Settings.from_env({"HEARTBEAT_WEBHOOK_URLS": "gopher://x"})


def test_bodies() -> None:
    event = {"service": "billing", "old_state": "fresh", "new_state": "stale",
             "diagnosis": "no_consumer", "reason": "r", "age_s": "31.500", "seq": "7",
             "since_ms": 1_700_000_000_000, "incident": "1-0"}
    body = event_body("5-0", event, "https://dash.example.com/")
    assert body == {"id": "5-0", "kind": "transition", "service": "billing", "old_state": "fresh",
                    "new_state": "stale", "diagnosis": "no_consumer", "reason": "r",
                    "age_s": 31.5, "seq": 7, "since": "2023-11-14T22:13:20.000+00:00",
                    "since_ms": 1_700_000_000_000, "incident": "1-0",
                    "dashboard_url": "https://dash.example.com/"}
    assert render("slack", body) == {"text": text_line(body)}
    assert "billing fresh -> stale (no_consumer)" in text_line(body)
    assert render("json", body) is body
    amended = event_body("6-0", {**event, "kind": "diagnosis", "old_state": "stale",
                                 "old_diagnosis": "beat_or_broker", "diagnosis": "broker_down"},
                         None)
    assert amended["kind"] == "diagnosis" and amended["old_diagnosis"] == "beat_or_broker"
    assert text_line(amended) == ("PetSage heartbeat: billing still stale, diagnosis "
                                  "beat_or_broker -> broker_down: r")


class FakeReceiver:
    """A poster that answers from a script of statuses (then 200) and records each call."""

    def __init__(self, *answers: int | str) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int | str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, url: str, data: bytes, timeout_s: float) -> int:
        with self.lock:
            answer = self.answers.pop(0) if self.answers else 200
            self.calls.append((answer, json.loads(data)))
        if answer == "timeout":
            raise TimeoutError("timed out")
        return int(answer)

    def delivered(self) -> list[tuple[str, str, str]]:
        return [(b["service"], b["old_state"], b["new_state"]) for a, b in self.calls
                if a == 200]


def _queue(client: fakeredis.FakeRedis, *states: str) -> None:
    for old, new in itertools.pairwise(states):
        client.xadd(KEYS.outbox, {"event": json.dumps(
            {"service": "petsage", "old_state": old, "new_state": new, "reason": "r"})})


def _delivery(client: fakeredis.FakeRedis, poster: FakeReceiver, owner: str = "m1",
              url: str = "https://user:hunter2@hooks.example.com/T/SECRET") -> Delivery:
    (hook,) = parse_webhooks(url)
    return Delivery(client, KEYS, hook, owner=owner, fmt="json", dashboard_url=None,
                    poster=poster, backoff_s=(0.05, 0.1), poll_s=0.02)


def test_a_failing_receiver_gets_each_notification_once_and_in_order(
        caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    receiver = FakeReceiver(500, "timeout", 200, 404)
    caplog.set_level(logging.INFO)
    delivery = _delivery(client, receiver)
    delivery.start_cursor()  # as the monitor does before its first round
    _queue(client, "fresh", "late", "stale", "fresh")
    delivery.start()
    try:
        wait_for(lambda: len(receiver.calls) >= 5, 5, what="five posts")
        time.sleep(0.2)  # would a sixth (a repeat) come?
    finally:
        delivery.stop()
        delivery.join(5)
    assert [a for a, _ in receiver.calls] == [500, "timeout", 200, 404, 200]
    assert [b["new_state"] for _, b in receiver.calls] == ["late", "late", "late", "stale",
                                                           "fresh"]
    # 404 will not change: dropped with a line, and the next one is not held up behind it.
    assert receiver.delivered() == [("petsage", "fresh", "late"), ("petsage", "stale", "fresh")]
    log = caplog.text
    assert "refused it (HTTP 404)" in log and "retry 1 in 0.05 s" in log
    assert "hunter2" not in log and "SECRET" not in log and "hooks.example.com" in log
    # The next holder (the first gave its lease up on stop) starts after the cursor: no
    # repeat; and it delivers what comes next.
    again = _delivery(client, receiver, owner="m2")
    again.start()
    try:
        _queue(client, "fresh", "missing")
        wait_for(lambda: len(receiver.calls) == 6, 5, what="the next one by the next holder")
        time.sleep(0.2)
    finally:
        again.stop()
        again.join(5)
    assert len(receiver.calls) == 6 and receiver.calls[-1][1]["new_state"] == "missing"


def test_two_monitors_deliver_each_notification_once() -> None:
    client = fakeredis.FakeRedis()
    receiver = FakeReceiver()
    deliveries = [_delivery(client, receiver, owner=f"m{i}") for i in range(2)]
    deliveries[0].start_cursor()
    _queue(client, *(["fresh", "stale"] * 20))
    for d in deliveries:
        d.start()
    try:
        wait_for(lambda: len(receiver.calls) >= 39, 10, what="39 posts")
        time.sleep(0.2)
    finally:
        for d in deliveries:
            d.stop()
        for d in deliveries:
            d.join(5)
    ids = [b["id"] for _, b in receiver.calls]
    assert len(ids) == 39 and len(set(ids)) == 39 and ids == sorted(ids, key=lambda i: (
        int(i.split("-")[0]), int(i.split("-")[1])))


def test_a_new_webhook_starts_after_what_is_queued_and_credentials_become_basic_auth() -> None:
    client = fakeredis.FakeRedis()
    _queue(client, "fresh", "stale")  # old news for a webhook added later
    receiver = FakeReceiver()
    delivery = _delivery(client, receiver)
    delivery.start_cursor()
    _queue(client, "stale", "fresh")
    delivery.start()
    try:
        wait_for(lambda: receiver.calls, 5, what="a post")
        time.sleep(0.2)
    finally:
        delivery.stop()
        delivery.join(5)
    assert receiver.delivered() == [("petsage", "stale", "fresh")]
    assert client.pttl(KEYS.webhook_cursor(delivery.webhook.id)) > 0
    url, auth = split_credentials("https://us%40er:p%3Ass@hooks.example.com:8443/T/X?a=1")
    assert url == "https://hooks.example.com:8443/T/X?a=1"
    assert auth == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert split_credentials("https://hooks.example.com/T") == ("https://hooks.example.com/T",
                                                                None)


def test_a_real_post_with_credentials_in_the_url_authenticates() -> None:
    receiver = Receiver(200, 503)
    try:
        url = receiver.url_with("hook-user:pa%3Ass")
        assert post(url, b'{"a": 1}', 5) == 200
        assert post(url, b'{"a": 2}', 5) == 503  # an error status is returned, not raised
        first = receiver.posts[0]
        assert first["path"] == "/hook/SECRET-TOKEN" and first["body"] == {"a": 1}
        assert first["authorization"] == "Basic " + base64.b64encode(
            b"hook-user:pa:ss").decode()
    finally:
        receiver.close()
