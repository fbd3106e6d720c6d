"""Prometheus metrics, read from Redis at scrape time by a custom collector.

No background thread: each scrape reads the fleet (in bounded chunks), sharing one read
with the requests that arrive in the same moment (``shared_read``), and yields one series
per service in the index. A service removed from the index disappears from the
next scrape, so no dead series linger; a store that cannot be read gives
``petsage_heartbeat_store_up 0`` and no per-service series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from worker.core.states import State
from worker.read.fleet import Fleet
from worker.read.reader import HeartbeatReport

PREFIX = "petsage_heartbeat"
"""Name prefix of every metric."""


class HeartbeatCollector(Collector):
    """Yields the heartbeat metrics of every indexed service on each ``collect()``."""

    def __init__(self, fleet: Callable[[], Fleet]) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        fleet = self._fleet()
        store_up = GaugeMetricFamily(f"{PREFIX}_store_up",
                                     "1 if the heartbeat store answered this scrape, else 0")
        store_up.add_metric([], 0 if fleet.store_problem else 1)
        yield store_up
        if fleet.store_problem is None:
            yield from service_metrics(fleet.reports)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ("service",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def service_metrics(reports: list[HeartbeatReport]) -> Iterator[Metric]:
    """One series per service (and per state for the state set)."""
    up = _gauge("up", "1 if the heartbeat is fresh or late, else 0")
    state = _gauge("state", "1 for the heartbeat's current state, 0 for the others",
                   ("service", "state"))
    last = _gauge("last_timestamp_seconds", "Redis-clock time of the last heartbeat")
    age = _gauge("age_seconds", "Age of the last heartbeat on the Redis clock")
    seq = _gauge("seq", "Sequence number of the last heartbeat")
    lag = _gauge("queue_lag_seconds", "Publish-to-start lag of the last heartbeat")
    duration = _gauge("duration_seconds", "Run time of the last heartbeat's task")
    interval = _gauge("interval_seconds", "Interval the writer was configured with")
    stale_after = _gauge("stale_after_seconds", "Age at which the heartbeat is stale")
    depth = _gauge("queue_depth", "Heartbeat messages waiting in the broker queue")
    diagnosis = _gauge("diagnosis", "1 for the diagnosed broken hop (only when not fresh)",
                       ("service", "diagnosis"))
    node_up = _gauge("node_up", "1 if the worker node's own heartbeat is fresh or late, else 0",
                     ("service", "node"))
    node_age = _gauge("node_age_seconds", "Age of the worker node's last node heartbeat",
                      ("service", "node"))
    nodes = _gauge("nodes", "Worker nodes of the service by the state of their node heartbeat",
                   ("service", "state"))
    beats = _gauge("beats", "Beats seen publishing for the service (more than 1: a mistake)")
    for report in reports:
        name = report.service
        up.add_metric([name], 1 if report.state in (State.FRESH, State.LATE) else 0)
        for each in State:
            state.add_metric([name, each.value], 1 if each is report.state else 0)
        if report.diagnosis:
            diagnosis.add_metric([name, report.diagnosis], 1)
        # One series per node still recorded: a node gone for longer than the node
        # retention (or shut down cleanly) is pruned from the store, so its series ends.
        for node in report.nodes:
            node_up.add_metric([name, node.node], 1 if node.state is not State.STALE else 0)
            node_age.add_metric([name, node.node], node.age_s)
        for each in (State.FRESH, State.LATE, State.STALE):
            nodes.add_metric([name, each.value], sum(n.state is each for n in report.nodes))
        if report.beat is not None:
            beats.add_metric([name], 2 if report.second_beat is not None else 1)
        payload = report.payload
        if payload is None:
            continue
        last.add_metric([name], payload["ts_ms"] / 1000)
        if report.age_s is not None:
            age.add_metric([name], report.age_s)
        seq.add_metric([name], payload["seq"])
        interval.add_metric([name], payload["interval_s"])
        stale_after.add_metric([name], payload["stale_after_s"])
        lag_ms = payload.get("queue_lag_ms")
        if isinstance(lag_ms, int | float):
            lag.add_metric([name], lag_ms / 1000)
        duration_ms = payload.get("duration_ms")
        if isinstance(duration_ms, int | float):
            duration.add_metric([name], duration_ms / 1000)
        backlog = payload.get("backlog")
        if isinstance(backlog, dict) and isinstance(backlog.get("depth"), int):
            depth.add_metric([name], backlog["depth"])
    yield from (up, state, last, age, seq, lag, duration, interval, stale_after, depth, diagnosis,
                node_up, node_age, nodes, beats)


def registry_for(fleet: Callable[[], Fleet]) -> CollectorRegistry:
    """A fresh registry holding only the heartbeat collector, reading through ``fleet``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HeartbeatCollector(fleet))
    return registry
