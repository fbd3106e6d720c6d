"""``entries.lua`` through its store on fakeredis: a check-in of a run that is not the
entry's last dispatched one goes to the stream only, never rewriting the entry; the record
and the stream expire after the retention; times on the Redis clock."""

from __future__ import annotations

import json
from typing import Any

import fakeredis

from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.publish.entry_store import EntryStore

KEYS = Keys()


def _record(client: Any) -> dict[str, Any]:
    return json.loads(client.hget(KEYS.entries("petsage"), "nightly") or b"{}")


def test_a_check_in_of_another_run_never_rewrites_the_entry() -> None:
    client = fakeredis.FakeRedis()
    store = EntryStore(client, KEYS, "petsage", retention_s=600)
    before = redis_time_ms(client.time())
    now = store.dispatched("nightly", "run-2", due_in_ms=0, next_due_in_ms=60_000,
                           beat_id="b1", depth=None)
    assert before <= now <= redis_time_ms(client.time())
    store.started("nightly", "run-2", "w@h")
    store.finished("nightly", "run-1", "failed", error_type="E", error="old")  # a late one
    store.started("nightly", "run-0", "w@h")
    record = _record(client)
    assert record["run"]["id"] == "run-2" and "outcome" not in record["run"]
    assert "last_failure_ms" not in record and record["run"]["attempts"] == 1
    assert record["run"]["dispatched_ms"] == now
    events = [f[b"event"] for _, f in client.xrange(KEYS.entry_runs("petsage"))]
    assert events == [b"dispatched", b"started", b"finish_unmatched", b"start_unmatched"]
    store.finished("nightly", "run-2", "succeeded")
    assert _record(client)["run"]["outcome"] == "succeeded"
    for key in (KEYS.entries("petsage"), KEYS.entry_runs("petsage")):
        assert 590_000 < client.pttl(key) <= 600_000


def _records(client: Any) -> dict[str, Any]:
    raw = client.hgetall(KEYS.entries("petsage")).items()
    return {k.decode(): json.loads(v) for k, v in raw}


def _spec(name: str, schedule: str = "every 60s") -> Any:
    from worker.publish.entry_store import EntrySpec

    return EntrySpec(name, "app.task", schedule, "interval", None, "celery", 30.0, None, 60.0,
                     60_000)


def test_a_sync_writes_only_what_it_is_given_and_prune_marks_the_rest_removed() -> None:
    client = fakeredis.FakeRedis()
    store = EntryStore(client, KEYS, "petsage", retention_s=600)
    store.sync([_spec("a"), _spec("b"), _spec("c")])
    store.sync([_spec("b", "every 30s")])  # a chunk: a and c untouched, b changed
    records = _records(client)
    assert records["b"]["schedule"] == "every 30s" and records["a"]["schedule"] == "every 60s"
    assert not any("removed_ms" in r for r in records.values())
    store.prune(["a", "b"])
    records = _records(client)
    assert "removed_ms" in records["c"] and "removed_ms" not in records["a"]
    marked = {**records["c"], "removed_ms": 1234}  # as if removed long ago
    client.hset(KEYS.entries("petsage"), "c", json.dumps(marked))
    store.prune(["a", "b"])  # once: a second prune keeps the first removal time
    assert json.loads(client.hget(KEYS.entries("petsage"), "c"))["removed_ms"] == 1234
    store.sync([_spec("c")])  # back in the schedule
    assert "removed_ms" not in json.loads(client.hget(KEYS.entries("petsage"), "c"))
    events = [(f[b"event"], f[b"entry"]) for _, f in client.xrange(KEYS.entry_runs("petsage"))]
    assert events == [(b"added", b"a"), (b"added", b"b"), (b"added", b"c"), (b"changed", b"b"),
                      (b"removed", b"c"), (b"added", b"c")]


def test_runs_that_never_started_wait_from_the_oldest_dispatch() -> None:
    client = fakeredis.FakeRedis()
    store = EntryStore(client, KEYS, "petsage", retention_s=600)
    first = store.dispatched("nightly", "r1", due_in_ms=0, next_due_in_ms=1000, beat_id="b",
                             depth=3)
    record = _record(client)
    record["run"]["dispatched_ms"] = record["run"]["waiting_since_ms"] = first - 5000
    client.hset(KEYS.entries("petsage"), "nightly", json.dumps(record))
    store.dispatched("nightly", "r2", due_in_ms=0, next_due_in_ms=1000, beat_id="b", depth=4)
    run = _record(client)["run"]
    assert run["id"] == "r2" and run["waiting_since_ms"] == first - 5000 and run["depth"] == 4
    store.started("nightly", "r2", "w@h")
    store.dispatched("nightly", "r3", due_in_ms=0, next_due_in_ms=1000, beat_id="b", depth=0)
    run = _record(client)["run"]
    assert run["waiting_since_ms"] == run["dispatched_ms"]  # the one before it started


def test_a_removal_never_creates_a_record() -> None:
    """A name forgotten between beat's HKEYS and its remove call stays forgotten."""
    client = fakeredis.FakeRedis()
    store = EntryStore(client, KEYS, "petsage", retention_s=600)
    store.sync([_spec("a")])
    assert store.prune(["b"]) == ["a"]  # "a" left: marked
    client.hdel(KEYS.entries("petsage"), "a")  # forgotten meanwhile
    store._call("remove", json.dumps(["a"]))  # the call that was already on its way
    assert client.hget(KEYS.entries("petsage"), "a") is None
