"""The entries' store writes (``worker.publish.entry_store``), in process: the exact keys
and arguments each write hands ``entries.lua`` (the script's ARGV layout), the JSON of a
sync and of a removal, the removals in chunks, the refused outcome's line, and the same
writes on fakeredis under a prefix and service of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from worker.core.names import Keys
from worker.publish.entry_store import (
    ENTRIES_SCRIPT,
    OUTCOMES,
    REMOVE_CHUNK,
    RUNS_STREAM_LEN,
    EntrySpec,
    EntryStore,
)

ENTRIES_KEY, RUNS_KEY = "petsage:hb:{petsage}:entries", "petsage:hb:{petsage}:entry_runs"


class Recorder:
    """A client that notes each script call (keys and arguments) and answers ``1234``."""

    def __init__(self, stored: list[Any] | None = None) -> None:
        self.sources: list[str] = []
        self.calls: list[tuple[list[str], list[Any]]] = []
        self.stored = stored or []
        self.hkeys_of: list[str] = []

    def register_script(self, source: str) -> Callable[..., bytes]:
        self.sources.append(source)

        def run(*, keys: list[str], args: list[Any]) -> bytes:
            self.calls.append((keys, args))
            return b"1234"

        return run

    def hkeys(self, key: str) -> list[Any]:
        self.hkeys_of.append(key)
        return self.stored


def _store(client: Any, retention_s: float = 600) -> EntryStore:
    return EntryStore(client, Keys(), "petsage", retention_s=retention_s)  # type: ignore[arg-type]


def _spec(name: str = "nightly", **changes: Any) -> EntrySpec:
    spec = EntrySpec(name=name, task="app.export", schedule="every 60s", kind="interval",
                     tz="UTC", queue="celery", grace_s=30.0, max_runtime_s=None,
                     period_s=60.0, next_due_in_ms=45_000)
    return spec._replace(**changes)


def test_the_script_is_entries_lua_and_its_keys_the_service_s() -> None:
    client = Recorder()
    _store(client)
    lua = Path(__file__).parent.parent / "worker" / "publish" / "entries.lua"
    assert client.sources == [lua.read_text()] == [ENTRIES_SCRIPT]
    assert (RUNS_STREAM_LEN, REMOVE_CHUNK) == (10_000, 100)
    assert OUTCOMES == ("succeeded", "failed", "retrying", "revoked", "rejected")


def test_a_sync_hands_the_script_its_specs_as_compact_json() -> None:
    client = Recorder()
    store = _store(client)
    assert store.sync([_spec("café", max_runtime_s=3600.0), _spec("b", tz=None)]) == 1234
    assert client.calls == [([ENTRIES_KEY, RUNS_KEY], [
        "sync", 600_000, 10_000,
        '[{"name":"café","task":"app.export","schedule":"every 60s","kind":"interval",'
        '"tz":"UTC","queue":"celery","grace_s":30.0,"max_runtime_s":3600.0,"period_s":60.0,'
        '"next_due_in_ms":45000},'
        '{"name":"b","task":"app.export","schedule":"every 60s","kind":"interval",'
        '"tz":null,"queue":"celery","grace_s":30.0,"max_runtime_s":null,"period_s":60.0,'
        '"next_due_in_ms":45000}]'])]
    assert _spec().as_json() == {
        "name": "nightly", "task": "app.export", "schedule": "every 60s", "kind": "interval",
        "tz": "UTC", "queue": "celery", "grace_s": 30.0, "max_runtime_s": None,
        "period_s": 60.0, "next_due_in_ms": 45_000}


def test_a_spec_with_a_number_json_can_not_hold_is_refused_before_the_script() -> None:
    client = Recorder()
    with pytest.raises(ValueError, match="JSON"):
        _store(client).sync([_spec(period_s=float("nan"))])
    assert client.calls == []


@pytest.mark.parametrize(("retention_s", "ms"),
                         [(600, 600_000), (0.5, 500), (86_400.25, 86_400_250)])
def test_the_retention_goes_in_whole_milliseconds(retention_s: float, ms: int) -> None:
    client = Recorder()
    _store(client, retention_s).started("nightly", "id-1", "w1@h")
    retention = client.calls[0][1][1]
    assert retention == ms and type(retention) is int


def test_each_check_in_hands_the_script_its_arguments_in_order() -> None:
    client = Recorder()
    store = _store(client)
    assert store.dispatched("nightly", "id-1", due_in_ms=-250, next_due_in_ms=60_000,
                            beat_id="beat-1", depth=None) == 1234
    store.dispatched("nightly", "id-2", due_in_ms=0, next_due_in_ms=1, beat_id="beat-2",
                     depth=0)
    assert store.started("nightly", "id-2", "w1@h") == 1234
    assert store.finished("nightly", "id-2", "succeeded") == 1234
    store.finished("nightly", "id-2", "failed", error_type="ValueError", error="bad row")
    head = [600_000, 10_000]
    assert [args for _, args in client.calls] == [
        ["dispatch", *head, "nightly", "id-1", -250, 60_000, "beat-1", ""],
        ["dispatch", *head, "nightly", "id-2", 0, 1, "beat-2", 0],
        ["start", *head, "nightly", "id-2", "w1@h"],
        ["finish", *head, "nightly", "id-2", "succeeded", "", ""],
        ["finish", *head, "nightly", "id-2", "failed", "ValueError", "bad row"],
    ]
    assert all(keys == [ENTRIES_KEY, RUNS_KEY] for keys, _ in client.calls)


def test_an_outcome_not_listed_is_refused_in_one_line() -> None:
    client = Recorder()
    store = _store(client)
    for outcome in OUTCOMES:
        store.finished("n", "id", outcome)
    with pytest.raises(ValueError) as info:
        store.finished("n", "id", "SUCCESS")
    assert str(info.value) == ("unknown outcome 'SUCCESS'; accepted: succeeded, failed, "
                               "retrying, revoked, rejected")
    assert [args[5] for _, args in client.calls] == list(OUTCOMES)


def test_prune_sends_only_the_names_that_left_sorted_a_hundred_a_call() -> None:
    stored = [f"gone {i:03d}".encode() for i in range(250, 0, -1)] + [b"kept", "also kept"]
    client = Recorder(stored)
    gone = _store(client).prune(["kept", "also kept", "never stored"])
    names = [f"gone {i:03d}" for i in range(1, 251)]
    assert gone == names
    assert client.hkeys_of == [ENTRIES_KEY]
    head = ["remove", 600_000, 10_000]
    assert client.calls == [([ENTRIES_KEY, RUNS_KEY], [*head, json.dumps(names[i:i + 100])
                                                           .replace(", ", ",")])
                            for i in (0, 100, 200)]


def test_prune_writes_names_as_they_are_and_nothing_when_none_left() -> None:
    client = Recorder([b"kept"])
    assert _store(client).prune(["kept"]) == []
    assert client.calls == []
    client = Recorder(["é", b"kept", "a,b"])
    assert _store(client).prune(["kept"]) == ["a,b", "é"]
    assert client.calls[0][1][3] == '["a,b","é"]'


def test_the_writes_on_fakeredis_go_to_the_service_s_own_keys(
        fake: fakeredis.FakeRedis) -> None:
    store = EntryStore(fake, Keys("acme:hb"), "billing", retention_s=120)
    store.sync([_spec("nightly"), _spec("gone")])
    now = store.dispatched("nightly", "id-1", due_in_ms=-1500, next_due_in_ms=60_000,
                           beat_id="beat-1", depth=3)
    assert store.started("nightly", "id-1", "w1@h") >= now
    store.finished("nightly", "id-1", "failed", error_type="KeyError", error="'x'")
    assert store.prune(["nightly"]) == ["gone"]
    keys = sorted(fake.keys())
    assert keys == [b"acme:hb:{billing}:entries", b"acme:hb:{billing}:entry_runs"]
    for key in keys:
        assert 119_000 < fake.pttl(key) <= 120_000
    record = json.loads(fake.hget("acme:hb:{billing}:entries", "nightly"))  # type: ignore[arg-type]
    run = record["run"]
    assert (run["id"], run["due_ms"], run["dispatched_ms"], run["beat"], run["depth"]) == (
        "id-1", now - 1500, now, "beat-1", 3)
    assert (run["node"], run["outcome"], run["error_type"], run["error"]) == (
        "w1@h", "failed", "KeyError", "'x'")
    assert record["next_due_ms"] == now + 60_000
    assert "removed_ms" in json.loads(fake.hget("acme:hb:{billing}:entries", "gone"))  # type: ignore[arg-type]
    events = [f[b"event"] for _, f in fake.xrange("acme:hb:{billing}:entry_runs")]
    assert events == [b"added", b"added", b"dispatched", b"started", b"failed", b"removed"]
