"""The compact summary against a real redis-server: written with each heartbeat, never at
odds with the latest payload after any write, refusal, expiry or forget."""

from __future__ import annotations

import json
import random
import time

import pytest
import redis

from tests.support.helpers import wait_for
from tests.support.publishing import publish
from worker.cli.silence import run_forget
from worker.core.names import SUMMARY_SHARDS, Keys, summary_shard
from worker.core.redis_io import redis_time_ms
from worker.core.states import FUTURE_TOLERANCE_MS, State
from worker.publish.store import SUMMARY_SCRIPT, HeartbeatStore, summary_fields
from worker.read.fleet import read_fleet
from worker.read.reader import read_heartbeat

KEYS = Keys()


@pytest.fixture(params=["each", "shards"])
def fleet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fleet read by one HGET a service (fewer services than shards), or by every shard
    (as a fleet of 2,048 services or more is)."""
    from worker.read import fleet as fleet_module

    if request.param == "shards":
        monkeypatch.setattr(fleet_module, "SUMMARY_SHARDS", 0)
    return str(request.param)


def _summary(client: redis.Redis, service: str) -> dict[str, object] | None:
    raw = client.hget(KEYS.summary_of(service), service)
    return None if raw is None else json.loads(raw)


def test_the_summary_is_written_with_the_heartbeat_field_by_field(real: redis.Redis) -> None:
    publish(real, "api", interval_s=10, backlog={"depth": 4}, message="m" * 300)
    latest = json.loads(real.get(KEYS.latest("api")))  # type: ignore[arg-type]
    assert _summary(real, "api") == {
        "seq": latest["seq"], "ts_ms": latest["ts_ms"], "timestamp": latest["timestamp"],
        "nodes": 0, "interval_s": 10, "stale_after_s": 30, "status": "ok",
        "message": "m" * 200, "queue_lag_ms": 3.0, "duration_ms": 1.0, "clock_offset_ms": 0.0,
        "backlog": {"depth": 4}, "worker": {"node": "test@host"}}
    assert KEYS.summary_of("api") == f"petsage:hb:summary:{{{summary_shard('api'):04d}}}"
    real.zadd(KEYS.nodes("api"), {"w@h": 1})
    publish(real, "api", interval_s=10)
    assert _summary(real, "api")["nodes"] == 1  # type: ignore[index]
    assert _summary(real, "api")["seq"] == 2  # type: ignore[index]


SOUND = {"schema": 1, "service": "a", "status": "ok", "message": "é", "interval_s": 10,
         "stale_after_s": 30, "checks": {}}


def test_the_summary_fields_of_a_body() -> None:
    assert summary_fields(SOUND, "a") == (
        ',"interval_s":10,"stale_after_s":30,"status":"ok","message":"é"}')
    assert summary_fields({**SOUND, "worker": {"node": "n", "pid": 1}}, "a").endswith(
        ',"worker":{"node":"n"}}')
    assert summary_fields({**SOUND, "worker": "x"}, "a").endswith('"message":"é"}')


@pytest.mark.parametrize("change", [
    {"schema": 2}, {"service": "b"}, {"checks": None}, {"queue_lag_ms": True},
    {"clock_offset_ms": "1"}, {"status": "fine"}, {"message": 1}, {"interval_s": 0},
    {"stale_after_s": 5}, {"seq": 3}, {"ts_ms": 1}, {"timestamp": "2026-01-01T00:00:00+00:00"},
])
def test_a_body_readers_would_not_take_as_it_is_has_no_summary_fields(
        change: dict[str, object]) -> None:
    assert summary_fields({**SOUND, **change}, "a") == "}"


@pytest.mark.parametrize("change", [{"schema": 2}, {"service": "b"}, {"checks": None},
                                    {"queue_lag_ms": True}, {"ts_ms": 1}])
def test_a_fleet_never_shows_fresh_what_the_single_read_finds_invalid(
        real: redis.Redis, change: dict[str, object], fleet_path: str) -> None:
    HeartbeatStore(real, KEYS, retention_s=3600, history_len=10).publish(
        "a", {**SOUND, **change})
    own = read_heartbeat(real, "a")
    (fleet,) = read_fleet(real, KEYS).reports
    assert own.state is not State.FRESH
    assert (fleet.state, fleet.diagnosis) == (own.state, own.diagnosis)
    assert fleet.reason.split(" ago")[-1] == own.reason.split(" ago")[-1]  # the same why


def test_shards_are_stable_and_spread() -> None:
    assert summary_shard("petsage") == 353  # a contract: every writer and reader agrees
    shards = [summary_shard(f"svc-{i:06d}") for i in range(100_000)]
    assert min(shards) == 0 and max(shards) == SUMMARY_SHARDS - 1
    assert max(shards.count(s) for s in set(shards[:50])) < 100  # about 49 a shard
    with pytest.raises(ValueError, match=r"summary shard 2048 is not in 0\.\.2047"):
        KEYS.summary(SUMMARY_SHARDS)


def _agree(client: redis.Redis, services: list[str]) -> None:
    """The fleet read (summaries first) says what each service's own read says."""
    fleet = {r.service: r for r in read_fleet(client, KEYS).reports}
    for service in services:
        own = read_heartbeat(client, service)
        if service not in fleet:
            assert own.state is State.MISSING and client.zscore(KEYS.index, service) is None
            continue
        got = fleet[service]
        assert (got.state, got.diagnosis) == (own.state, own.diagnosis), service
        latest = client.get(KEYS.latest(service))
        summary = _summary(client, service)
        if latest is not None and summary is not None:
            stored = json.loads(latest)
            assert (summary["seq"], summary["ts_ms"]) == (stored["seq"], stored["ts_ms"])


def test_summary_and_latest_never_disagree_after_any_write_refusal_expiry_or_forget(
        real: redis.Redis, redis_server: object, fleet_path: str) -> None:
    services = ["a", "b", "c", "d"]
    rng = random.Random(7)
    url = f"redis://127.0.0.1:{real.connection_pool.connection_kwargs['port']}/0"
    short = HeartbeatStore(real, KEYS, retention_s=1, history_len=10)
    for step in range(60):
        service = rng.choice(services)
        action = rng.choice(["publish", "publish", "status", "ahead", "expire", "forget"])
        if action == "publish":
            publish(real, service, interval_s=rng.choice([1, 10]))
        elif action == "status":
            publish(real, service, status=rng.choice(["degraded", "error"]))
        elif action == "ahead" and real.exists(KEYS.latest(service)):
            # A heartbeat stamped ahead of this clock (a failover): the next is refused.
            original = real.get(KEYS.latest(service))
            stored = json.loads(original)  # type: ignore[arg-type]
            stored["ts_ms"] = redis_time_ms(real.time()) + FUTURE_TOLERANCE_MS // 2
            real.set(KEYS.latest(service), json.dumps(stored, separators=(",", ":")))
            before = _summary(real, service)
            publish(real, service)
            assert _summary(real, service) == before  # refused: the summary is untouched
            real.set(KEYS.latest(service), original, keepttl=True)  # the test's write undone
        elif action == "expire":
            # The retention is at least the stale threshold (the settings' rule), so a
            # summary still fresh always has its payload.
            short.publish(service, {"schema": 1, "service": service, "status": "ok",
                                    "message": "m", "interval_s": 0.25, "stale_after_s": 1,
                                    "checks": {}})
            wait_for(lambda s=service: not real.exists(KEYS.latest(s)), 10,
                     what="the latest key's expiry")
        elif action == "forget":
            assert run_forget(service=service, yes=True, redis_url=url, prefix=None) in (0, 2)
            assert _summary(real, service) is None
        try:
            _agree(real, services)
        except AssertionError as exc:
            raise AssertionError(f"step {step}, {action} {service}") from exc


def test_the_cluster_summary_write_never_goes_backwards(real: redis.Redis) -> None:
    write = real.register_script(SUMMARY_SCRIPT)
    shard = KEYS.summary(0)

    def put(seq: int, ts_ms: int) -> int:
        return int(write(keys=[shard], args=["a", f'{{"seq":{seq},"ts_ms":{ts_ms},"x":1}}',
                                             ts_ms, FUTURE_TOLERANCE_MS]))

    assert put(1, 1_000_000) == 1
    assert put(2, 1_000_500) == 1
    assert put(1, 1_000_000) == 0  # older: the newer is kept
    assert json.loads(real.hget(shard, "a"))["seq"] == 2  # type: ignore[arg-type]
    assert put(3, 1_000_500) == 1  # the same ts_ms: the last writer wins
    assert put(9, 1_000_500 + FUTURE_TOLERANCE_MS + 1) == 1
    assert put(4, 1_000_499) == 1  # the stored one was too far ahead: not ours to keep
    real.hset(shard, "a", "junk")
    assert put(5, 1_000_700) == 1


def test_a_missing_summary_is_read_from_the_index_and_an_unindexed_one_is_dropped(
        real: redis.Redis, fleet_path: str) -> None:
    for name in ("a", "b", "c"):
        publish(real, name)
    real.hdel(KEYS.summary_of("b"), "b")  # published by an older version, say
    real.zrem(KEYS.index, "c")  # removed from the index by hand
    fleet = read_fleet(real, KEYS)
    assert sorted((r.service, r.state) for r in fleet.reports) == [
        ("a", State.FRESH), ("b", State.FRESH)]


def test_a_fleet_that_is_all_fresh_costs_no_read_script(real: redis.Redis,
                                                        fleet_path: str) -> None:
    for i in range(50):
        publish(real, f"s{i}", interval_s=10)
    real.config_resetstat()
    started = time.monotonic()
    fleet = read_fleet(real, KEYS)
    assert len(fleet.reports) == 50 and {r.state for r in fleet.reports} == {State.FRESH}
    stats = real.info("commandstats")
    assert "cmdstat_evalsha" not in stats and "cmdstat_eval_ro" not in stats
    if fleet_path == "shards":
        assert stats["cmdstat_hgetall"]["calls"] == SUMMARY_SHARDS
    else:
        assert stats["cmdstat_hget"]["calls"] == 50 and "cmdstat_hgetall" not in stats
    assert time.monotonic() - started < 30


def test_a_listed_page_reads_summaries_and_only_the_rest_in_full(real: redis.Redis) -> None:
    from tests.support.publishing import backdate
    from worker.read.fleet import read_listed

    for name in ("a", "b", "c", "d"):
        publish(real, name, interval_s=10)
    backdate(real, "b", 20)
    real.hdel(KEYS.summary_of("c"), "c")
    real.config_resetstat()
    reports = {r.service: r for r in read_listed(real, ["a", "b", "c"], KEYS)}
    assert {n: r.state for n, r in reports.items()} == {
        "a": State.FRESH, "b": State.LATE, "c": State.FRESH}
    assert reports["b"].diagnosis is not None  # read in full: diagnosed
    stats = real.info("commandstats")
    assert stats["cmdstat_hget"]["calls"] == 3
    own = read_heartbeat(real, "a")
    assert reports["a"].payload["seq"] == own.payload["seq"]  # type: ignore[index]


def test_a_fleet_past_the_hint_is_scanned_in_bounded_commands(
        real: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.read import summary as module

    monkeypatch.setattr(module, "SCAN_COUNT", 2)  # a shard's fields in several HSCANs
    shard = KEYS.summary_of("a")
    names = ["a", *[f"n{i}" for i in range(30000) if KEYS.summary_of(f"n{i}") == shard][:6]]
    assert len(names) == 7
    for name in names:
        publish(real, name, interval_s=10)
    real.config_resetstat()
    small = module.first_pass(real, KEYS, services_hint=len(names))  # every shard
    big = module.first_pass(real, KEYS, services_hint=module.SCAN_FROM_SERVICES + 1)
    assert sorted(r.service for r in small.fresh) == sorted(r.service for r in big.fresh)
    assert sorted(r.service for r in big.fresh) == sorted(names)
    stats = real.info("commandstats")
    assert stats["cmdstat_hgetall"]["calls"] == SUMMARY_SHARDS
    assert stats["cmdstat_hscan"]["calls"] > SUMMARY_SHARDS  # the shard took more than one


@pytest.mark.parametrize("summary", [
    b"junk", b"[1, 2]", b'{"seq": 1}',
    b'{"seq":1,"ts_ms":NOW,"interval_s":10,"stale_after_s":30,"status":"ok"}',  # no message
    b'{"seq":1,"ts_ms":NOW,"interval_s":10,"stale_after_s":30,"status":"degraded","message":"m"}',
    b'{"seq":"1","ts_ms":NOW,"interval_s":10,"stale_after_s":30,"status":"ok","message":"m"}',
    b'{"seq":1,"ts_ms":NOW,"interval_s":30,"stale_after_s":10,"status":"ok","message":"m"}',
    b'{"seq":1,"ts_ms":NOW,"interval_s":true,"stale_after_s":10,"status":"ok","message":"m"}',
    b'{"seq":1,"ts_ms":LATER,"interval_s":10,"stale_after_s":30,"status":"ok","message":"m"}',
])
def test_a_summary_that_is_not_sound_is_read_in_full(real: redis.Redis, summary: bytes) -> None:
    from worker.read import summary as module

    publish(real, "a", interval_s=10)
    now_ms = redis_time_ms(real.time())
    real.hset(KEYS.summary_of("a"), "a", summary.replace(b"NOW", str(now_ms).encode())
              .replace(b"LATER", str(now_ms + 60_000).encode()))
    first = module.first_pass(real, KEYS)
    assert (first.fresh, first.unsure) == ([], ["a"])
    (report,) = read_fleet(real, KEYS).reports
    assert report.state is State.FRESH and report.payload["schema"] == 1  # type: ignore[index]
