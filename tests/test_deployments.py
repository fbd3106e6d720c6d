"""Real deployments: services sharing a broker, several worker nodes, probes that restart only
what broke, the heartbeat inside the user's own Celery app, and two beats revealed.

Real redis-server, real ``celery beat`` and ``celery worker`` processes (interval 0.5 s,
stale after 1.5 s), and the RabbitMQ on 127.0.0.1:5672 where named.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.helpers import (
    IN_CI,
    REPO,
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
from worker.core.settings import Settings
from worker.publish.beat_marker import BeatMarker

pytestmark = pytest.mark.e2e
INTERVAL_S = 0.5
STALE_S = 1.5
SAMPLE_APP = REPO / "tests" / "sample_app"


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_process(cli_argv("check", *args), env=env, capture_output=True, text=True,
                       timeout=30, check=False)


def _state(client: redis.Redis, service: str) -> State:
    return read_heartbeat(client, service).state


def test_two_services_on_one_broker_never_run_each_others_heartbeats(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    client = own_redis.client()
    started = {}
    for service in ("petsage", "billing"):
        env = heartbeat_env(own_redis.url, HEARTBEAT_SERVICE=service)
        for role in ("beat", "worker"):
            proc = Proc(celery_argv(role, queue=f"heartbeat.{service}",
                                    hostname=f"{service}@%h"), env, tmp_path, f"{service}-{role}")
            procs.append(proc)
            started[service, role] = proc
    for service in ("petsage", "billing"):
        wait_for(lambda s=service: _state(client, s) is State.FRESH, STARTUP_S,
                 what=f"{service} fresh")

    # petsage's beat dies: petsage goes stale (beat_down); billing stays fresh throughout.
    started["petsage", "beat"].stop(signal.SIGKILL)
    deadline = time.monotonic() + STALE_S + 2 * INTERVAL_S
    while time.monotonic() < deadline:
        assert _state(client, "billing") is State.FRESH
        time.sleep(0.05)
    report = read_heartbeat(client, "petsage")
    assert report.state is State.STALE and report.diagnosis == "beat_down", report.reason
    seq_then = (report.payload or {}).get("seq")
    assert (read_heartbeat(client, "petsage").payload or {}).get("seq") == seq_then

    again = Proc(celery_argv("beat"), heartbeat_env(own_redis.url, HEARTBEAT_SERVICE="petsage"),
                 tmp_path, "petsage-beat-2")
    procs.append(again)
    wait_for(lambda: _state(client, "petsage") is State.FRESH, STARTUP_S,
             what="petsage fresh again")

    # billing's worker dies: billing goes stale (no_consumer); petsage stays fresh throughout.
    started["billing", "worker"].stop(signal.SIGKILL)
    deadline = time.monotonic() + STALE_S + 2 * INTERVAL_S
    while time.monotonic() < deadline:
        assert _state(client, "petsage") is State.FRESH
        time.sleep(0.05)
    report = read_heartbeat(client, "billing")
    assert report.state is State.STALE and report.diagnosis == "no_consumer", report.reason
    for service in ("petsage", "billing"):  # each worker ran only its own service's messages
        log = started[service, "worker"].output()
        assert "dropping a heartbeat of service" not in log


def _rabbit_url() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            pass
    except OSError:
        if IN_CI:
            pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_stopped_worker_node_fails_its_own_check_while_its_twin_passes(
        broker: str, own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    service = f"nodes-{uuid.uuid4().hex[:6]}"
    broker_url = own_redis.url if broker == "redis" else _rabbit_url()
    env = heartbeat_env(broker_url, HEARTBEAT_REDIS_URL=own_redis.url, HEARTBEAT_SERVICE=service)
    client = own_redis.client()
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    workers = {}
    for name in ("a", "b"):
        workers[name] = Proc(celery_argv("worker", queue=f"heartbeat.{service}",
                                         hostname=f"{name}@node-{name}"), env, tmp_path, name)
        procs.append(workers[name])
    for name in ("a", "b"):
        wait_for(lambda n=name: _check(env, "--node", f"node-{n}").returncode == 0, STARTUP_S,
                 what=f"node {name} fresh")

    os.kill(workers["a"].proc.pid, signal.SIGSTOP)  # the main process: its consumer hangs
    stopped = time.monotonic()
    try:
        # The promise: the stopped node's check fails within the stale threshold + one
        # interval. Each try is a check process: ~0.2 s quiet, seconds on a busy machine.
        wait_for(lambda: _check(env, "--node", "node-a").returncode == 2,
                 with_headroom(STALE_S + INTERVAL_S), interval_s=0.05,
                 what="the stopped node's check to fail")
        failed_after = time.monotonic() - stopped
        assert failed_after <= with_headroom(STALE_S + INTERVAL_S), failed_after
        assert _check(env, "--node", "b@node-b").returncode == 0
        assert _check(env, "--liveness", "--node", "node-b").returncode == 0
        wait_for(lambda: _check(env, "--liveness", "--node", "node-a").returncode == 2,
                 with_headroom(STALE_S + INTERVAL_S), what="the stopped node's liveness to fail")
        report = read_heartbeat(client, service)
        assert report.state is not State.STALE  # the twin keeps the service heartbeat renewed
        wait_for(lambda: _state(client, service) is State.FRESH, with_headroom(2 * INTERVAL_S),
                 what="service fresh")
        assert {n.node: n.state for n in report.nodes}["a@node-a"] is State.STALE
    finally:
        os.kill(workers["a"].proc.pid, signal.SIGCONT)
    wait_for(lambda: _check(env, "--node", "node-a").returncode == 0, 30,
             what="the node fresh again after SIGCONT")


def test_liveness_matrix_restarts_only_what_broke(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url)
    client = own_redis.client()
    beat = Proc(celery_argv("beat"), env, tmp_path, "beat")
    procs.append(beat)
    workers = {n: Proc(celery_argv("worker", hostname=f"hb@pod-{n}"), env, tmp_path, n)
               for n in ("a", "b")}
    procs.extend(workers.values())

    def live(*args: str) -> int:
        return _check(env, "--liveness", *args).returncode

    def nodes_fresh() -> bool:
        nodes = read_heartbeat(client, "petsage").nodes
        return len(nodes) == 2 and all(n.state is State.FRESH for n in nodes)

    # Both nodes recorded first: a node that has never run a heartbeat passes liveness for
    # one threshold after beat starts, which is not yet proof that it consumes.
    wait_for(nodes_fresh, STARTUP_S, what="both nodes fresh")
    wait_for(lambda: live("--node", "pod-a") == 0 and live("--node", "pod-b") == 0
             and live("--beat") == 0 and _check(env).returncode == 0, STARTUP_S,
             what="all alive")

    # Beat killed: beat's liveness fails; no worker's does (their nodes go stale too).
    beat.stop(signal.SIGKILL)
    # The promise: beat's liveness fails within the stale threshold + one interval.
    wait_for(lambda: live("--beat") == 2, with_headroom(STALE_S + INTERVAL_S),
             what="beat liveness fails")
    wait_for(lambda: read_heartbeat(client, "petsage").nodes
             and all(n.state is State.STALE for n in read_heartbeat(client, "petsage").nodes),
             with_headroom(STALE_S + INTERVAL_S), what="every node stale without beat")
    assert live("--node", "pod-a") == 0 and live("--node", "pod-b") == 0

    beat = Proc(celery_argv("beat"), env, tmp_path, "beat-2")
    procs.append(beat)
    wait_for(lambda: live("--beat") == 0 and _check(env).returncode == 0, STARTUP_S,
             what="beat back")
    # Right after beat comes back, no worker is blamed before it had a threshold to run one.
    assert live("--node", "pod-a") == 0 and live("--node", "pod-b") == 0

    # Worker a killed: its liveness fails; beat's and b's pass.
    workers["a"].stop(signal.SIGKILL)
    wait_for(lambda: live("--node", "pod-a") == 2, with_headroom(STALE_S + 2 * INTERVAL_S),
             what="worker a's liveness fails")
    assert live("--beat") == 0 and live("--node", "pod-b") == 0

    # Redis stopped: every liveness passes (a store fault restarts nothing); readiness fails.
    own_redis.kill()
    for args in (("--beat",), ("--node", "pod-a"), ("--node", "pod-b")):
        done = _check(env, "--liveness", *args)
        assert done.returncode == 0 and "store unreachable" in done.stdout, done.stdout
    assert _check(env).returncode == 3


def _sample_env(redis_url: str) -> dict[str, str]:
    env = heartbeat_env(redis_url, PETSAGE_APP_BROKER=redis_url)
    del env["CELERY_BROKER_URL"], env["HEARTBEAT_REDIS_URL"]  # from the app's own config
    env["PYTHONPATH"] = os.pathsep.join([str(SAMPLE_APP), str(REPO)])
    return env


def test_installed_into_the_users_own_app_keeps_its_config(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import json, petsage_app as m\n"
        "from worker.publish.install import heartbeat_settings\n"
        "c = m.app.conf\n"
        "print(json.dumps({'routes': c.task_routes, 'schedule': sorted(c.beat_schedule),"
        " 'serializer': c.task_serializer, 'broker': c.broker_url,"
        " 'queue': heartbeat_settings(m.app).queue,"
        " 'store': heartbeat_settings(m.app).redis_url, 'in_conf': 'heartbeat_settings' in c,"
        " 'tasks': sorted(t for t in m.app.tasks if not t.startswith('celery.'))}))\n"
    )
    done = run_process([sys.executable, "-c", code], env=_sample_env(redis_server.url),
                       capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    conf = json.loads(done.stdout)
    assert conf["routes"] == {"petsage_app.work": {"queue": "celery"},
                              "health": {"queue": "heartbeat.petsage"}}
    assert conf["schedule"] == ["app-own-tick", "petsage-heartbeat", "petsage-heartbeat-nodes"]
    assert conf["serializer"] == "json" and conf["broker"] == redis_server.url
    assert conf["queue"] == "heartbeat.petsage" and conf["store"] == redis_server.url
    assert conf["in_conf"] is False  # never in app.conf, which remote control dumps
    assert conf["tasks"] == ["health", "health.node", "petsage_app.tick", "petsage_app.work"]


def test_the_heartbeat_inside_the_users_app_proves_its_workers(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = _sample_env(own_redis.url)
    client = own_redis.client()
    base = [sys.executable, "-m", "celery", "-A", "petsage_app"]
    procs.append(Proc([*base, "beat", "--loglevel", "INFO"], env, tmp_path, "app-beat"))
    procs.append(Proc([*base, "worker", "-Q", "celery,heartbeat.petsage", "--concurrency", "1",
                       "--loglevel", "INFO", "--without-mingle", "--without-gossip",
                       "--hostname", "app@pod-1"], env, tmp_path, "app-worker"))
    wait_for(lambda: _state(client, "petsage") is State.FRESH, STARTUP_S, what="fresh from the app")
    reader_env = heartbeat_env(own_redis.url)
    wait_for(lambda: _check(reader_env, "--liveness", "--node", "pod-1").returncode == 0
             and _check(reader_env, "--node", "pod-1").returncode == 0, 10,
             what="the app worker's node heartbeat")

    sys.path.insert(0, str(SAMPLE_APP))
    try:
        from celery import Celery

        sender = Celery("sender", broker=own_redis.url)
        sender.conf.update(task_serializer="json")
        sender.send_task("petsage_app.work", args=[0, "quick"], queue="celery")
        wait_for(lambda: client.get("petsage_app:done:quick"), 10, what="the app's own task ran")
        # A long task of the app's own on its single process: the heartbeat goes late.
        sender.send_task("petsage_app.work", args=[4, "long"], queue="celery")
        wait_for(lambda: _state(client, "petsage") in (State.LATE, State.STALE), 4,
                 what="late while the worker is busy")
        wait_for(lambda: client.get("petsage_app:done:long"), 10, what="the long task done")
        wait_for(lambda: _state(client, "petsage") is State.FRESH, 5, what="fresh again")
    finally:
        sys.path.remove(str(SAMPLE_APP))


def test_two_beats_are_flagged_within_two_intervals(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url)
    client = own_redis.client()
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat-1"))
    procs.append(Proc(celery_argv("worker"), env, tmp_path, "worker"))
    wait_for(lambda: _state(client, "petsage") is State.FRESH, STARTUP_S, what="fresh")
    first_id = (read_heartbeat(client, "petsage").beat or {}).get("beat_id")
    assert read_heartbeat(client, "petsage").second_beat is None
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat-2"))
    wait_for(lambda: (read_heartbeat(client, "petsage").beat or {}).get("beat_id") != first_id,
             STARTUP_S, interval_s=0.01, what="the second beat's first publish")
    second_started = time.monotonic()
    # The promise (docs/states-and-diagnosis.md): flagged within two intervals.
    wait_for(lambda: read_heartbeat(client, "petsage").second_beat is not None,
             with_headroom(2 * INTERVAL_S), interval_s=0.02, what="two beats flagged")
    assert time.monotonic() - second_started <= with_headroom(2 * INTERVAL_S)
    status = run_process(cli_argv("status", "--json"), env=env, capture_output=True,
                         text=True, timeout=30, check=False)
    (row,) = json.loads(status.stdout)
    assert row["second_beat"] is not None and "two beats publish" in row["reason"]
    done = _check(env, "--beat")
    assert done.returncode == 1 and "two beats publish" in done.stdout
    assert _check(env, "--beat", "--liveness").returncode == 0  # a warning, not a restart


def test_a_restarted_beat_is_not_taken_for_a_second_one(real: redis.Redis) -> None:
    def marker() -> BeatMarker:
        return BeatMarker(real, Keys(), "petsage", interval_s=10, retention_s=60)

    old, new = marker(), marker()
    old.record_publish()
    old.record_publish()
    new.record_publish()  # the old beat died; a new one took over at once
    new.record_publish()
    assert read_heartbeat(real, "petsage").second_beat is None
    old.record_publish()  # ... but if the old one still publishes, both run
    report = read_heartbeat(real, "petsage")
    assert report.second_beat == new.beat_id


def _metric_nodes(client: redis.Redis) -> set[str]:
    from worker.http.router import configure, create_app

    configure(settings=Settings(), client=client)
    try:
        text = TestClient(create_app()).get("/metrics").text
    finally:
        configure()
    return {line.split('node="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("petsage_heartbeat_node_up{")}


def test_a_pod_that_goes_away_is_pruned_and_its_series_ends(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    retention_s = 3
    env = heartbeat_env(own_redis.url, HEARTBEAT_NODE_RETENTION_S=str(retention_s))
    client = own_redis.client()
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    workers = {n: Proc(celery_argv("worker", hostname=f"hb@pod-{n}"), env, tmp_path, n)
               for n in ("a", "b", "c")}
    procs.extend(workers.values())
    wait_for(lambda: _metric_nodes(client) == {"hb@pod-a", "hb@pod-b", "hb@pod-c"}, 60,
             what="three node series")
    # A crashed pod (SIGKILL): stale first, then pruned after the retention.
    workers["b"].stop(signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: {n.node: n.state for n in read_heartbeat(client, "petsage").nodes}
             .get("hb@pod-b") is State.STALE, with_headroom(STALE_S),
             what="the dead node shown stale")
    wait_for(lambda: "hb@pod-b" not in _metric_nodes(client), with_headroom(retention_s),
             what="the dead node pruned after the retention")
    assert time.monotonic() - killed >= retention_s - 0.5
    assert client.zscore(Keys().nodes("petsage"), "hb@pod-b") is None
    # A pod stopped cleanly removes its own record at once.
    workers["c"].stop(signal.SIGTERM)
    assert client.zscore(Keys().nodes("petsage"), "hb@pod-c") is None
    assert _metric_nodes(client) == {"hb@pod-a"}
    with contextlib.suppress(Exception):
        assert client.ttl(Keys().nodes("petsage")) <= retention_s
