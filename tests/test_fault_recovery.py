"""Faults on real processes that must cost nothing lasting: one marker write per publish, a
bounded queue, recovery within about an interval, and a full Redis at start said in one line.

Real redis-server, real ``celery beat`` and ``celery worker`` (interval 0.5 s).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
    STARTUP_S,
    Proc,
    RedisServer,
    celery_argv,
    heartbeat_env,
    wait_for,
)
from worker import State, read_heartbeat
from worker.core.names import QUEUE_MAX_MESSAGES, Keys
from worker.read.diagnosis import parse_marker

pytestmark = pytest.mark.e2e
INTERVAL_S = 0.5
SENT = "Sending due task petsage-heartbeat (health)"


def _state(port: int) -> tuple[State, str | None]:
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=None)
    try:
        report = read_heartbeat(client, "petsage")
    finally:
        client.close()
    return report.state, report.diagnosis


def test_one_marker_write_per_publish_and_a_bounded_queue_nobody_consumes(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    client = own_redis.client()
    beat = Proc(celery_argv("beat"), heartbeat_env(own_redis.url), tmp_path, "beat")
    procs.append(beat)
    wait_for(lambda: beat.output().count(SENT) >= QUEUE_MAX_MESSAGES + 8, 30, interval_s=0.1,
             what=f"{QUEUE_MAX_MESSAGES + 8} publishes with no worker")

    def marker_matches_the_log() -> bool:
        marker = parse_marker(client.get(Keys().beat("petsage")))
        return marker is not None and marker["seq"] == beat.output().count(SENT)

    # Celery's banner asks for a scheduler of its own: the hooks must still run once.
    wait_for(marker_matches_the_log, 5, interval_s=0.01, what="marker seq == publishes")
    for _ in range(2 * QUEUE_MAX_MESSAGES):
        assert client.llen("heartbeat.petsage") <= QUEUE_MAX_MESSAGES
        time.sleep(INTERVAL_S / 2)
    marker = parse_marker(client.get(Keys().beat("petsage")))
    assert marker is not None and marker["queue_depth"] == QUEUE_MAX_MESSAGES  # depth reported
    assert _state(own_redis.port) == (State.MISSING, "no_consumer")


def test_recovery_within_about_one_interval_after_a_long_redis_outage(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url)
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    procs.append(Proc(celery_argv("worker"), env, tmp_path, "worker"))
    wait_for(lambda: _state(own_redis.port)[0] is State.FRESH, STARTUP_S, what="fresh")
    own_redis.kill()
    time.sleep(13)  # long enough for Celery's own back-off to reach 8 s between attempts
    own_redis.start()
    back = time.monotonic()
    wait_for(lambda: _state(own_redis.port)[0] is State.FRESH, 10, interval_s=0.02,
             what="fresh again")
    took_s = time.monotonic() - back
    print(f"fresh {took_s:.2f}s after Redis came back from a 13 s outage")
    # One interval, plus the worker's reconnect wait (at most half an interval, 0.5 s here).
    assert took_s <= 2 * INTERVAL_S + 0.5 + 0.5, took_s
    assert all(p.alive() for p in procs)


def test_a_full_redis_at_start_is_one_line_per_component_and_heals(
        procs: list[Proc], tmp_path: Path) -> None:
    server = RedisServer("--maxmemory", "1", "--maxmemory-policy", "noeviction").start()
    try:
        env = heartbeat_env(server.url)
        beat = Proc(celery_argv("beat"), env, tmp_path, "beat")
        worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
        procs += [beat, worker]
        wait_for(lambda: beat.output().count(SENT) >= 6, STARTUP_S,
                 what="beat ticking on a full Redis")
        assert _state(server.port) == (State.MISSING, "store_refuses_writes")
        for proc in (beat, worker):
            assert proc.alive(), proc.output()[-2000:]
            assert "Traceback" not in proc.output() and "Unrecoverable" not in proc.output()
        assert beat.output().count("beat could not publish health (") == 1
        assert len(re.findall(r"the broker refuses writes", worker.output())) == 1
        server.client().config_set("maxmemory", 0)  # memory freed
        wait_for(lambda: _state(server.port)[0] is State.FRESH, 5, what="fresh once freed")
        assert "beat publishes health again" in beat.output()
        assert "the broker accepts writes again" in worker.output()
    finally:
        server.close()
