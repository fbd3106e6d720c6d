"""RabbitMQ as the broker, Redis as the store: the pipeline and the backlog figure (AMQP)."""

from __future__ import annotations

import contextlib
import signal
import socket
import uuid
from pathlib import Path

import pytest

from tests.support.helpers import IN_CI, Proc, RedisServer, celery_argv, heartbeat_env, wait_for
from worker import State, read_heartbeat
from worker.core.names import QUEUE_MAX_MESSAGES

pytestmark = pytest.mark.e2e
AMQP_PORT = 5672


def _rabbit_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", AMQP_PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def amqp_url() -> str:
    if not _rabbit_up():
        if IN_CI:
            pytest.fail("RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    return f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}//"


def _purge(url: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=5) as conn, \
            contextlib.suppress(*conn.channel_errors):  # no such queue yet
        conn.default_channel.queue_purge("heartbeat.petsage")


def test_rabbitmq_broker_with_redis_store(amqp_url: str, own_redis: RedisServer,
                                          procs: list[Proc], tmp_path: Path) -> None:
    _purge(amqp_url)  # RabbitMQ outlives test runs: start from an empty queue
    service = f"rabbit-{uuid.uuid4().hex[:8]}"
    env = heartbeat_env(amqp_url, HEARTBEAT_REDIS_URL=own_redis.url, HEARTBEAT_SERVICE=service)
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    worker = Proc(celery_argv("worker", queue=f"heartbeat.{service}"), env, tmp_path, "worker")
    procs.append(worker)
    client = own_redis.client()
    wait_for(lambda: read_heartbeat(client, service).state is State.FRESH, 60,
             what="a heartbeat through RabbitMQ")
    payload = read_heartbeat(client, service).payload
    assert payload is not None
    backlog = payload.get("backlog")
    assert isinstance(backlog, dict) and backlog["error"] is None
    assert backlog["depth"] == 0 and backlog["oldest_age_ms"] is None  # AMQP: age unknown
    assert payload["queue_lag_ms"] is not None and payload["queue_lag_ms"] < 500
    worker.stop(signal.SIGKILL)
    procs.remove(worker)
    wait_for(lambda: read_heartbeat(client, service).diagnosis == "no_consumer", 10,
             what="no_consumer with RabbitMQ as the broker")
    again = Proc(celery_argv("worker", queue=f"heartbeat.{service}"), env, tmp_path, "worker2")
    procs.append(again)
    wait_for(lambda: read_heartbeat(client, service).state is State.FRESH, 60,
             what="fresh again")


def test_a_queue_nobody_consumes_stays_bounded_on_rabbitmq(amqp_url: str, own_redis: RedisServer,
                                                          procs: list[Proc],
                                                          tmp_path: Path) -> None:
    from kombu import Connection

    service = f"rabbit-{uuid.uuid4().hex[:8]}"
    queue = f"heartbeat.{service}"
    env = heartbeat_env(amqp_url, HEARTBEAT_REDIS_URL=own_redis.url, HEARTBEAT_SERVICE=service)
    beat = Proc(celery_argv("beat"), env, tmp_path, "beat")
    procs.append(beat)
    sent = "Sending due task petsage-heartbeat (health)"
    wait_for(lambda: beat.output().count(sent) >= QUEUE_MAX_MESSAGES + 6, 30,
             what="more publishes than the bound, with no worker")
    with Connection(amqp_url, connect_timeout=5) as conn:
        channel = conn.default_channel
        try:
            _, depth, _ = channel.queue_declare(queue, passive=True)
            assert 0 < depth <= QUEUE_MAX_MESSAGES
        finally:
            channel.queue_delete(queue)
