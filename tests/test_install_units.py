"""``install_heartbeat``'s beat hooks, in process: the node entry reaches its fanout queue
without its schedule entry ever changing (a changed entry makes Celery rebuild its heap
every tick, and with publishes that block the node entry starved the heartbeat's)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.beat import Scheduler

from worker.core.names import NODE_TASK, nodes_exchange
from worker.core.settings import Settings
from worker.publish.install import _send_nodes_to_fanout, install_heartbeat, node_queue


def test_the_node_entry_is_sent_to_the_fanout_queue_and_never_changed() -> None:
    app = Celery("units", broker="memory://")
    settings = Settings.from_env({"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    install_heartbeat(app, settings)
    scheduler = Scheduler(app, lazy=True)
    scheduler.setup_schedule()
    sent: list[Any] = []
    scheduler.apply_async = lambda entry, *a, **k: sent.append(entry)  # type: ignore[method-assign]
    _send_nodes_to_fanout(scheduler, node_queue(settings))
    entry = next(e for e in scheduler.schedule.values() if e.task == NODE_TASK)
    before = dict(entry.options)
    snapshot = dict(scheduler.schedule)
    scheduler.apply_async(entry, advance=False)
    assert entry.options == before and isinstance(before["queue"], str)
    assert scheduler.schedules_equal(snapshot, scheduler.schedule)
    assert sent[0] is not entry and sent[0].options["queue"] is not None
    fanout = nodes_exchange(settings.queue)
    assert sent[0].options["queue"].exchange.name == fanout
    assert [e.name for e in sent[0].options["declare"]] == [fanout]
