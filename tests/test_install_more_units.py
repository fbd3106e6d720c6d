"""``install_heartbeat`` in process, piece by piece: the settings it takes from the app, the
queues, route and schedule entries it adds beside the app's own, and what beat and each
worker connect to Celery's signals (sent here by hand, on Celery's in-memory app).

Beat's collaborators (the marker, the queue bound, the entry watch and store, the client
factory) are recorders in the module, so each argument they get is pinned; the signals'
receivers are emptied for each test and put back after it, so no other test's app answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, signals
from kombu.entity import Queue

from worker.core.names import queue_arguments
from worker.core.settings import Settings
from worker.publish import install, tasks
from worker.publish.health_checks import registered_checks
from worker.publish.install import (
    _add_queue,
    _add_route,
    _own_entry,
    heartbeat_queue,
    heartbeat_settings,
    install_heartbeat,
    node_queue,
    settings_for_app,
)

ENV = {"HEARTBEAT_SERVICE": "svc", "HEARTBEAT_INTERVAL_S": "2.5",
       "CELERY_BROKER_URL": "redis://127.0.0.1:1/0", "HEARTBEAT_RETENTION_S": "100",
       "HEARTBEAT_STALE_AFTER_S": "9", "HEARTBEAT_REDIS_TIMEOUT_S": "1.5"}
SETTINGS = Settings.from_env(ENV)

SIGNALS = (signals.beat_init, signals.before_task_publish, signals.after_task_publish,
           signals.celeryd_after_setup, signals.worker_shutdown, signals.task_prerun,
           signals.task_postrun, signals.task_revoked, signals.task_rejected)


@pytest.fixture(autouse=True)
def _own_receivers() -> Iterator[None]:
    """Only this test's receivers on the signals it sends; everyone's back afterwards."""
    saved = [sig.receivers[:] for sig in SIGNALS]
    for sig in SIGNALS:
        sig.receivers[:] = []
        sig.sender_receivers_cache.clear()
    yield
    for sig, receivers in zip(SIGNALS, saved, strict=True):
        sig.receivers[:] = receivers
        sig.sender_receivers_cache.clear()


def _app() -> Celery:
    return Celery("units", broker="memory://")


@pytest.mark.parametrize(("name", "own"), [
    ("petsage-heartbeat", True), ("petsage-heartbeat-nodes", True),
    ("celery.backend_cleanup", True), ("petsage-heartbeat-x", False), ("celery", False),
    ("celeryx.y", False), ("app-own-tick", False),
])
def test_the_heartbeats_own_entries_and_celerys_are_not_watched(name: str, own: bool) -> None:
    assert _own_entry(name) is own


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without any HEARTBEAT_ or CELERY_ setting of the machine's."""
    import os

    for name in list(os.environ):
        if name.startswith(("HEARTBEAT_", "CELERY_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(("env_broker", "app_broker", "expected"), [
    (None, "redis://127.0.0.1:5/1", "redis://127.0.0.1:5/1"),
    ("", "redis://127.0.0.1:5/1", "redis://127.0.0.1:5/1"),
    ("redis://127.0.0.1:6/2", "redis://127.0.0.1:5/1", "redis://127.0.0.1:6/2"),
    (None, None, "redis://127.0.0.1:6379/0"),
    (None, "", "redis://127.0.0.1:6379/0"),
    (None, ["redis://127.0.0.1:5/1"], "redis://127.0.0.1:6379/0"),
])
def test_the_apps_broker_is_used_when_the_environment_names_none(
        environ: pytest.MonkeyPatch, env_broker: str | None, app_broker: Any,
        expected: str) -> None:
    if env_broker is not None:
        environ.setenv("CELERY_BROKER_URL", env_broker)
    environ.setenv("HEARTBEAT_SERVICE", "envsvc")
    app = _app()
    app.conf.broker_url = app_broker
    settings = settings_for_app(app)
    assert (settings.broker_url, settings.service) == (expected, "envsvc")


def test_install_takes_its_settings_from_the_environment_and_keeps_them_apart(
        environ: pytest.MonkeyPatch) -> None:
    environ.setenv("HEARTBEAT_SERVICE", "envsvc")
    app = Celery("units", broker="redis://127.0.0.1:5/1")
    assert heartbeat_settings(app) is None
    settings = install_heartbeat(app)
    assert (settings.service, settings.broker_url) == ("envsvc", "redis://127.0.0.1:5/1")
    assert heartbeat_settings(app) is settings
    given = install_heartbeat(_app(), SETTINGS)
    assert given is SETTINGS


def test_node_queue_is_a_broadcast_on_the_services_fanout_exchange() -> None:
    queue = node_queue(SETTINGS)
    assert queue.name.startswith("bcast.") and queue.alias == "heartbeat.svc.nodes"
    exchange = queue.exchange
    assert (exchange.name, exchange.type, exchange.durable, exchange.auto_delete) == (
        "heartbeat.svc.nodes", "fanout", False, True)
    assert queue.queue_arguments == queue_arguments(2.5) == {"x-max-length": 10,
                                                             "x-message-ttl": 25000}


def test_heartbeat_queue_is_celerys_own_queue_of_that_name_with_its_bound() -> None:
    queue = heartbeat_queue(SETTINGS)
    assert (queue.name, queue.exchange.name, queue.exchange.type, queue.routing_key) == (
        "heartbeat.svc", "heartbeat.svc", "direct", "heartbeat.svc")
    assert queue.queue_arguments == {"x-max-length": 10, "x-message-ttl": 25000}


def test_install_adds_tasks_checks_queue_route_schedule_and_consumer() -> None:
    app = _app()
    settings = SETTINGS._replace(checks=Settings.from_env(
        {"HEARTBEAT_CHECKS": "db=tests.plugins.sample_checks:ping_db"}).checks)
    install_heartbeat(app, settings)
    assert {"health", "health.node"} <= set(app.tasks)
    assert "db" in registered_checks()
    assert [q.name for q in app.conf.task_queues] == ["heartbeat.svc"]
    assert app.conf.task_queues[0].queue_arguments == {"x-max-length": 10,
                                                       "x-message-ttl": 25000}
    assert app.conf.task_routes == {"health": {"queue": "heartbeat.svc"}}
    schedule = app.conf.beat_schedule
    assert list(schedule) == ["petsage-heartbeat", "petsage-heartbeat-nodes"]
    assert schedule["petsage-heartbeat"] == {"task": "health", "schedule": 2.5,
                                             "options": {"queue": "heartbeat.svc"}}
    nodes = schedule["petsage-heartbeat-nodes"]
    assert (nodes["task"], nodes["schedule"], list(nodes["options"])) == (
        "health.node", 2.5, ["queue"])
    assert isinstance(nodes["options"]["queue"], str)  # plain values: stored schedulers
    assert app.conf.worker_consumer == "worker.publish.consumer:HeartbeatConsumer"


def test_install_keeps_the_apps_own_queues_routes_entries_and_consumer() -> None:
    app = _app()
    own = Queue("heartbeat.svc")
    app.conf.task_queues = [Queue("celery"), own]
    app.conf.task_routes = {"health": {"queue": "theirs"}, "app.task": {"queue": "q"}}
    app.conf.beat_schedule = {"app-own-tick": {"task": "app.task", "schedule": 60}}
    app.conf.worker_consumer = "myapp.consumer:Consumer"
    install_heartbeat(app, SETTINGS)
    assert [q.name for q in app.conf.task_queues] == ["celery", "heartbeat.svc"]
    assert app.conf.task_queues[1] is own
    assert app.conf.task_routes == {"health": {"queue": "heartbeat.svc"},
                                    "app.task": {"queue": "q"}}
    assert list(app.conf.beat_schedule) == ["app-own-tick", "petsage-heartbeat",
                                            "petsage-heartbeat-nodes"]
    assert app.conf.beat_schedule["app-own-tick"] == {"task": "app.task", "schedule": 60}
    assert app.conf.worker_consumer == "myapp.consumer:Consumer"
    none = _app()
    none.conf.worker_consumer = None
    install_heartbeat(none, SETTINGS)
    assert none.conf.worker_consumer == "worker.publish.consumer:HeartbeatConsumer"


def test_a_queue_without_a_name_is_kept_and_the_heartbeat_queue_added() -> None:
    app = _app()
    nameless = object()
    app.conf.task_queues = (nameless,)
    _add_queue(app, SETTINGS)
    assert app.conf.task_queues[0] is nameless
    assert [q.name for q in app.conf.task_queues[1:]] == ["heartbeat.svc"]


def _router(name: str, *args: Any, **kwargs: Any) -> None:
    return None


@pytest.mark.parametrize(("routes", "expected"), [
    (["a.router"], [{"health": {"queue": "heartbeat.svc"}}, "a.router"]),
    (("a.router", "b.router"), [{"health": {"queue": "heartbeat.svc"}}, "a.router",
                                "b.router"]),
    ("a.router", [{"health": {"queue": "heartbeat.svc"}}, "a.router"]),
    (_router, [{"health": {"queue": "heartbeat.svc"}}, _router]),
])
def test_the_health_route_is_asked_before_the_apps_routers(routes: Any,
                                                            expected: list[Any]) -> None:
    app = _app()
    app.conf.task_routes = routes
    _add_route(app, SETTINGS)
    assert app.conf.task_routes == expected


class _Recorder:
    """Stands in for one of beat's collaborators: each object made, with its arguments."""

    def __init__(self) -> None:
        self.made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.calls: list[tuple[str, Any]] = []

    def kind(self, name: str, **attrs: Any) -> type:
        recorder = self

        class Made:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                recorder.made.append((name, args, kwargs))
                self.__dict__.update(attrs)

            def __getattr__(self, method: str) -> Any:
                def call(*args: Any, **kwargs: Any) -> Any:
                    recorder.calls.append((f"{name}.{method}", (args, kwargs)))
                    return attrs.get(f"{method}()")

                call.__qualname__ = f"{name}.{method}"
                return call

            def __repr__(self) -> str:
                return name

        return Made


@pytest.fixture
def beat(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    """Beat's collaborators replaced by recorders; ``make_client`` hands out named clients."""
    rec = _Recorder()
    made_clients: list[str] = []

    def make_client(url: str, **kwargs: Any) -> str:
        rec.made.append(("client", (url,), kwargs))
        made_clients.append(f"client{len(made_clients) + 1}")
        return made_clients[-1]

    monkeypatch.setattr(install, "make_client", make_client)
    monkeypatch.setattr(install, "BeatMarker", rec.kind(
        "marker", beat_id="beat-1", **{"redis_now_ms()": 1234.56789}))
    monkeypatch.setattr(install, "QueueBound", rec.kind("bound", **{"trim()": 3}))
    monkeypatch.setattr(install, "EntryStore", rec.kind("entry_store"))
    monkeypatch.setattr(install, "EntryWatch", rec.kind("watch"))
    monkeypatch.setattr(install, "selector", lambda entries: ("selector", entries))
    monkeypatch.setattr(install, "guard_publishes",
                        lambda scheduler, note: rec.calls.append(("guard", (scheduler, note))))
    return rec


class _Sender:
    """A signal's sender (beat's service, a worker): hashable, as Celery's cache needs."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


def _start_beat(app: Celery) -> _Sender:
    """Send ``beat_init`` as beat's service does; returns the service (its scheduler)."""
    sent: list[Any] = []
    service = _Sender(app=app, scheduler=SimpleNamespace(
        apply_async=lambda entry, *a, **k: sent.append((entry, a, k)) or "sent", sent=sent))
    signals.beat_init.send(sender=service)
    return service


def test_beat_builds_its_marker_bound_and_entry_watch_from_the_settings(beat: _Recorder) -> None:
    app = _app()
    install_heartbeat(app, SETTINGS, entries=["app-own-tick"])
    assert beat.made == []  # nothing before beat starts
    service = _start_beat(app)
    scheduler = service.scheduler
    marker, bound = beat.made[1], beat.made[2]
    keys = SETTINGS.keys
    assert beat.made[0] == ("client", ("redis://127.0.0.1:1/0",), {"timeout_s": 0.5,
                                                                  "retries": 0})
    assert marker == ("marker", ("client1", keys, "svc"), {
        "interval_s": 2.5, "stale_after_s": 9.0, "retention_s": 100, "queue": "heartbeat.svc"})
    assert bound == ("bound", ("client1", "heartbeat.svc"), {})  # the store is the broker
    assert [m[0] for m in beat.made] == ["client", "marker", "bound", "entry_store", "watch"]
    assert beat.made[3] == ("entry_store", ("client1", keys, "svc"), {"retention_s": 100})
    name, (store,), watch = beat.made[4]
    assert (name, repr(store)) == ("watch", "entry_store")
    depth_of = watch.pop("depth_of")
    assert watch == {"skip": _own_entry, "watch": ("selector", ["app-own-tick"]),
                     "beat_id": "beat-1", "sync_every_s": 2.5}
    assert depth_of.__qualname__ == "bound.depth"
    calls = [c[0] for c in beat.calls]
    assert calls == ["marker.measure_offset", "guard", "watch.attach"]
    assert beat.calls[1][1][0] is scheduler
    assert beat.calls[1][1][1].__qualname__ == "marker.record_failure"
    assert beat.calls[2][1] == ((scheduler,), {})


def test_beat_sends_node_heartbeats_to_the_fanout_queue(beat: _Recorder) -> None:
    app = _app()
    install_heartbeat(app, SETTINGS)
    scheduler = _start_beat(app).scheduler
    other = SimpleNamespace(task="health", options={"queue": "heartbeat.svc"})
    assert scheduler.apply_async(other, 1, advance=False) == "sent"
    node = SimpleNamespace(task="health.node", options=None)
    assert scheduler.apply_async(node) == "sent"
    (first, args, kwargs), (second, _, _) = scheduler.sent
    assert (first, args, kwargs) == (other, (1,), {"advance": False})
    assert second is not node and node.options is None
    assert second.options["queue"].exchange.name == "heartbeat.svc.nodes"
    assert [e.name for e in second.options["declare"]] == ["heartbeat.svc.nodes"]


@pytest.mark.parametrize(("env", "clients", "bound"), [
    ({"HEARTBEAT_REDIS_URL": "redis://127.0.0.1:2/0"},
     [("redis://127.0.0.1:2/0",), ("redis://127.0.0.1:1/0",)], ("client2", "heartbeat.svc")),
    ({"CELERY_BROKER_URL": "amqp://u:p@127.0.0.1:1//",
      "HEARTBEAT_REDIS_URL": "redis://127.0.0.1:2/0"}, [("redis://127.0.0.1:2/0",)], None),
])
def test_beat_bounds_a_redis_broker_of_its_own_and_no_amqp_one(
        beat: _Recorder, env: dict[str, str], clients: list[tuple[str]],
        bound: tuple[str, str] | None) -> None:
    app = _app()
    install_heartbeat(app, Settings.from_env({**ENV, **env}))
    _start_beat(app)
    assert [m[1] for m in beat.made if m[0] == "client"] == clients
    assert all(m[2] == {"timeout_s": 0.5, "retries": 0} for m in beat.made if m[0] == "client")
    assert [m[1] for m in beat.made if m[0] == "bound"] == ([] if bound is None else [bound])
    watch = next(m[2] for m in beat.made if m[0] == "watch")
    assert (watch["depth_of"] is None) is (bound is None)
    signals.after_task_publish.send(sender="health")
    assert beat.calls[-1] == ("marker.record_publish", ((None if bound is None else 3,), {}))


def test_beat_stamps_each_heartbeat_and_records_each_publish(beat: _Recorder) -> None:
    app = _app()
    install_heartbeat(app, Settings.from_env({**ENV, "HEARTBEAT_INTERVAL_S": "10",
                                              "HEARTBEAT_STALE_AFTER_S": "30"}))
    _start_beat(app)
    assert next(m[2] for m in beat.made if m[0] == "watch")["sync_every_s"] == 5.0
    del beat.calls[:]
    for task in ("health", "health.node"):
        headers: dict[str, Any] = {"x": 1}
        signals.before_task_publish.send(sender=task, headers=headers)
        assert headers == {"x": 1, "published_at_ms": 1234.568,
                           "heartbeat_expires_ms": 10000, "heartbeat_service": "svc"}
    assert beat.calls == [("marker.redis_now_ms", ((), {}))] * 2
    del beat.calls[:]
    theirs: dict[str, Any] = {}
    signals.before_task_publish.send(sender="app.task", headers=theirs)
    signals.before_task_publish.send(sender="health", headers=None)
    assert theirs == {}
    assert beat.calls == [("watch.stamp", ((theirs,), {})), ("watch.stamp", ((None,), {}))]
    del beat.calls[:]
    signals.after_task_publish.send(sender="health.node")
    signals.after_task_publish.send(sender="app.task")
    assert beat.calls == []
    signals.after_task_publish.send(sender="health")
    assert beat.calls == [("bound.trim", ((), {})), ("marker.record_publish", ((3,), {}))]


def test_beat_of_another_app_is_left_alone(beat: _Recorder) -> None:
    install_heartbeat(_app(), SETTINGS)
    service = _start_beat(_app())
    assert beat.made == [] and beat.calls == []
    assert service.scheduler.apply_async(SimpleNamespace(task="health.node")) == "sent"
    assert service.scheduler.sent[0][0].__dict__ == {"task": "health.node"}
    headers: dict[str, Any] = {}
    signals.before_task_publish.send(sender="health", headers=headers)
    assert headers == {}


def test_the_entries_default_to_the_settings(beat: _Recorder) -> None:
    app = _app()
    install_heartbeat(app, SETTINGS._replace(entries="app-.*"))
    _start_beat(app)
    watch = next(m[2] for m in beat.made if m[0] == "watch")
    assert watch["watch"] == ("selector", "app-.*")


def _node_queues(app: Celery) -> list[str]:
    return [q.exchange.name for q in app.amqp.queues.consume_from.values()
            if q.exchange.name.endswith(".nodes")]


def test_a_worker_consuming_the_service_queue_consumes_the_node_broadcast_too() -> None:
    app = _app()
    install_heartbeat(app, SETTINGS)
    signals.celeryd_after_setup.send(sender="w1@h", instance=SimpleNamespace(app=_app()))
    assert _node_queues(app) == []  # another app's worker
    signals.celeryd_after_setup.send(sender="w1@h", instance=SimpleNamespace(app=app))
    assert _node_queues(app) == ["heartbeat.svc.nodes"]


def test_a_worker_of_other_queues_does_not() -> None:
    app = _app()
    app.conf.task_queues = [Queue("celery")]
    install_heartbeat(app, SETTINGS)
    app.amqp.queues.select(["celery"])
    signals.celeryd_after_setup.send(sender="w1@h", instance=SimpleNamespace(app=app))
    assert _node_queues(app) == []


def test_a_worker_that_shuts_down_forgets_its_node_if_it_consumed_the_queue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    forgotten: list[str] = []
    monkeypatch.setattr(tasks.HeartbeatRuntime, "forget_node",
                        lambda self, node: forgotten.append(node))
    app = _app()
    install_heartbeat(app, SETTINGS)
    signals.worker_shutdown.send(sender=_Sender(app=_app(), hostname="w0@h"))
    signals.worker_shutdown.send(sender=_Sender(app=app, hostname="w1@h"))
    assert forgotten == ["w1@h"]
    other = _app()
    other.conf.task_queues = [Queue("celery")]
    install_heartbeat(other, SETTINGS)
    other.amqp.queues.select(["celery"])
    signals.worker_shutdown.send(sender=_Sender(app=other, hostname="w2@h"))
    assert forgotten == ["w1@h"]


def test_each_worker_checks_in_the_runs_of_beat_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    factories: list[Any] = []

    class Checkins:
        def __init__(self, open_store: Any) -> None:
            factories.append(open_store)

        def on_prerun(self, **kwargs: Any) -> None:
            calls.append(("prerun", kwargs))

        def on_postrun(self, **kwargs: Any) -> None:
            calls.append(("postrun", kwargs))

        def on_revoked(self, **kwargs: Any) -> None:
            calls.append(("revoked", kwargs))

        def on_rejected(self, **kwargs: Any) -> None:
            calls.append(("rejected", kwargs))

    made: list[tuple[Any, ...]] = []
    monkeypatch.setattr(install, "EntryCheckins", Checkins)
    monkeypatch.setattr(install, "make_client",
                        lambda url, **kwargs: made.append((url, kwargs)) or "client")
    monkeypatch.setattr(install, "EntryStore",
                        lambda *args, **kwargs: made.append((args, kwargs)) or "store")
    install_heartbeat(_app(), SETTINGS)
    assert made == []  # a client only when a run is first checked in
    for signal, what in ((signals.task_prerun, "prerun"), (signals.task_postrun, "postrun"),
                         (signals.task_revoked, "revoked"), (signals.task_rejected, "rejected")):
        signal.send(sender=None, task_id=what)
        assert calls[-1][0] == what and calls[-1][1]["task_id"] == what
    assert len(calls) == 4
    (open_store,) = factories
    assert open_store() == "store"
    assert made == [("redis://127.0.0.1:1/0", {"timeout_s": 1.5, "retries": 0}),
                    (("client", SETTINGS.keys, "svc"), {"retention_s": 100})]
