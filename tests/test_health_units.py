"""The ``health`` task's body, in process: the store round trip and the clock offset it
measures, the payload to the field, and what ``run_health`` writes, discards or hands on.

The clock is a stand-in (``time`` of the module), the store client and the store are
recorders: every value below is exact, so a changed constant, sign or rounding shows.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from worker.core.payload import DEFAULT_MESSAGE, CheckResult
from worker.core.settings import Settings
from worker.core.version import __version__
from worker.publish import health
from worker.publish.backlog import Backlog
from worker.publish.health import Discarded, build_body, iso_ms, run_health, store_check
from worker.publish.store import PublishResult


class _Clock:
    """Stands in for ``time`` in the module: a fixed wall clock, a scripted ``perf_counter``."""

    def __init__(self, wall_s: float, perf: list[float] | None = None) -> None:
        self.wall_s = wall_s
        self._perf: Iterator[float] = iter(perf or [])

    def time(self) -> float:
        return self.wall_s

    def perf_counter(self) -> float:
        return next(self._perf, 0.0)


class _Client:
    """A store client that answers ``TIME`` with a fixed reply and remembers each call."""

    def __init__(self, reply: tuple[int, int]) -> None:
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    def time(self, **kwargs: Any) -> tuple[int, int]:
        self.calls.append(kwargs)
        return self.reply


class _ClusterClient(_Client):
    """The shape of redis-py's ``RedisCluster``: ``TIME`` goes to the node owning a key."""

    nodes_manager = None

    def get_node_from_key(self, key: str) -> tuple[str, str]:
        return ("node-of", key)


class _Store:
    """A ``HeartbeatStore`` that records what it was asked to write."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.discards: list[tuple[str, dict[str, float]]] = []

    def publish(self, service: str, body: dict[str, Any]) -> PublishResult:
        self.published.append((service, body))
        return PublishResult(True, 7, 1234)

    def record_discard(self, service: str, *, published_at_ms: float, lag_ms: float) -> None:
        self.discards.append((service, {"published_at_ms": published_at_ms, "lag_ms": lag_ms}))


def test_iso_ms_is_utc_with_its_offset_to_the_millisecond() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000+00:00"
    assert iso_ms(1234.5) == "1970-01-01T00:00:01.234+00:00"
    assert iso_ms(1_700_000_000_123.9) == "2023-11-14T22:13:20.123+00:00"


def test_store_check_times_one_round_trip_and_the_offset_at_its_midpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent at 1 000 000.1234 ms local, 1.235 ms round trip: Redis's 1 000 010 ms is read at
    the midpoint (1 000 000.7409), so Redis is 9.259 ms ahead."""
    monkeypatch.setattr(health, "time", _Clock(1000.0001234, [8.0, 8.00123456]))
    client = _Client((1000, 10_000))
    result, offset_ms = store_check(client)  # type: ignore[arg-type]
    assert result == {"status": "ok", "latency_ms": 1.235}
    assert offset_ms == 9.259
    assert client.calls == [{}]


def test_store_check_asks_a_cluster_the_node_owning_the_services_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "time", _Clock(1000.0, [2.0, 2.002]))
    client = _ClusterClient((999, 500_000))
    result, offset_ms = store_check(client, "petsage:hb:latest:svc")  # type: ignore[arg-type]
    assert client.calls == [{"target_nodes": ("node-of", "petsage:hb:latest:svc")}]
    assert (result, offset_ms) == ({"status": "ok", "latency_ms": 2.0}, -501.0)
    # Without a key (the default), any node's clock will do: a plain TIME.
    monkeypatch.setattr(health, "time", _Clock(1000.0))
    assert store_check(client) == ({"status": "ok", "latency_ms": 0.0}, -500.0)  # type: ignore[arg-type]
    assert client.calls[1:] == [{}]


def test_a_key_does_not_make_a_plain_client_ask_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "time", _Clock(1000.0))
    client = _Client((1000, 0))
    assert store_check(client, "k") == ({"status": "ok", "latency_ms": 0.0}, 0.0)  # type: ignore[arg-type]
    assert client.calls == [{}]


def test_discarded_carries_the_lag() -> None:
    assert Discarded(12.5).lag_ms == 12.5 and Discarded(lag_ms=1.0) == (1.0,)


SETTINGS = Settings.from_env({"HEARTBEAT_SERVICE": "svc", "HEARTBEAT_INTERVAL_S": "5",
                              "HEARTBEAT_STALE_AFTER_S": "17"})

WORKER = {"node": "w1@h", "hostname": socket.gethostname(), "pid": os.getpid()}


def _body(**overrides: Any) -> dict[str, Any]:
    """The whole payload a healthy heartbeat of ``SETTINGS`` has, with ``overrides``."""
    body: dict[str, Any] = {
        "schema": 1, "service": "svc", "status": "ok", "message": DEFAULT_MESSAGE,
        "interval_s": 5.0, "stale_after_s": 17.0,
        "published_at": "1970-01-01T00:00:01.000+00:00",
        "started_at": "1970-01-01T00:00:02.000+00:00",
        "finished_at": "1970-01-01T00:00:02.500+00:00",
        "queue_lag_ms": 1000.123, "duration_ms": 499.877, "clock_offset_ms": -3.5,
        "backlog": None, "worker": WORKER, "version": __version__,
        "checks": {"redis": {"status": "ok", "latency_ms": 1.0}},
    }
    body.update(overrides)
    return body


def test_build_body_is_the_whole_payload_minus_the_stamp() -> None:
    checks: dict[str, CheckResult] = {"redis": {"status": "ok", "latency_ms": 1.0}}
    body = build_body(SETTINGS, node="w1@h", started_ms=2000.12345, finished_ms=2500.0,
                      published_at_ms=1000.0, checks=checks, clock_offset_ms=-3.5)
    assert body == _body()
    assert list(body) == list(_body())
    backlog: Backlog = {"depth": 3, "oldest_age_ms": 12.5, "error": None}
    assert build_body(SETTINGS, node="w1@h", started_ms=2000.12345, finished_ms=2500.0,
                      published_at_ms=1000.0, checks=checks, clock_offset_ms=-3.5,
                      backlog=backlog, message="custom") == _body(backlog=backlog,
                                                                  message="custom")


@pytest.mark.parametrize(("published_at_ms", "lag_ms", "published_at"), [
    (None, None, None),
    (2000.12345, 0.0, "1970-01-01T00:00:02.000+00:00"),   # published as it started
    (2000.2, 0.0, "1970-01-01T00:00:02.000+00:00"),       # beat's clock a bit ahead: not < 0
    (2000.0, 0.123, "1970-01-01T00:00:02.000+00:00"),
])
def test_the_queue_lag_is_never_negative_and_unknown_without_a_publish_time(
        published_at_ms: float | None, lag_ms: float | None, published_at: str | None) -> None:
    body = build_body(SETTINGS, node="w1@h", started_ms=2000.12345, finished_ms=2500.0,
                      published_at_ms=published_at_ms,
                      checks={"redis": {"status": "ok", "latency_ms": 1.0}}, clock_offset_ms=-3.5)
    assert (body["queue_lag_ms"], body["published_at"]) == (lag_ms, published_at)


def test_a_failed_check_names_every_bad_check_sorted_in_the_message() -> None:
    checks: dict[str, CheckResult] = {
        "zeta": {"status": "degraded", "latency_ms": 1.0},
        "redis": {"status": "ok", "latency_ms": 1.0},
        "alpha": {"status": "error", "latency_ms": 1.0},
        "mid": {"status": "degraded", "latency_ms": 1.0},
    }
    body = build_body(SETTINGS, node="w1@h", started_ms=2000.12345, finished_ms=2500.0,
                      published_at_ms=1000.0, checks=checks, clock_offset_ms=-3.5)
    assert body == _body(status="error", checks=checks,
                         message="PetSage is error: check alpha, mid, zeta failed")
    del checks["alpha"]
    body = build_body(SETTINGS, node="w1@h", started_ms=2000.12345, finished_ms=2500.0,
                      published_at_ms=1000.0, checks=checks, clock_offset_ms=-3.5)
    assert (body["status"], body["message"]) == ("degraded",
                                                 "PetSage is degraded: check mid, zeta failed")
    # A message of the caller's own is kept, whatever the checks say.
    body = build_body(SETTINGS, node="w1@h", started_ms=2000.12345, finished_ms=2500.0,
                      published_at_ms=1000.0, checks=checks, clock_offset_ms=-3.5,
                      message="mine")
    assert (body["status"], body["message"]) == ("degraded", "mine")


# run_health: wall clock 1 700 000 000 000 ms here, Redis 250 ms ahead (1 700 000 000 250).
LOCAL_S = 1_700_000_000.0
REDIS_MS = 1_700_000_000_250.0
REDIS_REPLY = (1_700_000_000, 250_000)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """A still clock: the round trip takes 0 ms, so the offset is exactly +250 ms."""
    fixed = _Clock(LOCAL_S)
    monkeypatch.setattr(health, "time", fixed)
    return fixed


@pytest.fixture
def user_checks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Stands in for the user checks: one ``disk`` check, ok; records each timeout given."""
    timeouts: list[float] = []

    def run(timeout_s: float) -> dict[str, CheckResult]:
        timeouts.append(timeout_s)
        return {"disk": {"status": "ok", "latency_ms": 0.5}}

    monkeypatch.setattr(health, "run_user_checks", run)
    return timeouts


def test_run_health_publishes_the_payload_on_the_redis_clock(
        clock: _Clock, user_checks: list[float]) -> None:
    store = _Store()
    client = _ClusterClient(REDIS_REPLY)
    seen: list[float] = []

    def backlog(now_ms: float) -> Backlog:
        seen.append(now_ms)
        return {"depth": 2, "oldest_age_ms": None, "error": None}

    result = run_health(client, store, SETTINGS, node="w1@h",  # type: ignore[arg-type]
                        published_at_ms=REDIS_MS - 40, expires_ms=5000, backlog=backlog)
    assert result == PublishResult(True, 7, 1234)
    assert client.calls == [{"target_nodes": ("node-of", "petsage:hb:{svc}")}]
    assert user_checks == [2.0]  # the checks' own cap, under the 5 s interval
    assert seen == [REDIS_MS]
    at = "2023-11-14T22:13:20.250+00:00"
    assert store.published == [("svc", _body(
        published_at="2023-11-14T22:13:20.210+00:00", started_at=at, finished_at=at,
        queue_lag_ms=40.0, duration_ms=0.0, clock_offset_ms=250.0,
        backlog={"depth": 2, "oldest_age_ms": None, "error": None},
        checks={"redis": {"status": "ok", "latency_ms": 0.0},
                "disk": {"status": "ok", "latency_ms": 0.5}}))]
    assert list(store.published[0][1]["checks"]) == ["redis", "disk"]
    assert store.discards == []


def test_run_health_without_headers_or_backlog(clock: _Clock, user_checks: list[float]) -> None:
    store = _Store()
    quick = SETTINGS._replace(interval_s=0.5)
    assert run_health(_Client(REDIS_REPLY), store, quick,  # type: ignore[arg-type]
                      node="n") == PublishResult(True, 7, 1234)
    assert user_checks == [0.5]  # an interval under the checks' cap caps them
    ((_, body),) = store.published
    assert (body["published_at"], body["queue_lag_ms"], body["backlog"]) == (None, None, None)
    assert body["interval_s"] == 0.5 and body["worker"]["node"] == "n"


@pytest.mark.parametrize(("lag_ms", "discarded"), [(5000.0, False), (5000.5, True)])
def test_a_heartbeat_started_past_its_expiry_is_discarded_unwritten(
        clock: _Clock, user_checks: list[float], lag_ms: float, discarded: bool) -> None:
    store = _Store()
    result = run_health(_Client(REDIS_REPLY), store, SETTINGS, node="n",  # type: ignore[arg-type]
                        published_at_ms=REDIS_MS - lag_ms, expires_ms=5000)
    if discarded:
        assert result == Discarded(5000.5)
        assert store.discards == [("svc", {"published_at_ms": REDIS_MS - 5000.5,
                                           "lag_ms": 5000.5})]
        assert store.published == [] and user_checks == []
    else:
        assert result == PublishResult(True, 7, 1234) and store.discards == []
        assert store.published[0][1]["queue_lag_ms"] == 5000.0


def test_the_lag_of_a_discarded_heartbeat_is_rounded_to_the_microsecond(
        clock: _Clock, user_checks: list[float]) -> None:
    store = _Store()
    result = run_health(_Client(REDIS_REPLY), store, SETTINGS, node="n",  # type: ignore[arg-type]
                        published_at_ms=REDIS_MS - 6000.1234, expires_ms=5000)
    assert result == Discarded(6000.123) and store.discards[0][1]["lag_ms"] == 6000.123


@pytest.mark.parametrize(("published_at_ms", "expires_ms"), [
    (REDIS_MS - 10**9, None),  # no expiry: however late, written
    (None, 0),                 # no publish time: nothing to judge
])
def test_no_expiry_without_both_headers(clock: _Clock, user_checks: list[float],
                                        published_at_ms: float | None,
                                        expires_ms: float | None) -> None:
    store = _Store()
    result = run_health(_Client(REDIS_REPLY), store, SETTINGS, node="n",  # type: ignore[arg-type]
                        published_at_ms=published_at_ms, expires_ms=expires_ms)
    assert result == PublishResult(True, 7, 1234)
    assert len(store.published) == 1 and store.discards == []
