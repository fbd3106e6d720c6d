"""End to end: real celery beat and worker processes, a real redis-server, interval 0.5 s."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
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
from worker.core.payload import payload_problem

pytestmark = pytest.mark.e2e


def _fresh(client: redis.Redis, service: str = "petsage") -> bool:
    return read_heartbeat(client, service).state is State.FRESH


def test_pipeline_lands_goes_stale_when_the_worker_dies_and_recovers(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url)
    client = own_redis.client()
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
    procs.append(worker)

    wait_for(lambda: _fresh(client), STARTUP_S, what="a first fresh heartbeat")
    report = read_heartbeat(client, "petsage")
    assert report.payload is not None and payload_problem(report.payload, "petsage") is None
    assert report.payload["interval_s"] == 0.5 and report.payload["stale_after_s"] == 1.5
    assert report.payload["queue_lag_ms"] is not None
    assert report.payload["worker"]["node"].startswith("hbtest@")
    seen = [(report.payload["seq"], report.payload["ts_ms"])]

    worker.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    # The promise: stale once stale_after (1.5 s) has passed since the last heartbeat.
    wait_for(lambda: read_heartbeat(client, "petsage").state is State.STALE,
             with_headroom(1.5), interval_s=0.02, what="stale within stale_after of the worker "
             "dying (plus headroom)")
    assert time.monotonic() - killed_at <= with_headroom(1.5)
    # The hop that broke: beat publishes, nobody consumes; said within two intervals.
    wait_for(lambda: read_heartbeat(client, "petsage").diagnosis == "no_consumer",
             with_headroom(2 * INTERVAL_S), interval_s=0.02,
             what="diagnosed no_consumer within an interval or two (plus headroom)")
    dead = read_heartbeat(client, "petsage")
    assert dead.state is State.STALE and "no worker ran it" in dead.reason

    again = Proc(celery_argv("worker"), env, tmp_path, "worker2")
    procs.append(again)
    wait_for(lambda: re.search(r"hbtest@\S+ ready\.", again.output()), STARTUP_S,
             interval_s=0.01, what="the restarted worker to be ready")
    ready_at = time.monotonic()
    # The promise: fresh within 2 intervals of the worker being ready.
    wait_for(lambda: _fresh(client), with_headroom(2 * INTERVAL_S), interval_s=0.02,
             what="fresh within 2 intervals of the worker being ready (plus headroom)")
    assert time.monotonic() - ready_at <= with_headroom(2 * INTERVAL_S)
    final = read_heartbeat(client, "petsage").payload
    assert final is not None
    seen.append((final["seq"], final["ts_ms"]))
    assert seen == sorted(seen)
    # Beat kept its schedule in memory: nothing but our own logs in the working directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beat.log", "worker.log", "worker2.log"]


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (by parent pid): found even when a process retitles
    itself (Celery with setproctitle installed overwrites its environment block)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_with_marker(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def test_run_with_no_url_starts_embedded_redis_and_stops_cleanly(tmp_path: Path) -> None:
    marker = f"PETSAGE_TEST_MARKER={uuid.uuid4()}"
    env = heartbeat_env("unused")
    for name in ("CELERY_BROKER_URL", "HEARTBEAT_REDIS_URL", "HEARTBEAT_INTERVAL_S"):
        env.pop(name)
    env[marker.split("=", maxsplit=1)[0]] = marker.split("=")[1]
    started = time.monotonic()
    run = Proc(cli_argv("run"), env, tmp_path, "run")
    try:
        # The promise (README): the first heartbeat at start, not one interval (10 s) later;
        # 5 s of start, plus headroom, still under the interval.
        bound = with_headroom(5)
        url = wait_for(lambda: re.search(r"redis://127\.0\.0\.1:\d+/0", run.output()), bound,
                       what="the embedded server's URL").group(0)
        client = redis.Redis.from_url(url, socket_timeout=2)
        wait_for(lambda: _fresh(client), bound - (time.monotonic() - started), interval_s=0.05,
                 what=f"the first heartbeat within {bound} s of start")
        assert bound < 10
        report = read_heartbeat(client, "petsage")
        assert report.payload is not None and report.payload["interval_s"] == 10
        wait_for(lambda: "heartbeat petsage seq=1 fresh" in run.output(), with_headroom(2),
                 what="the heartbeat printed as it lands")
        children = _descendants(run.proc.pid)
        assert len(children) >= 3, children  # beat, worker, monitor (+ the pool)
        # The monitor judges from the start: its record of the service exists.
        wait_for(lambda: client.hget(Keys().observed("petsage"), "state") == b"fresh", 10,
                 what="the monitor's record of petsage")
        run.proc.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        code = run.proc.wait(timeout=30)
        assert time.monotonic() - stop_started <= with_headroom(5)  # stopped in 5 s
        assert code == 0, run.output()
        assert _processes_with_marker(marker) == []
        assert [pid for pid in children if _alive(pid)] == []
        output = run.output()
        assert "Traceback" not in output and "Cannot connect" not in output
    finally:
        run.stop(timeout_s=1)
        for pid in _processes_with_marker(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEARTBEAT_INTERVAL_S", "abc"),
        ("HEARTBEAT_INTERVAL_S", "0"),
        ("HEARTBEAT_INTERVAL_S", "-1"),
        ("HEARTBEAT_STALE_AFTER_S", "0.2"),
        ("CELERY_BROKER_URL", "foo://127.0.0.1:1/0"),
        ("HEARTBEAT_REDIS_URL", "foo://127.0.0.1:1/0"),
        ("HEARTBEAT_SERVICE", "bad name*"),
    ],
)
@pytest.mark.parametrize("program", ["beat", "worker", "run"])
def test_bad_configuration_exits_with_one_line_and_no_traceback(
        tmp_path: Path, program: str, variable: str, value: str) -> None:
    env = heartbeat_env("redis://127.0.0.1:1/0", **{variable: value})
    argv = cli_argv("run") if program == "run" else celery_argv(program)
    done = run_process(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, check=False)
    assert done.returncode != 0
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert variable in lines[0] and "Traceback" not in lines[0]
    assert lines[0].startswith("petsage-heartbeat: ")


def test_checks_named_in_the_setting_run_in_the_real_worker(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url, HEARTBEAT_CHECKS="db=tests.plugins.sample_checks:ping_db",
                        PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    procs.append(Proc(celery_argv("worker"), env, tmp_path, "worker"))
    client = own_redis.client()

    def has_db_check() -> bool:
        payload = read_heartbeat(client, "petsage").payload
        return payload is not None and "db" in payload["checks"]

    wait_for(has_db_check, 30, what="a heartbeat carrying the user's check")
    report = read_heartbeat(client, "petsage")
    assert report.payload is not None and report.payload["checks"]["db"]["status"] == "degraded"
    assert report.payload["status"] == "degraded" and report.state is State.LATE


def test_a_check_that_cannot_be_imported_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    env = heartbeat_env("redis://127.0.0.1:1/0", HEARTBEAT_CHECKS="nosuch.module:ping")
    done = run_process(celery_argv("worker"), env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, check=False)
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, lines
    assert "HEARTBEAT_CHECKS" in lines[0] and "nosuch.module" in lines[0]
