"""Which hop broke, with real celery beat and worker processes and a real redis-server."""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
    IN_CI,
    INTERVAL_S,
    STARTUP_S,
    Proc,
    RedisServer,
    celery_argv,
    cli_argv,
    heartbeat_env,
    wait_for,
    with_headroom,
)
from tests.support.processes import run as run_process
from worker import State, read_heartbeat
from worker.core.names import Keys
from worker.read.diagnosis import parse_marker

pytestmark = pytest.mark.e2e
KEYS = Keys()


def _state(client: redis.Redis) -> tuple[State, str | None]:
    report = read_heartbeat(client, "petsage")
    return report.state, report.diagnosis


def _start(redis_server: RedisServer, procs: list[Proc], tmp_path: Path,
           *roles: str) -> dict[str, Proc]:
    env = heartbeat_env(redis_server.url)
    started = {}
    for role in roles:
        started[role] = Proc(celery_argv(role), env, tmp_path, role)
        procs.append(started[role])
    return started


def _history(client: redis.Redis) -> list[dict[str, float]]:
    numeric = ("ts_ms", "seq", "lag_ms", "duration_ms", "queue_depth")
    return [{k.decode(): float(v) for k, v in fields.items()
             if v != b"" and k.decode() in numeric}
            for _, fields in client.xrange(KEYS.history("petsage"))]


def test_stopping_beat_is_diagnosed_beat_down(own_redis: RedisServer, procs: list[Proc],
                                              tmp_path: Path) -> None:
    client = own_redis.client()
    started = _start(own_redis, procs, tmp_path, "beat", "worker")
    wait_for(lambda: _state(client) == (State.FRESH, None), STARTUP_S, what="fresh")
    started["beat"].stop(signal.SIGKILL)
    stopped_at = time.monotonic()
    # The promise: stale (beat_down) once stale_after (1.5 s) has passed.
    wait_for(lambda: _state(client) == (State.STALE, "beat_down"), with_headroom(1.5),
             interval_s=0.02, what="beat_down within stale_after (plus headroom)")
    assert time.monotonic() - stopped_at <= with_headroom(1.5)
    assert started["worker"].alive()


def test_stopping_the_worker_is_no_consumer_and_its_return_drains_the_queue(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    client = own_redis.client()
    env = heartbeat_env(own_redis.url)
    started = _start(own_redis, procs, tmp_path, "beat", "worker")
    wait_for(lambda: _state(client) == (State.FRESH, None), STARTUP_S, what="fresh")
    started["worker"].stop(signal.SIGKILL)
    before = read_heartbeat(client, "petsage").payload
    assert before is not None
    # The promise: stale (no_consumer) once stale_after (1.5 s) has passed.
    wait_for(lambda: _state(client) == (State.STALE, "no_consumer"), with_headroom(1.5),
             interval_s=0.02, what="no_consumer within stale_after (plus headroom)")
    depth_then = client.llen("heartbeat.petsage")
    wait_for(lambda: client.llen("heartbeat.petsage") >= depth_then + 4, 5,
             what="the backlog growing")
    marker = parse_marker(client.get(KEYS.beat("petsage")))
    assert marker is not None and marker["queue_depth"] >= depth_then + 3
    check = run_process(cli_argv("check", "--json"), env=env, capture_output=True,
                        text=True, timeout=30, check=False)
    as_json = json.loads(check.stdout)
    assert check.returncode == 2 and as_json["diagnosis"] == "no_consumer"
    assert as_json["beat"]["queue_depth"] >= depth_then
    entries_before = len(_history(client))

    again = Proc(celery_argv("worker"), env, tmp_path, "worker2")
    procs.append(again)
    wait_for(lambda: re.search(r"hbtest@\S+ ready\.", again.output()), STARTUP_S,
             interval_s=0.01, what="the worker ready again")
    ready_at = time.monotonic()
    # The promise: fresh within 2 intervals of the worker being ready.
    wait_for(lambda: _state(client)[0] is State.FRESH, with_headroom(2 * INTERVAL_S),
             interval_s=0.02, what="fresh within 2 intervals of the worker being ready "
             "(plus headroom)")
    assert time.monotonic() - ready_at <= with_headroom(2 * INTERVAL_S)
    wait_for(lambda: client.llen("heartbeat.petsage") <= 1, 10, what="the queue drained")
    history = _history(client)
    after = history[entries_before:]
    expired = [e for e in after if e.get("lag_ms", 0) > 500]
    assert len(expired) <= 1, after  # at most one expired heartbeat ran; the rest were dropped
    seqs = [e["seq"] for e in history]
    stamps = [e["ts_ms"] for e in history]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and stamps == sorted(stamps)
    assert after and after[0]["seq"] == before["seq"] + 1


def test_a_worker_an_hour_ahead_still_runs_every_heartbeat(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    faketime = shutil.which("faketime")
    if faketime is None:
        if IN_CI:
            pytest.fail("faketime is not installed (CI must provide it)")
        pytest.skip("faketime is not installed")
    client = own_redis.client()
    env = heartbeat_env(own_redis.url, FAKETIME_DONT_FAKE_MONOTONIC="1")
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    skewed = Proc([faketime, "-f", "+1h", *celery_argv("worker")], env, tmp_path, "worker")
    procs.append(skewed)
    wait_for(lambda: _state(client) == (State.FRESH, None), STARTUP_S,
             what="fresh despite the skew")
    first = read_heartbeat(client, "petsage").payload
    assert first is not None
    assert abs(first["clock_offset_ms"] + 3_600_000) < 60_000  # the payload says how far off
    assert first["queue_lag_ms"] is not None and first["queue_lag_ms"] < 500
    # It keeps landing, interval after interval, judged fresh on the Redis clock.
    wait_for(lambda: (read_heartbeat(client, "petsage").payload or {}).get("seq", 0)
             >= first["seq"] + 4, with_headroom(4 * INTERVAL_S),
             what="four more heartbeats in four intervals (plus headroom)")
    assert _state(client) == (State.FRESH, None)


def test_redis_down_is_store_unreachable_and_everything_recovers(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    client = own_redis.client()
    env = heartbeat_env(own_redis.url)
    _start(own_redis, procs, tmp_path, "beat", "worker")
    wait_for(lambda: _state(client) == (State.FRESH, None), STARTUP_S, what="fresh")
    own_redis.kill()
    check = run_process(cli_argv("check", "--json", "--timeout", "1"), env=env,
                        capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 3
    assert json.loads(check.stdout)["diagnosis"] == "store_unreachable"
    own_redis.start()
    fresh = redis.Redis(port=own_redis.port, socket_timeout=2)
    wait_for(lambda: _state(fresh) == (State.FRESH, None), STARTUP_S,
             what="fresh after Redis returns")
