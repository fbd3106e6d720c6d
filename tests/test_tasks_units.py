"""The heartbeat tasks in process: the time limit, the headers read from a request, the
clients a process makes (again after a fork), the backlog asked of the right broker, and
each log line of the outcomes, once per change (a failure, a recovery, a drained backlog).

Store clients are fakeredis (``make_client`` of the module stands in); the tasks run on
Celery's in-memory app, called directly, with no worker.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from celery import Celery

from worker.core.settings import Settings
from worker.publish import tasks
from worker.publish.health import Discarded
from worker.publish.store import PublishResult
from worker.publish.tasks import HeartbeatRuntime, _header, register_tasks, time_limit_s

ENV = {"HEARTBEAT_SERVICE": "svc", "HEARTBEAT_INTERVAL_S": "5",
       "CELERY_BROKER_URL": "redis://127.0.0.1:1/0", "HEARTBEAT_RETENTION_S": "100",
       "HEARTBEAT_HISTORY_LEN": "7", "HEARTBEAT_REDIS_TIMEOUT_S": "1.5",
       "HEARTBEAT_NODE_RETENTION_S": "90"}
SETTINGS = Settings.from_env(ENV)


class _Client(fakeredis.FakeRedis):
    """A fakeredis client that remembers being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class _Clients:
    """Stands in for ``make_client``: fakeredis clients of one fake server, each call kept."""

    def __init__(self) -> None:
        self.server = fakeredis.FakeServer()
        self.made: list[tuple[str, dict[str, Any]]] = []
        self.clients: list[_Client] = []

    def __call__(self, url: str, **kwargs: Any) -> _Client:
        self.made.append((url, kwargs))
        self.clients.append(_Client(server=self.server))
        return self.clients[-1]


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> _Clients:
    made = _Clients()
    monkeypatch.setattr(tasks, "make_client", made)
    return made


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """Each log line of the module so far, with its level; then forgotten."""
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "worker.publish.tasks"]
    caplog.clear()
    return lines


def _request(**headers: Any) -> SimpleNamespace:
    """A task request as Celery builds it: the message headers are its attributes."""
    return SimpleNamespace(hostname=headers.pop("hostname", "w1@h"), **headers)


@pytest.mark.parametrize(("interval", "limit"), [("1", 10.0), ("3.3", 10.0), ("4", 12.0),
                                                 ("10", 30.0)])
def test_the_time_limit_is_three_intervals_and_at_least_ten_seconds(interval: str,
                                                                     limit: float) -> None:
    assert time_limit_s(Settings.from_env({"HEARTBEAT_INTERVAL_S": interval})) == limit


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5.0), (12.5, 12.5), (0, 0.0), (True, None), (False, None), ("5", None), (None, None),
])
def test_a_header_is_a_number_or_nothing(value: Any, expected: float | None) -> None:
    read = _header(SimpleNamespace(published_at_ms=value), "published_at_ms")
    assert read == expected and type(read) is type(expected)
    assert _header(SimpleNamespace(), "published_at_ms") is None


def test_a_process_makes_its_store_client_once_and_again_after_a_fork(
        clients: _Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = HeartbeatRuntime("app", SETTINGS)
    assert (runtime.app, runtime.settings, runtime.discarded) == ("app", SETTINGS, 0)
    client, store = runtime.store()
    assert clients.made == [("redis://127.0.0.1:1/0", {"timeout_s": 1.5})]
    assert client is clients.clients[0] and store._client is client
    assert (store._retention_ms, store._history_len) == (100_000, 7)
    assert runtime._broker_client is client  # the broker is the store: one client
    assert runtime.store() == (client, store) and len(clients.made) == 1
    monkeypatch.setattr(tasks.os, "getpid", lambda: -7)  # a forked pool child
    again, store2 = runtime.store()
    assert again is clients.clients[1] and store2 is not store and store2._client is again
    assert runtime.store()[0] is again and len(clients.made) == 2
    runtime._client = None
    assert runtime.store()[0] is clients.clients[2]
    runtime._store = None
    assert runtime.store()[0] is clients.clients[3] and len(clients.made) == 4


def test_a_redis_broker_of_its_own_gets_its_own_client_and_tells_the_backlog(
        clients: _Clients) -> None:
    settings = Settings.from_env({**ENV, "HEARTBEAT_REDIS_URL": "redis://127.0.0.1:2/3"})
    runtime = HeartbeatRuntime("app", settings)
    runtime.store()
    assert clients.made == [("redis://127.0.0.1:2/3", {"timeout_s": 1.5}),
                            ("redis://127.0.0.1:1/0", {"timeout_s": 1.5})]
    assert runtime._broker_client is clients.clients[1]
    broker = clients.clients[1]
    broker.lpush("heartbeat.svc", '{"headers": {"published_at_ms": 1000}}')
    broker.lpush("heartbeat.svc", '{"headers": {"published_at_ms": 2000}}')
    assert runtime._backlog(3500.0) == {"depth": 2, "oldest_age_ms": 2500.0, "error": None}


def test_an_amqp_broker_is_asked_by_the_app(clients: _Clients,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, str]] = []

    def amqp_backlog(app: Any, queue: str) -> dict[str, Any]:
        asked.append((app, queue))
        return {"depth": 4, "oldest_age_ms": None, "error": None}

    monkeypatch.setattr(tasks, "amqp_backlog", amqp_backlog)
    settings = Settings.from_env({**ENV, "CELERY_BROKER_URL": "amqp://u:p@127.0.0.1:1//",
                                  "HEARTBEAT_REDIS_URL": "redis://127.0.0.1:1/0"})
    runtime = HeartbeatRuntime("the-app", settings)
    runtime.store()
    assert clients.made == [("redis://127.0.0.1:1/0", {"timeout_s": 1.5})]
    assert runtime._broker_client is None
    assert runtime._backlog(1.0) == {"depth": 4, "oldest_age_ms": None, "error": None}
    assert asked == [("the-app", "heartbeat.svc")]


class _RunHealth:
    """Stands in for ``run_health``: gives the listed outcomes, records each call."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_health_runs_with_the_requests_node_and_headers(
        clients: _Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _RunHealth(PublishResult(True, 1, 1), PublishResult(True, 2, 2))
    monkeypatch.setattr(tasks, "run_health", fake)
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.health(_request(published_at_ms=1000, heartbeat_expires_ms=5000.0,
                            heartbeat_service="svc"))
    client, store = runtime.store()
    assert fake.calls[0] == ((client, store, SETTINGS), {
        "node": "w1@h", "published_at_ms": 1000.0, "expires_ms": 5000.0,
        "backlog": runtime._backlog})
    runtime.health(_request(hostname=None))
    assert fake.calls[1][1] == {"node": "unknown", "published_at_ms": None, "expires_ms": None,
                                "backlog": runtime._backlog}


def test_health_publishes_a_heartbeat_on_the_store(clients: _Clients) -> None:
    """The real body on fakeredis: the payload names the node, the backlog is the broker's."""
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.health(_request(hostname="w9@h"))
    stored: Any = clients.clients[0].get(SETTINGS.keys.latest("svc"))
    payload = json.loads(stored)
    assert (payload["worker"]["node"], payload["status"], payload["seq"]) == ("w9@h", "ok", 1)
    assert payload["backlog"] == {"depth": 0, "oldest_age_ms": None, "error": None}


def test_health_logs_a_failure_once_and_the_recovery_once(
        clients: _Clients, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")
    down = redis.ConnectionError("Error connecting to redis://:hunter2@db:6379/0")
    fake = _RunHealth(PublishResult(True, 1, 1), down, down, PublishResult(False, 9, 1),
                      PublishResult(False, 9, 1), PublishResult(True, 10, 2),
                      PublishResult(True, 11, 3))
    monkeypatch.setattr(tasks, "run_health", fake)
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.health(_request())
    assert _lines(caplog) == []  # published from the start: nothing to say
    runtime.health(_request())
    assert _lines(caplog) == [("ERROR", "heartbeat not published: ConnectionError: "
                                        "Error connecting to redis://:***@db:6379/0")]
    runtime.health(_request())
    assert _lines(caplog) == []
    runtime.health(_request())
    assert _lines(caplog) == [("ERROR", "heartbeat not published: a newer heartbeat (seq 9) "
                                        "is already stored; this one was dropped")]
    runtime.health(_request())
    assert _lines(caplog) == []
    runtime.health(_request())
    assert _lines(caplog) == [("WARNING", "heartbeat published again")]
    runtime.health(_request())
    assert _lines(caplog) == []


def test_a_backlog_of_expired_heartbeats_is_two_lines_however_long(
        clients: _Clients, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")
    fake = _RunHealth(Discarded(20_000.0), Discarded(30_040.0), Discarded(25_000.0),
                      PublishResult(True, 1, 1), Discarded(12_345.0), PublishResult(False, 5, 1))
    monkeypatch.setattr(tasks, "run_health", fake)
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.health(_request())
    assert _lines(caplog) == [("WARNING", "discarding expired heartbeats (backlog after an "
                                          "outage): this one waited 20.0s in the queue, over "
                                          "the 5s interval")]
    runtime.health(_request())
    runtime.health(_request())
    assert _lines(caplog) == [] and runtime.discarded == 3
    runtime.health(_request())
    assert _lines(caplog) == [("WARNING", "discarded 3 expired heartbeat(s) (backlog after an "
                                          "outage; the oldest waited 30.0s in the queue); "
                                          "heartbeats are published again")]
    assert (runtime.discarded, runtime._discarded_max_lag_ms) == (0, 0.0)
    runtime.health(_request())
    runtime.health(_request())
    assert _lines(caplog) == [
        ("WARNING", "discarding expired heartbeats (backlog after an outage): this one waited "
                    "12.3s in the queue, over the 5s interval"),
        ("WARNING", "discarded 1 expired heartbeat(s) (backlog after an outage; the oldest "
                    "waited 12.3s in the queue); heartbeats are published again"),
        ("ERROR", "heartbeat not published: a newer heartbeat (seq 5) is already stored; "
                  "this one was dropped"),
    ]


def test_another_services_heartbeat_is_dropped_with_one_warning(
        clients: _Clients, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")
    fake = _RunHealth(PublishResult(True, 1, 1))
    monkeypatch.setattr(tasks, "run_health", fake)
    nodes: list[Any] = []
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.store = lambda: (None, SimpleNamespace(  # type: ignore[method-assign]
        record_node=lambda *a, **k: nodes.append(a)))
    runtime.health(_request(heartbeat_service="other"))
    assert _lines(caplog) == [("WARNING", "dropping a heartbeat of service 'other': this worker "
                                          "publishes 'svc' (each service needs its own queue; "
                                          "see HEARTBEAT_QUEUE)")]
    runtime.health(_request(heartbeat_service="o" * 100))
    runtime.node(_request(heartbeat_service="other"))
    assert _lines(caplog) == [] and fake.calls == [] and nodes == []
    runtime.health(_request(heartbeat_service="svc"))
    assert len(fake.calls) == 1 and _lines(caplog) == []


def test_a_long_foreign_service_name_is_cut_in_the_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")
    assert not HeartbeatRuntime("app", SETTINGS)._ours(_request(heartbeat_service="o" * 100))
    ((_, line),) = _lines(caplog)
    assert line.startswith(f"dropping a heartbeat of service '{'o' * 64}': this worker")


class _NodeStore:
    """A store whose ``record_node`` fails while ``failing`` holds an exception."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.failing: Exception | None = None

    def record_node(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append((args, kwargs))
        if self.failing is not None:
            raise self.failing
        return 1


def test_node_renews_the_record_and_logs_each_change_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")
    store = _NodeStore()
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.store = lambda: (None, store)  # type: ignore[method-assign]
    runtime.node(_request(published_at_ms=1000, heartbeat_expires_ms=5000))
    assert store.calls == [(("svc", "w1@h"), {"retention_s": 90, "published_at_ms": 1000.0,
                                              "expires_ms": 5000.0})]
    assert _lines(caplog) == []
    store.failing = RuntimeError("down redis://:pw@h:1/0")
    runtime.node(_request(hostname=None))
    assert store.calls[1] == (("svc", "unknown"), {"retention_s": 90, "published_at_ms": None,
                                                   "expires_ms": None})
    assert _lines(caplog) == [("ERROR", "node heartbeat not written: RuntimeError: down "
                                        "redis://:***@h:1/0")]
    runtime.node(_request())
    assert _lines(caplog) == []
    store.failing = None
    runtime.node(_request())
    assert _lines(caplog) == [("WARNING", "node heartbeat written again")]
    runtime.node(_request())
    assert _lines(caplog) == []


def test_node_writes_the_record_on_the_store(clients: _Clients) -> None:
    runtime = HeartbeatRuntime("app", SETTINGS)
    runtime.node(_request(hostname="w3@h"))
    assert [m for m, _ in clients.clients[0].zrange(SETTINGS.keys.nodes("svc"), 0, -1,
                                                    withscores=True)] == [b"w3@h"]


def test_forget_node_removes_the_record_with_a_quick_client_and_closes_it(
        clients: _Clients, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")
    nodes = SETTINGS.keys.nodes("svc")
    fakeredis.FakeRedis(server=clients.server).zadd(nodes, {"w1@h": 1, "w2@h": 2})
    HeartbeatRuntime("app", SETTINGS).forget_node("w1@h")
    assert clients.made == [("redis://127.0.0.1:1/0", {"timeout_s": 0.5, "retries": 0})]
    assert clients.clients[0].zrange(nodes, 0, -1) == [b"w2@h"]
    assert clients.clients[0].closed and _lines(caplog) == []


def test_a_node_record_not_removed_is_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker.publish.tasks")

    def unreachable(url: str, **_: Any) -> Any:
        raise redis.ConnectionError("Error connecting to redis://:pw@h:1/0")

    monkeypatch.setattr(tasks, "make_client", unreachable)
    HeartbeatRuntime("app", SETTINGS).forget_node("w1@h")
    assert _lines(caplog) == [("WARNING", "node record of w1@h not removed (pruned after 90s): "
                                          "ConnectionError: Error connecting to "
                                          "redis://:***@h:1/0")]

    class Refusing(_Client):
        def zrem(self, *args: Any) -> Any:
            raise redis.ResponseError("READONLY You can't write against a read only replica.")

    made: list[Refusing] = []
    monkeypatch.setattr(tasks, "make_client", lambda url, **_: made.append(Refusing()) or made[0])
    HeartbeatRuntime("app", SETTINGS).forget_node("w2@h")
    assert made[0].closed  # closed even when the write fails
    assert _lines(caplog) == [("WARNING", "node record of w2@h not removed (pruned after 90s): "
                                          "ResponseError: READONLY You can't write against a "
                                          "read only replica.")]


def test_register_tasks_adds_both_tasks_with_their_options() -> None:
    app = Celery("units", broker="memory://")
    runtime = register_tasks(app, SETTINGS)
    assert (runtime.app, runtime.settings) == (app, SETTINGS)
    for name in ("health", "health.node"):
        task = app.tasks[name]
        assert (task.name, task.ignore_result, task.acks_late, task.serializer,
                task.time_limit, task.soft_time_limit) == (name, True, False, "json", 17.0, 15.0)
    assert "health" not in Celery("other", broker="memory://").tasks  # not shared


def test_the_tasks_hand_their_request_to_the_runtime() -> None:
    app = Celery("units", broker="memory://")
    runtime = register_tasks(app, SETTINGS)
    seen: list[tuple[str, Any]] = []
    runtime.health = lambda request: seen.append(("health", request))  # type: ignore[method-assign]
    runtime.node = lambda request: seen.append(("node", request))  # type: ignore[method-assign]
    first = app.tasks["health"].apply(task_id="t-1")
    second = app.tasks["health.node"].apply(task_id="t-2")
    assert first.successful() and second.successful()
    assert [(what, request.id) for what, request in seen] == [("health", "t-1"), ("node", "t-2")]
    assert first.result is None and second.result is None
