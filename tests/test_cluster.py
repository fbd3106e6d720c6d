"""A Redis Cluster as the heartbeat store: 100 services written and read, status --all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import RedisClusterSet
from tests.support.helpers import Proc, RedisServer, celery_argv, cli_argv, heartbeat_env, wait_for
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from worker import State, read_heartbeat
from worker.core.names import Keys
from worker.core.redis_clients import make_client
from worker.read.fleet import read_fleet

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterSet]:
    nodes = RedisClusterSet()
    yield nodes
    nodes.close()


def test_keys_of_one_service_share_a_slot_and_services_spread(cluster: RedisClusterSet) -> None:
    client = make_client(cluster.url, timeout_s=2)
    keys = Keys()
    slots = {client.keyslot(name) for name in (keys.latest("a"), keys.history("a"),
                                                keys.beat("a"), keys.discarded("a"))}
    assert len(slots) == 1
    spread = {client.keyslot(keys.latest(f"svc-{i}")) for i in range(100)}
    assert len(spread) > 50


def test_100_services_written_and_read_on_a_cluster(cluster: RedisClusterSet) -> None:
    client = make_client(cluster.url, timeout_s=2)
    for i in range(100):
        publish(client, f"svc-{i}")
    for i in range(100):
        report = read_heartbeat(client, f"svc-{i}")
        assert report.state is State.FRESH, report.reason
        assert report.payload is not None and report.payload["seq"] == 1
    publish(client, "svc-7")
    assert read_heartbeat(client, "svc-7").payload["seq"] == 2  # type: ignore[index]
    assert client.zcard(Keys().index) == 100
    fleet = read_fleet(client, Keys())
    assert fleet.store_problem is None and len(fleet.reports) == 100
    assert {r.state for r in fleet.reports} == {State.FRESH}
    done = run_process(cli_argv("status", "--all", "--json", "--redis", cluster.url),
                       capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(json.loads(done.stdout)) == 100
    check = run_process(cli_argv("check", "--service", "svc-42", "--redis", cluster.url),
                        capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0 and check.stdout.startswith("OK - svc-42 heartbeat")


def test_pipeline_with_a_cluster_store(cluster: RedisClusterSet, own_redis: RedisServer,
                                       procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url, HEARTBEAT_REDIS_URL=cluster.url,
                        HEARTBEAT_SERVICE="clustered")
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    procs.append(Proc(celery_argv("worker", queue="heartbeat.clustered"), env, tmp_path,
                      "worker"))
    client = make_client(cluster.url, timeout_s=2)
    wait_for(lambda: read_heartbeat(client, "clustered").state is State.FRESH, 30,
             what="a heartbeat in the cluster")
    wait_for(lambda: (read_heartbeat(client, "clustered").payload or {}).get("seq", 0) >= 4, 10,
             what="more heartbeats")
    report = read_heartbeat(client, "clustered")
    assert report.beat is not None and report.beat["seq"] >= 4  # the marker, in the same slot


def test_a_failing_heartbeat_whose_summary_write_fails_is_not_shown_fresh(
        cluster: RedisClusterSet, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.publish.store import HeartbeatStore

    client = make_client(cluster.url, timeout_s=2)
    publish(client, "flaky")
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=10)

    def lost(**_: object) -> None:
        raise ConnectionError("the summary's node went away")

    monkeypatch.setattr(store, "_summary_script", lost)
    body = json.loads(client.get(Keys().latest("flaky")))  # type: ignore[arg-type]
    for stamped in ("seq", "ts_ms", "timestamp"):
        body.pop(stamped)
    with pytest.raises(ConnectionError):
        store.publish("flaky", {**body, "status": "error"})
    assert client.hget(Keys().summary_of("flaky"), "flaky") is None
    own = read_heartbeat(client, "flaky")
    (report,) = [r for r in read_fleet(client, Keys()).reports if r.service == "flaky"]
    assert own.state is State.STALE and report.state is State.STALE
