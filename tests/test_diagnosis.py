"""Diagnosis rules, beat marker writes, expiry on the Redis clock and skew-proof lag."""

from __future__ import annotations

import json
import time
from typing import Any

import fakeredis
import pytest
import redis

from tests.support.publishing import publish
from tests.support.stores import SETTINGS, SkewedClock, make_store
from worker import State, read_heartbeat
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.core.states import Thresholds
from worker.publish.backlog import redis_backlog
from worker.publish.beat_marker import BeatMarker
from worker.publish.health import Discarded, run_health
from worker.publish.queue_bound import QueueBound
from worker.read.diagnosis import beat_seen_ms, diagnose, parse_marker, publish_failure
from worker.read.store_writes import parse_info, refusal

NOW = 1_800_000_000_000
T = Thresholds(15, 30)


def marker(age_s: float, depth: int | None = 3) -> dict[str, Any]:
    return {"published_at_ms": NOW - int(age_s * 1000), "next_due_ms": NOW, "seq": 9,
            "queue_depth": depth, "interval_s": 10}


def refused(base: dict[str, Any] | None, age_s: float) -> dict[str, Any]:
    """A marker noting a publish the broker refused ``age_s`` ago (alone when ``base`` is None)."""
    failed = {"publish_failed_at_ms": NOW - int(age_s * 1000),
              "publish_error": "OperationalError: Error 111 connecting to broker"}
    if base is None:
        return {"published_at_ms": None, "next_due_ms": None, "seq": 0, "queue_depth": None,
                "interval_s": 10, **failed}
    return {**base, **failed}


def payload(**extra: Any) -> dict[str, Any]:
    return {"status": "ok", "interval_s": 10, "queue_lag_ms": 3.0, "duration_ms": 2.0, **extra}


@pytest.mark.parametrize(
    ("state", "age_s", "the_payload", "the_marker", "expected"),
    [
        (State.FRESH, 1, payload(), marker(1), None),
        (State.UNREACHABLE, None, None, None, "store_unreachable"),
        (State.MISSING, None, None, None, "never_seen"),
        (State.MISSING, None, None, marker(2), "no_consumer"),
        (State.MISSING, None, None, marker(60), "beat_down"),
        (State.STALE, 40, payload(), marker(41), "beat_down"),
        (State.STALE, 40, payload(), None, "beat_down"),
        (State.STALE, 40, payload(), marker(3), "no_consumer"),
        (State.LATE, 20, payload(), marker(3), "no_consumer"),
        (State.LATE, 20, payload(queue_lag_ms=9000.0, duration_ms=2000.0), marker(3),
         "worker_slow"),
        (State.LATE, 2, payload(status="degraded"), marker(2), "check_failed"),
        (State.STALE, 2, payload(status="error"), marker(2), "check_failed"),
        # Beat alive, the broker refusing its publishes: not beat's fault.
        (State.STALE, 40, payload(), refused(marker(41), 1), "broker_down"),
        (State.MISSING, None, None, refused(None, 1), "broker_down"),
        # A refusal noted long ago, beat silent since: beat itself is gone.
        (State.STALE, 40, payload(), refused(marker(41), 31), "beat_down"),
        # A refusal older than the last publish is over.
        (State.STALE, 40, payload(), refused(marker(2), 5), "no_consumer"),
    ],
)
def test_diagnosis_rules(state: State, age_s: float | None, the_payload: dict[str, Any] | None,
                         the_marker: dict[str, Any] | None, expected: str | None) -> None:
    diagnosis, why = diagnose(state, now_ms=NOW, age_s=age_s, payload=the_payload,
                              marker=the_marker, thresholds=T)
    assert diagnosis == expected
    assert bool(why) == (expected is not None)


def test_a_store_that_refuses_writes_is_named_before_the_keys_say_beat_down() -> None:
    why = "the store is at its memory limit"
    for state, age_s, the_payload, the_marker in [
            (State.STALE, 40, payload(), marker(41)), (State.MISSING, None, None, None),
            (State.MISSING, None, None, marker(60))]:
        diagnosis, text = diagnose(state, now_ms=NOW, age_s=age_s, payload=the_payload,
                                   marker=the_marker, thresholds=T, refusal=why)
        assert (diagnosis, text) == ("store_refuses_writes", why)
    # A recent heartbeat with a failing check is still the check's fault.
    assert diagnose(State.LATE, now_ms=NOW, age_s=2, payload=payload(status="degraded"),
                    marker=marker(2), thresholds=T, refusal=why)[0] == "check_failed"


def test_store_refusal_from_info() -> None:
    full = {"maxmemory": "1000000", "used_memory": "1000500", "maxmemory_policy": "noeviction",
            "mem_not_counted_for_evict": "0", "role": "master"}
    assert "memory limit" in (refusal(full) or "")
    assert refusal({**full, "maxmemory_policy": "allkeys-lru"}) is None  # evicts, writes go on
    assert refusal({**full, "used_memory": "500000"}) is None
    assert refusal({**full, "maxmemory": "0"}) is None  # no limit
    assert refusal({**full, "used_memory": "junk"}) is None
    replica = refusal({"role": "slave", "master_host": "10.0.0.1", "master_port": "6379"})
    assert replica is not None and "read-only replica (of 10.0.0.1:6379)" in replica
    text = b"# Replication\r\nrole:slave\r\nmaster_host:h\r\nmaster_port:1\r\n"
    assert parse_info(text)["role"] == "slave"
    assert parse_info({"role": "master", "maxmemory": 0}) == {"role": "master", "maxmemory": "0"}


def test_a_refused_publish_is_noted_in_the_marker_and_cleared_by_the_next(
        client: redis.Redis) -> None:
    key = Keys().beat("petsage")
    beat = BeatMarker(client, Keys(), "petsage", interval_s=10, retention_s=3600)
    beat.record_failure('OperationalError: "Error 111" \\ connecting\n\u00e9')
    alone = parse_marker(client.get(key))
    assert alone is not None and alone["published_at_ms"] is None
    assert alone["publish_error"] == "OperationalError: ?Error 111? ? connecting??"
    assert publish_failure(alone) == (alone["publish_failed_at_ms"], alone["publish_error"])
    beat.record_publish()
    beat.record_publish()
    beat.record_failure("ConnectionError: broker down")
    noted = parse_marker(client.get(key))
    assert noted is not None and noted["seq"] == 2  # the last publish stays recorded
    assert noted["publish_error"] == "ConnectionError: broker down"
    assert beat_seen_ms(noted) == noted["publish_failed_at_ms"] >= noted["published_at_ms"]
    beat.record_failure("ConnectionError: still down")
    again = parse_marker(client.get(key))
    assert again is not None and again["seq"] == 2
    assert again["publish_error"] == "ConnectionError: still down"
    beat.record_publish()
    after = parse_marker(client.get(key))
    assert after is not None and after["seq"] == 3 and publish_failure(after) is None
    assert "publish_error" not in after


def test_unreadable_markers_count_as_absent() -> None:
    for raw in (b"", b"junk", b"[]", json.dumps({"published_at_ms": "x"}).encode(),
                json.dumps({**marker(1), "published_at_ms": -10**400}).encode(),
                json.dumps({**marker(1), "seq": 10**30}).encode(),
                json.dumps({**marker(1), "queue_depth": "9"}).encode(), b"x" * 5000,
                redis.ResponseError("WRONGTYPE")):
        assert parse_marker(raw) is None
    assert parse_marker(json.dumps(marker(1)).encode()) == marker(1)


@pytest.fixture(params=["fakeredis", "redis-server"])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    if request.param == "fakeredis":
        return fakeredis.FakeRedis()
    return request.getfixturevalue("real")  # type: ignore[no-any-return]


def test_beat_marker_counts_publishes_and_reads_the_queue_depth(client: redis.Redis) -> None:
    beat = BeatMarker(client, Keys(), "petsage", interval_s=10, retention_s=3600)
    client.lpush("heartbeat", "a", "b")
    client.lpush("heartbeat\x06\x163", "c")
    bound = QueueBound(client, "heartbeat")
    beat.record_publish(bound.trim())
    beat.record_publish(bound.trim())
    stored = parse_marker(client.get(Keys().beat("petsage")))
    assert stored is not None and stored["seq"] == 2 and stored["queue_depth"] == 3
    assert stored["next_due_ms"] - stored["published_at_ms"] == 10_000
    assert abs(stored["published_at_ms"] - redis_time_ms(client.time())) < 2000
    assert 0 < client.pttl(Keys().beat("petsage")) <= 3_600_000
    assert beat.offset_ms is not None and abs(beat.offset_ms) < 2000


def test_beat_keeps_a_redis_broker_queue_to_the_newest_ten(client: redis.Redis) -> None:
    client.lpush("heartbeat", *[f"m{n}" for n in range(25)])  # m24 is the newest
    client.lpush("heartbeat\x06\x163", "p")
    assert QueueBound(client, "heartbeat").trim() == 10
    assert client.lrange("heartbeat", 0, -1) == [f"m{n}".encode() for n in range(24, 14, -1)]
    assert not client.exists("heartbeat\x06\x163")
    client.delete("heartbeat")
    client.lpush("heartbeat", "a", "b")
    assert QueueBound(client, "heartbeat").trim() == 2  # under the bound: untouched
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=None)
    assert QueueBound(dead, "heartbeat").trim() is None  # never raises


def test_a_failing_marker_write_never_raises_and_backs_off(
        caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, retry=None)
    beat = BeatMarker(dead, Keys(), "petsage", interval_s=1, retention_s=60)
    started = time.monotonic()
    for _ in range(20):
        beat.record_publish()
    assert time.monotonic() - started < 1.0  # tried once, then skipped for a while
    assert sum("beat marker not written" in r.message for r in caplog.records) == 1


def test_with_a_marker_the_reader_says_no_consumer_or_beat_down(client: redis.Redis) -> None:
    publish(client, interval_s=0.5)
    stored = json.loads(client.get(Keys().latest("petsage")) or b"")
    stored["ts_ms"] -= 5000
    client.set(Keys().latest("petsage"), json.dumps(stored))
    assert read_heartbeat(client, "petsage").diagnosis == "beat_down"  # no marker at all
    BeatMarker(client, Keys(), "petsage", interval_s=0.5, retention_s=60).record_publish()
    report = read_heartbeat(client, "petsage")
    assert report.state is State.STALE and report.diagnosis == "no_consumer"
    assert "no_consumer: beat published" in report.reason and report.beat is not None


def test_expired_heartbeats_are_discarded_on_the_redis_clock(
        client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.publish.health

    # The worker's clock is an hour ahead: Celery's own expiry would drop everything.
    monkeypatch.setattr(worker.publish.health, "time", SkewedClock(3600))
    redis_now = redis_time_ms(client.time())
    fresh = run_health(client, make_store(client), SETTINGS, node="n",
                       published_at_ms=redis_now - 100, expires_ms=10_000)
    assert not isinstance(fresh, Discarded) and fresh.accepted
    p = read_heartbeat(client, "petsage").payload
    assert p is not None and p["queue_lag_ms"] is not None
    assert 50 <= p["queue_lag_ms"] < 2000  # not an hour: both ends on the Redis clock
    assert abs(p["clock_offset_ms"] + 3_600_000) < 2000
    old = run_health(client, make_store(client), SETTINGS, node="n",
                     published_at_ms=redis_now - 20_000, expires_ms=10_000)
    assert isinstance(old, Discarded) and old.lag_ms >= 19_990  # ms rounding of TIME
    assert read_heartbeat(client, "petsage").payload["seq"] == 1  # type: ignore[index]


def test_backlog_depth_and_oldest_age_on_a_redis_broker(real: redis.Redis) -> None:
    now = redis_time_ms(real.time())
    for age_ms in (3000, 2000, 1000):  # oldest pushed first, as kombu does
        real.lpush("heartbeat", json.dumps({"headers": {"published_at_ms": now - age_ms}}))
    real.lpush("heartbeat\x06\x169", json.dumps({"headers": {}}))
    backlog = redis_backlog(real, "heartbeat", now)
    assert backlog["depth"] == 4 and backlog["error"] is None
    assert backlog["oldest_age_ms"] == pytest.approx(3000, abs=1)
    down = redis_backlog(redis.Redis(port=1, retry=None), "heartbeat", now)
    assert down["depth"] is None and down["error"]


def test_discarded_heartbeats_mean_worker_slow(client: redis.Redis) -> None:
    publish(client, interval_s=0.5)
    stored = json.loads(client.get(Keys().latest("petsage")) or b"")
    stored["ts_ms"] -= 5000
    client.set(Keys().latest("petsage"), json.dumps(stored))
    BeatMarker(client, Keys(), "petsage", interval_s=0.5, retention_s=60).record_publish()
    assert read_heartbeat(client, "petsage").diagnosis == "no_consumer"
    make_store(client).record_discard("petsage", published_at_ms=redis_time_ms(client.time()),
                                      lag_ms=4200.0)
    report = read_heartbeat(client, "petsage")
    assert report.diagnosis == "worker_slow" and "4.2s after publish" in report.reason


def test_a_bad_timestamp_is_invalid_not_a_crash(client: redis.Redis) -> None:
    publish(client)
    stored = json.loads(client.get(Keys().latest("petsage")) or b"")
    client.set(Keys().latest("petsage"), json.dumps({**stored, "timestamp": "x"}))
    assert read_heartbeat(client, "petsage").state is State.INVALID


# Each reason, whole: the boundaries, the units and the interval each rule takes.

def _diagnose(state: State, age_s: float | None = None, **kw: Any) -> tuple[Any, str]:
    defaults: dict[str, Any] = {"now_ms": NOW, "payload": None, "marker": None,
                                "thresholds": None}
    return diagnose(state, age_s=age_s, **{**defaults, **kw})


def _hb(**over: Any) -> dict[str, Any]:
    return {"status": "ok", "interval_s": 10, "queue_lag_ms": 5, "duration_ms": 5, **over}


def _marker(age_ms: int, **over: Any) -> dict[str, Any]:
    return {"published_at_ms": NOW - age_ms, "next_due_ms": NOW, "seq": 4, **over}


def test_an_unreachable_store_and_the_states_with_no_diagnosis() -> None:
    assert _diagnose(State.UNREACHABLE) == (
        "store_unreachable", "the heartbeat store (Redis) could not be asked")
    assert _diagnose(State.FRESH, 1.0, payload=_hb()) == (None, "")
    assert _diagnose(State.INVALID) == (None, "")


@pytest.mark.parametrize(("payload", "marker_", "age_s", "check_failed"), [
    (_hb(interval_s=0.5), None, 0.75, True),  # late after 1.5 intervals: 0.75 s
    (_hb(interval_s=0.5), None, 0.76, False),
    ({"status": "error"}, {"interval_s": 0.5}, 0.76, False),  # beat's interval, if none
    (_hb(interval_s=True), None, 1.6, True),  # junk: the default 10 s (late after 15)
    (_hb(interval_s=0), None, 1.6, True),
    (_hb(interval_s="5"), {"interval_s": -1}, 14.9, True),
    (_hb(interval_s=None), None, 15.1, False),
])
def test_a_late_heartbeat_within_its_interval_rule_is_a_failed_check(
        payload: dict[str, Any], marker_: dict[str, Any] | None, age_s: float,
        check_failed: bool) -> None:
    payload = {"status": "degraded", **{k: v for k, v in payload.items() if k != "status"}}
    diagnosis, reason = _diagnose(State.LATE, age_s, payload=payload, marker=marker_)
    assert (diagnosis == "check_failed") is check_failed
    if check_failed:
        assert reason == "a check reported degraded"


def test_a_refused_publish_is_broker_down_up_to_the_stale_threshold() -> None:
    failed = {**_marker(400_000), "publish_failed_at_ms": NOW - 100_000,
              "publish_error": "connection refused"}
    assert _diagnose(State.STALE, 400.0, payload=_hb(), marker=failed,
                     thresholds=Thresholds(50, 100)) == (
        "broker_down", "beat is running but the broker refused its publish 100.0s ago: "
                       "connection refused")
    assert _diagnose(State.STALE, 400.0, payload=_hb(), marker=failed,
                     thresholds=Thresholds(50, 99.999))[0] == "beat_down"


def test_beat_down_says_how_long_ago_beat_published() -> None:
    assert _diagnose(State.STALE, 400.0, payload=_hb(), marker=_marker(100_000),
                     thresholds=Thresholds(50, 100)) == (
        "beat_down", "beat last published 100.0s ago")


def test_a_recent_discard_says_how_late_the_worker_runs() -> None:
    discard = {"published_at_ms": NOW - 150_000, "lag_ms": 100_000}
    assert _diagnose(State.STALE, 400.0, payload=_hb(), marker=_marker(1000), discard=discard,
                     thresholds=Thresholds(50, 100)) == (
        "worker_slow", "the worker runs heartbeats 100.0s after publish and discards them "
                       "as expired")


@pytest.mark.parametrize(("lag_ms", "duration_ms", "interval_s", "marker_interval", "slow"), [
    (250, 250, 0.5, None, False),  # exactly the interval: not over it
    (250, 250.5, 0.5, None, True),
    (None, 500.5, 0.5, None, True),  # a missing lag counts as 0
    (None, 499.5, 0.5, None, False),
    ("x", 499.5, 0.5, None, False),
    (10_005, 0, 10, None, True),
    (600, 0, None, 0.5, True),  # no interval in the heartbeat: beat's
    (600, 0, 0.5, 10, True),  # the heartbeat's own interval first
])
def test_a_heartbeat_slower_than_its_interval_is_worker_slow(
        lag_ms: Any, duration_ms: float, interval_s: float | None,
        marker_interval: float | None, slow: bool) -> None:
    payload = _hb(queue_lag_ms=lag_ms, duration_ms=duration_ms, interval_s=interval_s)
    beat = _marker(1000, **({} if marker_interval is None else {"interval_s": marker_interval}))
    diagnosis, _ = _diagnose(State.STALE, 400.0, payload=payload, marker=beat,
                             thresholds=Thresholds(50, 100))
    assert diagnosis == ("worker_slow" if slow else "no_consumer")


def test_worker_slow_says_how_long_the_heartbeat_took() -> None:
    assert _diagnose(State.STALE, 400.0, payload=_hb(queue_lag_ms=99_000, duration_ms=1000),
                     marker=_marker(1000), thresholds=Thresholds(50, 100)) == (
        "worker_slow", "the last heartbeat took 100.0s from publish to write, over the 10s "
                       "interval")


@pytest.mark.parametrize(("depth", "reason"), [
    (None, "beat published 1.0s ago, but no worker ran it"),
    (0, "beat published 1.0s ago, taken from the queue at once, but no heartbeat was written "
        "(a worker stopping, stuck or failing in the task)"),
    (1, "beat published 1.0s ago, 1 heartbeat(s) queued, but no worker ran it"),
    (7, "beat published 1.0s ago, 7 heartbeat(s) queued, but no worker ran it"),
])
def test_no_consumer_says_what_the_queue_showed(depth: int | None, reason: str) -> None:
    beat = _marker(1000, **({} if depth is None else {"queue_depth": depth}))
    assert _diagnose(State.STALE, 400.0, payload=_hb(), marker=beat,
                     thresholds=Thresholds(50, 100)) == ("no_consumer", reason)
    missing = _diagnose(State.MISSING, marker=beat, thresholds=Thresholds(50, 100))
    queued = reason.split(", but", maxsplit=1)[0]
    assert missing == ("no_consumer", f"{queued}, but no heartbeat was ever written")


def test_beat_was_last_seen_at_its_later_sign_of_life() -> None:
    refused_later = {"published_at_ms": 1000, "publish_failed_at_ms": 2000,
                     "publish_error": "x"}
    assert beat_seen_ms(refused_later) == 2000
    assert beat_seen_ms({**refused_later, "published_at_ms": 3000}) == 3000
    assert beat_seen_ms({"publish_failed_at_ms": 2000, "publish_error": "x"}) == 2000
    assert beat_seen_ms(None) is None


BASE_MARKER = {"published_at_ms": 10, "next_due_ms": 20, "seq": 3}


@pytest.mark.parametrize(("marker", "parsed"), [
    (BASE_MARKER, BASE_MARKER),
    # A refused publish needs its time (a plain int) and its error (text), or is dropped.
    ({**BASE_MARKER, "publish_failed_at_ms": 5, "publish_error": 7},
     {**BASE_MARKER, "publish_error": 7}),
    ({**BASE_MARKER, "publish_failed_at_ms": "5", "publish_error": "e"},
     {**BASE_MARKER, "publish_error": "e"}),
    ({**BASE_MARKER, "publish_failed_at_ms": 5, "publish_error": "e"},
     {**BASE_MARKER, "publish_failed_at_ms": 5, "publish_error": "e"}),
    ({"publish_failed_at_ms": 5, "publish_error": "e"},
     {"publish_failed_at_ms": 5, "publish_error": "e"}),  # refused before any publish
    ({"publish_failed_at_ms": "x", "publish_error": "e"}, None),
    ({"next_due_ms": 1, "seq": 1}, None),
    ({**BASE_MARKER, "seq": "3", "publish_failed_at_ms": 5, "publish_error": "e"}, None),
    ({**BASE_MARKER, "since_ms": 4}, {**BASE_MARKER, "since_ms": 4}),
    ({**BASE_MARKER, "since_ms": "4"}, BASE_MARKER),  # a bad "since" alone is dropped
    ({**BASE_MARKER, "queue_depth": 2}, {**BASE_MARKER, "queue_depth": 2}),
    ({**BASE_MARKER, "queue_depth": -1}, None),
])
def test_beats_marker_is_read_field_by_field(marker: dict[str, Any],
                                             parsed: dict[str, Any] | None) -> None:
    assert parse_marker(json.dumps(marker).encode()) == parsed


def test_a_marker_is_read_up_to_4095_bytes() -> None:
    def sized(n: int) -> bytes:
        body = {**BASE_MARKER, "pad": ""}
        body["pad"] = "x" * (n - len(json.dumps(body)))
        raw = json.dumps(body).encode()
        assert len(raw) == n
        return raw

    assert parse_marker(sized(4095)) is not None
    assert parse_marker(sized(4096)) is None


def test_a_sign_of_life_stamped_now_counts_under_the_smallest_thresholds() -> None:
    """A probe's flags may set thresholds far under a second: a publish or a refusal stamped
    at the reading's instant is 0 s old, not 1 ms."""
    tiny = Thresholds(0.0001, 0.0005)
    published_now = {**_marker(0)}
    assert _diagnose(State.STALE, 5.0, payload=_hb(), marker=published_now,
                     thresholds=tiny)[0] == "no_consumer"
    refused_now = {**_marker(1000), "publish_failed_at_ms": NOW, "publish_error": "refused"}
    assert _diagnose(State.STALE, 5.0, payload=_hb(), marker=refused_now,
                     thresholds=tiny)[0] == "broker_down"
