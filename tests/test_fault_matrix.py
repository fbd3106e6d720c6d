"""The diagnosis matrix: each fault on real processes names its own hop in time.

Real redis-server processes (the broker and the store on separate servers where the row
says so), real ``celery beat`` and ``celery worker`` (interval 0.5 s, stale after 1.5 s).
Each row injects one fault into a fresh pipeline and asserts the state and the diagnosis
within the stale threshold plus one interval of the fault, then that they hold.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
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
from worker.publish.health_checks import ERROR_CHARS
from worker.read.diagnosis import REFUSAL_NOTE_S

pytestmark = pytest.mark.e2e
INTERVAL_S = 0.5
STALE_S = 1.5
DEADLINE_S = STALE_S + INTERVAL_S
"""The matrix's promise: the right state and diagnosis this soon after the fault."""


@dataclass
class Pipeline:
    """Beat and one worker on a broker and a store (one Redis unless told otherwise)."""

    broker: RedisServer
    store: RedisServer
    tmp_path: Path
    procs: list[Proc]
    extra_env: dict[str, str] = field(default_factory=dict)
    roles: dict[str, Proc] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = heartbeat_env(self.broker.url, HEARTBEAT_REDIS_URL=self.store.url,
                            **self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        return env

    def start(self, role: str, *extra: str, queue: str = "heartbeat.petsage") -> Proc:
        proc = Proc(celery_argv(role, *extra, queue=queue), self.env, self.tmp_path, role)
        self.procs.append(proc)
        self.roles[role] = proc
        return proc

    def report(self) -> tuple[State, str | None]:
        client = redis.Redis(port=self.store.port, socket_timeout=0.5,
                             socket_connect_timeout=0.5, retry=None)
        try:
            report = read_heartbeat(client, "petsage")
        finally:
            client.close()
        return report.state, report.diagnosis

    def fresh(self) -> None:
        wait_for(lambda: self.report() == (State.FRESH, None), STARTUP_S,
                 what="a fresh heartbeat")

    def pool_child(self) -> int:
        main = self.roles["worker"].proc.pid
        children = run_process(["pgrep", "-P", str(main)], capture_output=True, text=True,
                               check=False).stdout.split()
        assert len(children) == 1, children  # --concurrency 1: one pool child
        return int(children[0])


@pytest.fixture
def pipeline(own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> Iterator[Pipeline]:
    yield Pipeline(own_redis, own_redis, tmp_path, procs)


@pytest.fixture
def split(own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> Iterator[Pipeline]:
    """The broker on a server of its own (``own_redis``), the store on another."""
    store = RedisServer().start()
    try:
        yield Pipeline(own_redis, store, tmp_path, procs)
    finally:
        store.close()


def _expect(pipe: Pipeline, states: set[State], diagnosis: str, *, since: float,
            deadline_s: float = DEADLINE_S, before: frozenset[str | None] | None = None) -> None:
    """The state and diagnosis within ``deadline_s`` of ``since`` (plus headroom for a busy
    machine), still so one interval later; with ``before``, every reading until then is
    fresh or says one of those."""
    def right() -> tuple[State, str | None] | None:
        report = pipe.report()
        if before is not None and report[1] is not None:
            assert report[1] in before | {diagnosis}, report
        return report if report[0] in states and report[1] == diagnosis else None

    bound = with_headroom(deadline_s)
    wait_for(right, max(bound - (time.monotonic() - since), 0.05), interval_s=0.02,
             what=f"{'/'.join(sorted(states))} {diagnosis} within {deadline_s}s of the fault "
                  f"(plus headroom: {bound}s)")
    time.sleep(INTERVAL_S)  # the diagnosis must not flip between two readings
    state, said = pipe.report()
    assert state in states and said == diagnosis, (state, said)


def _running(pipe: Pipeline) -> float:
    pipe.start("beat")
    pipe.start("worker")
    pipe.fresh()
    return time.monotonic()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_beat_down(pipeline: Pipeline, sig: signal.Signals) -> None:
    _running(pipeline)
    os.kill(pipeline.roles["beat"].proc.pid, sig)
    # Until no refused publish can still be noted, beat's silence may be the broker's:
    # beat_or_broker, never a confident other hop; then beat_down.
    _expect(pipeline, {State.STALE}, "beat_down", since=time.monotonic(),
            deadline_s=INTERVAL_S + REFUSAL_NOTE_S + INTERVAL_S,
            before=frozenset({"beat_or_broker"}))


@pytest.mark.parametrize("fault", ["killed", "main_stopped", "pool_child_stopped"])
def test_worker_down(pipeline: Pipeline, fault: str) -> None:
    _running(pipeline)
    worker = pipeline.roles["worker"]
    if fault == "killed":
        os.killpg(worker.proc.pid, signal.SIGKILL)
    elif fault == "main_stopped":
        os.kill(worker.proc.pid, signal.SIGSTOP)
    else:
        os.kill(pipeline.pool_child(), signal.SIGSTOP)
    _expect(pipeline, {State.STALE}, "no_consumer", since=time.monotonic())
    assert pipeline.roles["beat"].alive()


def test_worker_on_the_wrong_queue(pipeline: Pipeline) -> None:
    pipeline.start("beat")
    pipeline.start("worker", queue="heartbeat.other")
    started = wait_for(lambda: "ready." in pipeline.roles["worker"].output() and time.monotonic(),
                       STARTUP_S, what="the worker ready")
    _expect(pipeline, {State.MISSING}, "no_consumer", since=started)


def test_broker_down_with_the_store_on_its_own_server(split: Pipeline) -> None:
    _running(split)
    split.broker.kill()
    _expect(split, {State.STALE}, "broker_down", since=time.monotonic())
    beat = split.roles["beat"]
    assert beat.alive() and "Traceback" not in beat.output()
    assert beat.output().count("could not publish health (") == 1


def test_store_down(split: Pipeline) -> None:
    _running(split)
    split.store.kill()
    _expect(split, {State.UNREACHABLE}, "store_unreachable", since=time.monotonic())


def test_store_full(pipeline: Pipeline) -> None:
    _running(pipeline)
    admin = pipeline.store.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    _expect(pipeline, {State.STALE}, "store_refuses_writes", since=time.monotonic(),
            before=frozenset())  # every reading not fresh says so, late ones too
    admin.config_set("maxmemory", 0)
    pipeline.fresh()
    for proc in pipeline.procs:  # each says it in a line, none died or dumped a traceback
        assert proc.alive() and "Traceback" not in proc.output(), proc.name


def test_store_is_a_read_only_replica(split: Pipeline) -> None:
    split.store.extra_args += ["--replicaof", "127.0.0.1", str(split.broker.port)]
    split.store.restart()
    started = _running_without_fresh(split)
    _expect(split, {State.MISSING}, "store_refuses_writes", since=started)


def _running_without_fresh(pipe: Pipeline) -> float:
    pipe.start("beat")
    pipe.start("worker")
    return wait_for(lambda: "ready." in pipe.roles["worker"].output() and time.monotonic(),
                    STARTUP_S, what="the worker ready")


def test_a_check_raising_300_kb(pipeline: Pipeline) -> None:
    pipeline.extra_env["HEARTBEAT_CHECKS"] = "huge=tests.plugins.sample_checks:raise_300_kb"
    pipeline.start("beat")
    worker = pipeline.start("worker")
    started = wait_for(lambda: "ready." in worker.output() and time.monotonic(), STARTUP_S,
                       what="the worker ready")
    _expect(pipeline, {State.LATE}, "check_failed", since=started)
    report = read_heartbeat(pipeline.store.client(), "petsage")
    assert report.payload is not None and report.payload["status"] == "degraded"
    error = report.payload["checks"]["huge"].get("error", "")
    assert error.startswith("RuntimeError: xxx") and len(error) == ERROR_CHARS
    assert "soft time limit" not in worker.output().lower()
    # The task is not stalled by the message: it runs within one interval (plus headroom).
    # (A heartbeat may still expire in the queue when a busy machine delays the worker.)
    assert report.payload["duration_ms"] < with_headroom(INTERVAL_S) * 1000
    seq = report.payload["seq"]
    wait_for(lambda: (read_heartbeat(pipeline.store.client(), "petsage").payload or {})
             .get("seq", 0) >= seq + 4, with_headroom(4 * INTERVAL_S),
             what="every heartbeat still written")  # four intervals


def test_heartbeats_expiring_in_a_backlog(own_redis: RedisServer, procs: list[Proc],
                                          tmp_path: Path) -> None:
    """A worker busy with the app's own long tasks: heartbeats wait, expire, are discarded."""
    sample = REPO / "tests" / "sample_app"
    env = heartbeat_env(own_redis.url, PETSAGE_APP_BROKER=own_redis.url)
    del env["CELERY_BROKER_URL"], env["HEARTBEAT_REDIS_URL"]
    env["PYTHONPATH"] = os.pathsep.join([str(sample), str(REPO)])
    base = [sys.executable, "-m", "celery", "-A", "petsage_app"]
    procs.append(Proc([*base, "beat", "--loglevel", "INFO"], env, tmp_path, "beat"))
    procs.append(Proc([*base, "worker", "-Q", "celery,heartbeat.petsage", "--concurrency", "1",
                       "--loglevel", "INFO", "--without-mingle", "--without-gossip"], env,
                      tmp_path, "worker"))
    pipe = Pipeline(own_redis, own_redis, tmp_path, procs)
    pipe.fresh()
    sys.path.insert(0, str(sample))
    try:
        from celery import Celery

        sender = Celery("sender", broker=own_redis.url)
        sender.conf.update(task_serializer="json")
        for n in range(12):  # the app's own work: 12 tasks of 1.2 s, back to back
            sender.send_task("petsage_app.work", args=[1.2, f"busy-{n}"], queue="celery")
        # The fault shows when the worker takes a heartbeat that waited past its expiry.
        worker = procs[-1]
        expired = wait_for(lambda: "discarding expired heartbeats" in worker.output()
                           and time.monotonic(), 15, interval_s=0.02,
                           what="a heartbeat expired in the backlog")
        _expect(pipe, {State.LATE, State.STALE}, "worker_slow", since=expired)
    finally:
        sys.path.remove(str(sample))


def test_a_store_filling_up_says_store_refuses_writes_in_every_reading_not_fresh(
        pipeline: Pipeline) -> None:
    """The store is the broker and something else fills it: it swings about its limit,
    taking one write and refusing the next; no reading blames beat or the worker."""
    _running(pipeline)
    admin = pipeline.store.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 2_000_000)
    stop = threading.Event()

    def fill() -> None:
        filler = pipeline.store.client()
        n = 0
        while not stop.is_set():
            try:
                filler.set(f"filler:{n}", "x" * 1000)
                n += 1
            except redis.ResponseError:  # OOM: try again, as an application would
                time.sleep(0.005)

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    readings: list[tuple[State, str | None]] = []
    try:
        end = time.monotonic() + 4 * STALE_S
        while time.monotonic() < end:
            readings.append(pipeline.report())
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    not_fresh = [r for r in readings if r[0] is not State.FRESH]
    assert any(state is State.STALE for state, _ in not_fresh), readings
    assert {said for _, said in not_fresh} == {"store_refuses_writes"}, not_fresh


def _incidents(client: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in client.xrange(Keys().incidents("petsage"))]


def test_a_broker_outage_is_never_blamed_on_beat_by_a_reading_or_an_incident(
        split: Pipeline) -> None:
    """The broker alone killed, a monitor running: every reading through the outage, every
    incident entry and every notification says beat_or_broker or broker_down, and the last
    word is broker_down."""
    _running(split)
    split.procs.append(Proc(cli_argv("monitor"), split.env, split.tmp_path, "monitor"))
    store = split.store.client()
    wait_for(lambda: store.hget(Keys().observed("petsage"), "state") == b"fresh", STARTUP_S,
             what="the monitor's first judgement")
    split.broker.kill()
    killed = time.monotonic()
    said: list[tuple[str, str | None]] = []
    while time.monotonic() - killed < with_headroom(DEADLINE_S) + 4 * INTERVAL_S:
        done = run_process(cli_argv("check", "--json"), env=split.env, capture_output=True,
                           text=True, timeout=30, check=False)
        reading = json.loads(done.stdout)
        said.append((reading["state"], reading["diagnosis"]))
        time.sleep(0.1)
    assert not [s for s in said if s[1] not in (None, "beat_or_broker", "broker_down")], said
    assert said[-1] == ("stale", "broker_down"), said
    entries = _incidents(store)
    assert entries and all(e["diagnosis"] in ("beat_or_broker", "broker_down")
                           for e in entries), entries
    assert entries[-1]["diagnosis"] == "broker_down", entries
    assert store.hget(Keys().observed("petsage"), "diagnosis") == b"broker_down"
    notes = [json.loads(f[b"event"]) for _, f in store.xrange(Keys().outbox)]
    assert notes and notes[-1]["diagnosis"] == "broker_down", notes
    assert all(n["diagnosis"] in ("beat_or_broker", "broker_down") for n in notes), notes


def test_the_matrix_covers_every_diagnosis() -> None:
    from worker.core.states import Diagnosis

    source = Path(__file__).read_text(encoding="utf-8")
    for diagnosis in Diagnosis:
        if diagnosis is not Diagnosis.NEVER_SEEN:  # nothing deployed: tests/test_first_hour.py
            assert f'"{diagnosis.value}"' in source, diagnosis

