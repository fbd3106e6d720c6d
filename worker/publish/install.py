"""Install the heartbeat into a Celery app: the standalone one, or the user's own.

PetSage already runs Celery workers for its real tasks. Installing the heartbeat into that
app lets those workers consume ``heartbeat.{service}`` next to their own queues, so the
heartbeat proves the workers that matter::

    from celery import Celery
    from worker.publish.install import install_heartbeat

    app = Celery("petsage", broker="redis://redis:6379/0")
    install_heartbeat(app)      # settings from HEARTBEAT_* (and the app's broker URL)

    # celery -A petsage beat                       (exactly one)
    # celery -A petsage worker -Q celery,heartbeat.petsage

It adds, without replacing anything of the app's own: the ``health`` and ``health.node``
tasks (JSON whatever the app's serializer), a route of ``health`` to the service's queue,
two schedule entries, beat's publish stamping and marker (on ``beat_init``, so any
scheduler works), in each worker that consumes the service's queue, the broadcast queue of
node heartbeats, and, unless the app has a consumer class of its own, a consumer that
reconnects to a lost broker within about one interval (``consumer.py``).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import weakref
from collections.abc import Iterable
from typing import Any

from celery.signals import (
    after_task_publish,
    beat_init,
    before_task_publish,
    celeryd_after_setup,
    task_postrun,
    task_prerun,
    task_rejected,
    task_revoked,
    worker_shutdown,
)
from kombu.common import Broadcast
from kombu.entity import Exchange, Queue

from worker.core.names import (
    EXPIRES_HEADER,
    HEALTH_TASK,
    NODE_TASK,
    PUBLISHED_AT_HEADER,
    SERVICE_HEADER,
    nodes_exchange,
    queue_arguments,
)
from worker.core.redis_clients import make_client
from worker.core.settings import Settings
from worker.core.urls import REDIS_SCHEMES
from worker.publish.beat_guard import guard_publishes
from worker.publish.beat_marker import MARKER_TIMEOUT_S, BeatMarker
from worker.publish.consumer import DEFAULT_CONSUMER
from worker.publish.entry_beat import EntryWatch, Selector, selector
from worker.publish.entry_store import EntryStore
from worker.publish.entry_worker import EntryCheckins
from worker.publish.health_checks import load_check_specs
from worker.publish.queue_bound import QueueBound
from worker.publish.tasks import HeartbeatRuntime, register_tasks

logger = logging.getLogger(__name__)

SCHEDULE_ENTRY = "petsage-heartbeat"
"""The beat schedule entry of the service heartbeat (the node one adds ``-nodes``)."""

ENTRY_SYNC_MAX_S = 5.0
"""Beat reads its live schedule for the watch at least this often (or every interval)."""


def _own_entry(name: str) -> bool:
    """The heartbeat's own entries and Celery's (``celery.backend_cleanup``): not watched."""
    return name in (SCHEDULE_ENTRY, SCHEDULE_ENTRY + "-nodes") or name.startswith("celery.")


_INSTALLED: weakref.WeakKeyDictionary[Any, Settings] = weakref.WeakKeyDictionary()
"""The settings of each app the heartbeat is installed into. Never in ``app.conf``: Celery
sends ``app.conf`` to anyone with the broker login (``celery inspect conf``, ``inspect
report``), and masks only its own keys there (docs/security.md)."""


def heartbeat_settings(app: Any) -> Settings | None:
    """The settings ``install_heartbeat`` installed into ``app`` with; None if it did not."""
    return _INSTALLED.get(app)


def settings_for_app(app: Any) -> Settings:
    """Settings from the environment, with the app's own broker URL when none is set there."""
    env = dict(os.environ)
    broker = app.conf.broker_url
    if not env.get("CELERY_BROKER_URL", "").strip() and isinstance(broker, str) and broker:
        env["CELERY_BROKER_URL"] = broker
    return Settings.from_env(env)


def node_queue(settings: Settings) -> Broadcast:
    """This worker's queue of node heartbeats: a unique queue bound to the fanout exchange."""
    name = nodes_exchange(settings.queue)
    exchange = Exchange(name, type="fanout", durable=False,  # type: ignore[no-untyped-call]
                        auto_delete=True)
    return Broadcast(name, exchange=exchange,  # type: ignore[no-untyped-call]
                     queue_arguments=queue_arguments(settings.interval_s))


def heartbeat_queue(settings: Settings) -> Queue:
    """The service's heartbeat queue, bounded on RabbitMQ by its arguments.

    The exchange and routing key are the ones Celery gives a queue it creates by name, so
    only the arguments differ from an unbounded queue.
    """
    return Queue(settings.queue, Exchange(settings.queue),  # type: ignore[no-untyped-call]
                 routing_key=settings.queue,
                 queue_arguments=queue_arguments(settings.interval_s))


def install_heartbeat(app: Any, settings: Settings | None = None, *,
                      entries: Iterable[str] | str | re.Pattern[str] | None = None) -> Settings:
    """Add the heartbeat to ``app``; returns the settings it uses (``heartbeat_settings(app)``
    returns them too: they are kept out of ``app.conf``, which remote control dumps).

    ``settings`` defaults to the environment (``HEARTBEAT_*``), with the app's
    ``broker_url`` when ``CELERY_BROKER_URL`` is not set. Raises ``ConfigError`` (one line)
    for a bad setting or an unloadable ``HEARTBEAT_CHECKS`` entry.

    Every entry of the app's beat schedule is watched (docs/entries.md) but the heartbeat's
    own and Celery's ``celery.*``; ``entries`` narrows that to some names, or to those a
    regular expression matches whole (default: ``HEARTBEAT_ENTRIES``, or every entry). An
    entry opts out with ``options={"heartbeat": False}``.
    """
    settings = settings or settings_for_app(app)
    load_check_specs(settings.checks)
    _INSTALLED[app] = settings
    runtime = register_tasks(app, settings)
    _add_queue(app, settings)
    _add_route(app, settings)
    _add_schedule(app, settings)
    watch = selector(entries if entries is not None else settings.entries)
    _connect_beat(app, settings, watch)
    _connect_worker(app, settings, runtime)
    if app.conf.worker_consumer in (None, DEFAULT_CONSUMER):
        app.conf.worker_consumer = "worker.publish.consumer:HeartbeatConsumer"
    return settings


def _add_queue(app: Any, settings: Settings) -> None:
    """Declare the heartbeat queue with its bound, beside the app's own queues."""
    queues = list(app.conf.task_queues or [])
    if not any(getattr(q, "name", None) == settings.queue for q in queues):
        queues.append(heartbeat_queue(settings))
    app.conf.task_queues = queues


def _add_route(app: Any, settings: Settings) -> None:
    """Route ``health`` to the service's queue, in front of the app's own routes."""
    ours = {HEALTH_TASK: {"queue": settings.queue}}
    routes = app.conf.task_routes
    if routes is None:
        app.conf.task_routes = ours
    elif isinstance(routes, dict):
        app.conf.task_routes = {**routes, **ours}
    else:  # a list or tuple of routers: ours is asked first
        app.conf.task_routes = [ours, *(routes if isinstance(routes, list | tuple) else [routes])]


def _add_schedule(app: Any, settings: Settings) -> None:
    """Two entries every interval: the service heartbeat and the broadcast node heartbeat.

    No Celery ``expires``: it compares beat's clock with the worker's, and a worker clock
    one interval ahead would silently drop every heartbeat. Beat stamps the publish time
    and an expiry in headers instead, and the task judges them on the Redis clock.
    """
    fanout = node_queue(settings)
    schedule = dict(app.conf.beat_schedule or {})
    schedule[SCHEDULE_ENTRY] = {"task": HEALTH_TASK, "schedule": settings.interval_s,
                                "options": {"queue": settings.queue}}
    schedule[SCHEDULE_ENTRY + "-nodes"] = {
        "task": NODE_TASK, "schedule": settings.interval_s,
        # Plain values only: RedBeat stores an entry as JSON, django-celery-beat as a row.
        # Beat sends it to the fanout queue itself (``_send_nodes_to_fanout``).
        "options": {"queue": fanout.name},
    }
    app.conf.beat_schedule = schedule


def _connect_beat(app: Any, settings: Settings, watch: Selector) -> None:
    """In beat only: stamp each heartbeat's headers, record each publish in the marker, and
    turn a publish the broker refuses into one log line and a marker note."""

    def start_marker(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        _send_nodes_to_fanout(sender.scheduler, node_queue(settings))
        client = make_client(settings.redis_url, timeout_s=MARKER_TIMEOUT_S, retries=0)
        marker = BeatMarker(client, settings.keys, settings.service,
                            interval_s=settings.interval_s, stale_after_s=settings.stale_after_s,
                            retention_s=settings.retention_s, queue=settings.queue)
        bound = None
        if settings.broker_url.split("://", 1)[0] in REDIS_SCHEMES:
            broker = (client if settings.broker_url == settings.redis_url else
                      make_client(settings.broker_url, timeout_s=MARKER_TIMEOUT_S, retries=0))
            bound = QueueBound(broker, settings.queue)
        marker.measure_offset()
        guard_publishes(sender.scheduler, marker.record_failure)
        expires_ms = round(settings.interval_s * 1000)
        entry_watch = EntryWatch(
            EntryStore(client, settings.keys, settings.service, retention_s=settings.retention_s),
            skip=_own_entry, watch=watch, beat_id=marker.beat_id,
            sync_every_s=min(settings.interval_s, ENTRY_SYNC_MAX_S),
            depth_of=None if bound is None else bound.depth)
        entry_watch.attach(sender.scheduler)

        def stamp(sender: str | None = None, headers: dict[str, Any] | None = None,
                  **_: Any) -> None:
            if sender in (HEALTH_TASK, NODE_TASK) and headers is not None:
                headers[PUBLISHED_AT_HEADER] = round(marker.redis_now_ms(), 3)
                headers[EXPIRES_HEADER] = expires_ms
                headers[SERVICE_HEADER] = settings.service
            else:
                entry_watch.stamp(headers)

        def record(sender: str | None = None, **_: Any) -> None:
            if sender == HEALTH_TASK:
                marker.record_publish(None if bound is None else bound.trim())

        before_task_publish.connect(stamp, weak=False)
        after_task_publish.connect(record, weak=False)

    beat_init.connect(start_marker, weak=False)


def _send_nodes_to_fanout(scheduler: Any, fanout: Broadcast) -> None:
    """Send each node heartbeat to the fanout queue, its exchange declared on publish (on
    RabbitMQ a fanout exchange no worker declared yet would refuse it); the per-worker
    queues are each worker's own business. The entry itself holds only the queue's name."""
    apply_async = scheduler.apply_async

    def routed(entry: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(entry, "task", None) == NODE_TASK:
            # A copy: an entry whose options changed at each publish would differ from
            # the scheduler's last snapshot, and Celery would rebuild its heap every tick,
            # always taking the first due entry: with publishes that block (a broker
            # down), the node entry would then starve the heartbeat's.
            entry = copy.copy(entry)
            entry.options = {**(entry.options or {}), "queue": fanout,
                             "declare": [fanout.exchange]}
        return apply_async(entry, *args, **kwargs)

    scheduler.apply_async = routed


def _connect_worker(app: Any, settings: Settings, runtime: HeartbeatRuntime) -> None:
    """In a worker that consumes the service's queue: consume the node broadcast too."""

    def add_node_queue(sender: Any = None, instance: Any = None, **_: Any) -> None:
        if getattr(instance, "app", None) is not app:
            return
        queues = instance.app.amqp.queues
        if settings.queue in queues.consume_from:
            queues.select_add(node_queue(settings))

    def forget_node(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        if settings.queue in sender.app.amqp.queues.consume_from:
            runtime.forget_node(sender.hostname)

    celeryd_after_setup.connect(add_node_queue, weak=False)
    worker_shutdown.connect(forget_node, weak=False)

    checkins = EntryCheckins(lambda: EntryStore(
        make_client(settings.redis_url, timeout_s=settings.redis_timeout_s, retries=0),
        settings.keys, settings.service, retention_s=settings.retention_s))
    task_prerun.connect(checkins.on_prerun, weak=False)
    task_postrun.connect(checkins.on_postrun, weak=False)
    task_revoked.connect(checkins.on_revoked, weak=False)
    task_rejected.connect(checkins.on_rejected, weak=False)
