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
