"""Publishing and reading heartbeats, on fakeredis (fast) and on a real redis-server (the claim)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
import redis

from tests.support.helpers import RedisServer, with_headroom
from tests.support.stores import KEYS, SETTINGS, make_store
from worker import State, check, read_heartbeat
from worker.core.errors import ConfigError, PayloadTooLargeError
from worker.core.payload import DEFAULT_MESSAGE, MAX_PAYLOAD_BYTES, payload_problem
from worker.core.settings import Settings
from worker.publish import health_checks
from worker.publish.health import run_health


@pytest.fixture(params=["fakeredis", "redis-server"])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    if request.param == "fakeredis":
        return fakeredis.FakeRedis()
    return request.getfixturevalue("real")  # type: ignore[no-any-return]




def beat(client: redis.Redis, **kwargs: Any) -> Any:
    return run_health(client, make_store(client), SETTINGS, node="test@host", **kwargs)


def test_payload_has_every_field_with_its_type(client: redis.Redis) -> None:
    result = beat(client, published_at_ms=time.time() * 1000 - 5)
    assert result.accepted and result.seq == 1
    report = read_heartbeat(client, "petsage")
    assert report.state is State.FRESH, report.reason
    p = report.payload
    assert p is not None and payload_problem(p, "petsage") is None
    assert p["seq"] == 1 and p["ts_ms"] == result.ts_ms and p["schema"] == 1
    assert p["status"] == "ok" and p["message"] == DEFAULT_MESSAGE
    assert p["interval_s"] == 10 and p["stale_after_s"] == 30
    ts = datetime.fromisoformat(p["timestamp"])
    assert ts.utcoffset() is not None and int(ts.timestamp() * 1000) == p["ts_ms"]
    for name in ("published_at", "started_at", "finished_at"):
        assert datetime.fromisoformat(p[name]).tzinfo is not None  # type: ignore[arg-type]
    assert isinstance(p["queue_lag_ms"], float) and p["queue_lag_ms"] >= 0
    assert isinstance(p["duration_ms"], float) and p["duration_ms"] >= 0
    assert isinstance(p["clock_offset_ms"], float)
    assert p["worker"]["node"] == "test@host" and isinstance(p["worker"]["pid"], int)
    assert p["worker"]["hostname"] and p["version"]
    assert p["checks"]["redis"]["status"] == "ok" and p["checks"]["redis"]["latency_ms"] >= 0


def test_seq_and_ts_increase_and_every_write_lands_everywhere(client: redis.Redis) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(KEYS.events)
    results = [beat(client) for _ in range(5)]
    assert [r.seq for r in results] == [1, 2, 3, 4, 5]
    assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(results))
    assert client.zscore(KEYS.index, "petsage") == results[-1].ts_ms
    entries = client.xrange(KEYS.history("petsage"))
    assert [int(e[1][b"seq"]) for e in entries] == [1, 2, 3, 4, 5]
    assert set(entries[-1][1]) == {b"ts_ms", b"seq", b"status", b"lag_ms", b"duration_ms",
                                   b"queue_depth"}
    published = []
    deadline = time.monotonic() + 5
    while len(published) < 5 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message:
            published.append(json.loads(message["data"]))
    assert [m["seq"] for m in published] == [1, 2, 3, 4, 5]
    pubsub.close()


def test_ttl_is_set_on_every_write(client: redis.Redis) -> None:
    for _ in range(3):
        beat(client)
        assert 0 < client.pttl(KEYS.latest("petsage")) <= SETTINGS.retention_s * 1000
        assert 0 < client.pttl(KEYS.history("petsage")) <= SETTINGS.retention_s * 1000


def test_an_older_write_never_overwrites_a_newer_one(client: redis.Redis) -> None:
    beat(client)
    stored = json.loads(client.get(KEYS.latest("petsage")))
    # A newer heartbeat (written through a server whose clock is 1 s ahead, say) is stored:
    newer = dict(stored, ts_ms=stored["ts_ms"] + 1500, seq=41)
    text = json.dumps(newer, separators=(",", ":"))
    client.set(KEYS.latest("petsage"), text)
    result = beat(client)
    assert not result.accepted and (result.seq, result.ts_ms) == (41, newer["ts_ms"])
    assert client.get(KEYS.latest("petsage")) == text.encode()


def test_a_corrupt_far_future_value_does_not_block_writes_forever(client: redis.Redis) -> None:
    client.set(KEYS.latest("petsage"), '{"seq":3,"ts_ms":99999999999999,"x":1}')
    assert read_heartbeat(client, "petsage").state is State.INVALID
    result = beat(client)
    assert result.accepted and result.seq == 4
    assert read_heartbeat(client, "petsage").state is State.FRESH


def test_a_foreign_value_or_type_at_the_key_is_replaced(client: redis.Redis) -> None:
    client.hset(KEYS.latest("petsage"), "a", "1")
    assert read_heartbeat(client, "petsage").state is State.INVALID
    assert beat(client).seq == 1
    assert read_heartbeat(client, "petsage").state is State.FRESH


def test_lua_timestamp_matches_python_across_dates(client: redis.Redis) -> None:
    """The script's ISO formatter (days-to-civil in Lua) agrees with Python's calendar."""
    store = make_store(client)
    script = store._script  # the same script, run with a crafted clock via a wrapper
    probe = script.script.replace(
        "local t = redis.call('TIME')", "local t = {ARGV[12], ARGV[13]}")
    run = client.register_script(probe)
    for ms in [0, 951_782_400_000, 1_709_251_199_999, 1_709_164_800_123, 4_102_444_800_000,
               1_795_668_625_609, 253_402_300_799_999]:
        key = f"iso{ms}"
        run(keys=[key, key + "h", key + "n", KEYS.index, KEYS.summary(0)],
            args=[',"a":1}', "svc", 60_000, 10, "ch", 0, "ok", "", "1", "", "}",
                  ms // 1000, (ms % 1000) * 1000])
        stored = json.loads(client.get(key))
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        expected = moment.isoformat(timespec="milliseconds")
        assert stored["timestamp"] == expected, ms
        assert stored["ts_ms"] == ms


def test_oversized_payload_and_bad_service_are_refused_before_redis(client: redis.Redis) -> None:
    store = make_store(client)
    with pytest.raises(PayloadTooLargeError):
        store.publish("petsage", {"message": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(ConfigError):
        store.publish("bad:name", {"message": "x"})
    assert client.keys("*") == []


def test_user_checks_appear_and_failures_degrade_without_killing_the_task(
        client: redis.Redis) -> None:
    @check("database")
    def ping_db() -> bool:
        return True

    beat(client)
    p = read_heartbeat(client, "petsage").payload
    assert p is not None and p["status"] == "ok" and p["checks"]["database"]["status"] == "ok"

    @check("flaky")
    def flaky() -> None:
        raise RuntimeError("db down: redis://:hunter2@db/0")

    beat(client)
    report = read_heartbeat(client, "petsage")
    assert report.payload is not None
    assert report.payload["status"] == "degraded" and report.state is State.LATE
    assert "RuntimeError" in report.payload["checks"]["flaky"]["error"]
    assert "hunter2" not in json.dumps(report.payload)


def test_a_hanging_check_times_out_as_degraded(client: redis.Redis) -> None:
    release = threading.Event()

    @check("hang")
    def hang() -> None:
        release.wait(30)

    quick = Settings.from_env({"HEARTBEAT_INTERVAL_S": "0.5"})
    started = time.monotonic()
    try:
        run_health(client, make_store(client), quick, node="n")
    finally:
        release.set()
        # The check's thread ends before the next test: one still running (on a busy
        # machine) would be reported "still running since an earlier heartbeat" there.
        hung = health_checks._HUNG.pop("hang", None)
        if hung is not None:
            hung.thread.join(30)
    # The promise: a check gets the interval (0.5 s), then the heartbeat goes without it.
    assert time.monotonic() - started < with_headroom(0.5)
    p = read_heartbeat(client, "petsage").payload
    assert p is not None and p["checks"]["hang"]["status"] == "degraded"
    assert "timed out" in p["checks"]["hang"]["error"]


def test_a_check_saying_error_makes_the_heartbeat_stale(client: redis.Redis) -> None:
    check("disk")(lambda: False)
    beat(client)
    report = read_heartbeat(client, "petsage")
    assert report.payload is not None and report.payload["status"] == "error"
    assert report.state is State.STALE and report.exit_code == 2




@pytest.mark.parametrize("offset_s", [3600, -3600])
def test_ages_come_from_the_redis_clock_not_the_hosts(
        real: redis.Redis, monkeypatch: pytest.MonkeyPatch, offset_s: int) -> None:
    """This process's wall clock (worker and reader alike) is an hour off; Redis's is not."""
    client = real
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + offset_s)
    beat(client)
    report = read_heartbeat(client, "petsage")
    assert report.state is State.FRESH and report.age_s is not None and report.age_s < 1
    assert report.payload is not None
    assert abs(report.payload["clock_offset_ms"] + offset_s * 1000) < 1000


def test_reader_reports_a_dead_server_as_unreachable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=None)
    report = read_heartbeat(dead, "petsage")
    assert report.state is State.UNREACHABLE and report.exit_code == 3


def test_history_stays_capped_on_a_real_server(real: redis.Redis) -> None:
    store = make_store(real, history_len=50)
    for _ in range(600):
        store.publish("petsage", {"status": "ok"})
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never unbounded.
    assert real.xlen(KEYS.history("petsage")) <= 50 + 100


def test_one_heartbeat_write_is_one_round_trip(
        redis_server: RedisServer, real: redis.Redis) -> None:
    client = redis_server.client()
    store = make_store(client)
    store.publish("petsage", {"status": "ok"})  # loads the script (EVALSHA, NOSCRIPT, EVAL)
    own_addr = client.client_info()["addr"]  # the one pooled connection the store uses
    real.config_resetstat()
    with real.monitor() as monitor:
        store.publish("petsage", {"status": "ok"})
        client.ping()  # a marker: everything before it was the write
        seen = []
        for event in monitor.listen():
            if event["client_address"] == "lua":
                continue
            if f"{event['client_address']}:{event['client_port']}" == own_addr:
                seen.append(event["command"].split()[0].upper())
                if seen[-1] == "PING":
                    break
    assert seen == ["EVALSHA", "PING"]
    stats = real.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert "cmdstat_eval" not in stats and "cmdstat_getrange" in stats  # inside the script


def test_a_hung_check_costs_one_thread_not_one_per_heartbeat(client: redis.Redis) -> None:
    release = threading.Event()

    @check("stuck")
    def stuck() -> None:
        release.wait(60)

    @check("slow1")
    def slow1() -> None:
        time.sleep(0.3)

    @check("slow2")
    def slow2() -> None:
        time.sleep(0.3)

    quick = Settings.from_env({"HEARTBEAT_INTERVAL_S": "0.5"})
    before = threading.active_count()
    started = time.monotonic()
    for _ in range(5):
        run_health(client, make_store(client), quick, node="n")
    elapsed = time.monotonic() - started
    release.set()
    # Checks run in parallel under one 0.5 s deadline: 5 heartbeats, not 5 x (3 x 0.5 s),
    # which the headroom stays under.
    assert elapsed < with_headroom(5 * 0.5) < 5 * 3 * 0.5
    assert threading.active_count() - before <= 1  # the one stuck thread, not five
    p = read_heartbeat(client, "petsage").payload
    assert p is not None and "still running" in p["checks"]["stuck"]["error"]
    assert p["checks"]["slow1"]["status"] == "ok" and p["checks"]["slow2"]["status"] == "ok"


def test_a_check_raising_systemexit_is_degraded_not_ok(client: redis.Redis) -> None:
    @check("exits")
    def exits() -> None:
        raise SystemExit(1)

    beat(client)
    p = read_heartbeat(client, "petsage").payload
    assert p is not None and p["checks"]["exits"]["status"] == "degraded"
