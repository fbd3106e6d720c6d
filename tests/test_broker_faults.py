"""The worker never dies of a broker fault: it consumes again within about one interval of
the broker accepting writes, and no "Unrecoverable error" ends it.

Real processes: a broker redis-server of the test's own (killed, restarted, turned into a
replica and back), a separate store redis-server (so the heartbeat stays readable),
``celery beat`` and ``celery worker`` at a 0.5 s interval.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
    Proc,
    RedisServer,
    celery_argv,
    free_port,
    heartbeat_env,
    wait_for,
)
from worker import State, read_heartbeat

pytestmark = pytest.mark.e2e
INTERVAL_S = 0.5
BACK_WITHIN_S = 2 * INTERVAL_S + 0.5 + 20 * INTERVAL_S
"""The promise, one interval (the next publish) plus the consumer's reconnect wait (half an
interval, at least 0.5 s) after the broker accepts writes, and twenty intervals of headroom
for a busy machine: 0.3 to 0.5 s on a quiet one, but once over 6.5 s (ten intervals of
headroom) beside four CPU burners, a mutation run and the rest of the suite, load 9 on two
cores, where the worker's consumer restarts its parts in turn; what runs measure is in
docs/reliability.md."""

STARTUP_S = 120
"""Waits that are no promise (a task received, a heartbeat gone stale after a failover):
long enough for a busy machine."""

RECEIVED = "] received"
"""Celery's worker log line for a task taken from the queue."""


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


def _seq(store: redis.Redis) -> int | None:
    report = read_heartbeat(store, "petsage")
    if report.state is not State.FRESH or report.payload is None:
        return None
    seq: int = report.payload["seq"]
    return seq


def _pool_children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _start(broker: RedisServer, store: RedisServer, procs: list[Proc],
           tmp_path: Path) -> tuple[Proc, redis.Redis]:
    env = heartbeat_env(broker.url, HEARTBEAT_REDIS_URL=store.url)
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
    procs.append(worker)
    client = store.client()
    wait_for(lambda: _seq(client) is not None, 60, what="a first fresh heartbeat")
    return worker, client


def _consumes_again(worker: Proc, store: redis.Redis, since_seq: int | None) -> float:
    """Seconds until a heartbeat newer than ``since_seq`` lands (fails after the bound)."""
    start = time.monotonic()
    try:
        wait_for(lambda: (_seq(store) or -1) > (since_seq or -1), BACK_WITHIN_S,
                 interval_s=0.02, what="a new heartbeat after the broker came back")
    except pytest.fail.Exception:
        print(worker.output()[-4000:])  # what the worker said: shown beside the failure
        raise
    assert worker.alive(), worker.output()[-3000:]
    return time.monotonic() - start


def _pause_and_receive(worker: Proc) -> None:
    """Pause the pool child, and return once the worker has received a task it can't run.

    Paused in the middle of a task (a busy machine makes that likely), the child holds the
    worker's one reserved message and no task is received: then it runs on, and the pause
    is tried again.
    """
    for _ in range(20):
        children = _pool_children(worker.proc.pid)
        received = worker.output().count(RECEIVED)
        for child in children:
            os.kill(child, signal.SIGSTOP)
        deadline = time.monotonic() + 20 * INTERVAL_S + 5
        while time.monotonic() < deadline:
            if worker.output().count(RECEIVED) > received:
                return  # the child stays paused: the caller kills the broker, then resumes it
            time.sleep(0.005)
        for child in children:
            os.kill(child, signal.SIGCONT)
    pytest.fail("no task received with the pool child paused, in 20 tries")


def test_a_broker_killed_right_after_a_task_is_received_never_kills_the_worker(
        broker: RedisServer, own_redis: RedisServer, procs: list[Proc],
        tmp_path: Path) -> None:
    """20 kills, timings from a fixed seed. The pool child is paused while each task is
    received, so that the message is still unacknowledged when the broker dies: the window
    that made Celery 5.7 exit with kombu's ``AttributeError`` (kombu#582, #970)."""
    worker, store = _start(broker, own_redis, procs, tmp_path)
    timings = random.Random(23)
    took: list[float] = []
    for _ in range(20):
        _pause_and_receive(worker)
        try:
            time.sleep(timings.uniform(0, 0.06))
            broker.kill()
        finally:
            for child in _pool_children(worker.proc.pid):
                os.kill(child, signal.SIGCONT)
        time.sleep(timings.uniform(0.1, 1.0))
        before = _seq(store)
        broker.start()
        took.append(_consumes_again(worker, store, before))
    print(f"fresh again after each of 20 kills: max {max(took):.2f}s, "
          f"median {sorted(took)[10]:.2f}s")
    output = worker.output()
    assert "Unrecoverable error" not in output
    assert "Traceback" not in output


def test_a_broker_turned_replica_and_back_never_kills_the_worker(
        broker: RedisServer, own_redis: RedisServer, procs: list[Proc],
        tmp_path: Path) -> None:
    """``REPLICAOF`` answers the worker's blocked BRPOP with ``UNBLOCKED``; the worker takes
    it for a lost connection, waits while the replica refuses writes, and consumes again
    once ``REPLICAOF NO ONE`` makes it a primary."""
    worker, store = _start(broker, own_redis, procs, tmp_path)
    admin = broker.client()
    for _ in range(2):  # twice: the second failover finds the recovered consumer
        admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        wait_for(lambda: _seq(store) is None, STARTUP_S, what="not fresh")
        assert worker.alive()
        time.sleep(4 * INTERVAL_S)
        assert worker.alive(), worker.output()[-3000:]
        before = _seq(store)
        admin.execute_command("REPLICAOF", "NO", "ONE")
        took = _consumes_again(worker, store, before)
        print(f"fresh again {took:.2f}s after REPLICAOF NO ONE")
    output = worker.output()
    assert "Unrecoverable error" not in output
    assert "the broker refuses writes" in output  # one line while it was a replica
    assert output.count("the broker refuses writes") <= 2
