"""The beat entries' reader in process: the evidence it takes from beat's marker and the
worker nodes, the replies it accepts and refuses, the commands it sends (on fakeredis) and
the JSON of one entry. Every value is pinned on a fixed Redis clock.

The judging rules themselves are in tests/test_entry_judge_units.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import fakeredis
import pytest

from worker.core.entries import EntryState
from worker.core.names import Keys
from worker.read.diagnosis import MAX_MARKER_BYTES
from worker.read.entries import (
    ENTRIES_COMMANDS,
    MAX_RECORD_BYTES,
    EntryReport,
    entries_commands,
    entries_from_replies,
    evidence,
    read_entries,
)

KEYS = Keys()
NOW_MS = 1_700_000_000_000
TIME = [str(NOW_MS // 1000).encode(), str(NOW_MS % 1000 * 1000).encode()]


def _marker(**fields: Any) -> bytes:
    base = {"published_at_ms": NOW_MS - 500, "next_due_ms": NOW_MS + 500, "seq": 7,
            "interval_s": 1}
    return json.dumps({**base, **fields}).encode()


def _missed() -> bytes:
    """An entry whose due time and grace passed 10 s ago."""
    return json.dumps({"next_due_ms": NOW_MS - 15_000, "grace_s": 5}).encode()


def _overrun(node: str) -> bytes:
    """An entry whose run started on ``node`` 100 s ago, over its 60 s max runtime."""
    return json.dumps({"max_runtime_s": 60, "grace_s": 5, "next_due_ms": NOW_MS + 60_000,
                       "run": {"dispatched_ms": NOW_MS - 101_000, "started_ms": NOW_MS - 100_000,
                               "node": node}}).encode()


def _replies(entries: Any, marker: Any = b"", nodes: Any = (), silences: Any = ()) -> list[Any]:
    return [TIME, entries, marker, list(nodes), list(silences)]


# -- evidence: beat's marker and the nodes -------------------------------------------------


def test_the_evidence_of_a_marker_with_its_interval_and_nodes() -> None:
    ev = evidence(NOW_MS, _marker(interval_s=2), [b"w@a", b"1699999999000.7", "w@b", "12"], 5.0)
    assert ev.now_ms == NOW_MS
    assert ev.beat_published_ms == NOW_MS - 500
    assert ev.beat_interval_s == 2.0 and type(ev.beat_interval_s) is float
    assert ev.publish_failed_ms is None and ev.publish_error is None
    assert ev.nodes == {"w@a": 1_699_999_999_000, "w@b": 12}
    assert ev.node_stale_after_ms == 6000  # 3 of beat's own intervals


def test_without_a_marker_the_interval_given_sets_the_node_threshold() -> None:
    ev = evidence(NOW_MS, None, [], 4.0)
    assert (ev.beat_published_ms, ev.beat_interval_s) == (None, 4.0)
    assert ev.node_stale_after_ms == 12_000
    ev = evidence(NOW_MS, _marker(interval_s="2"), [], None)  # not a number: not an interval
    assert ev.beat_interval_s is None and ev.node_stale_after_ms == 30_000  # 3 x 10 s
    ev = evidence(NOW_MS, None, {}, None)
    assert ev.beat_interval_s is None and ev.node_stale_after_ms == 30_000


def test_a_marker_that_says_the_broker_refused_the_last_publish() -> None:
    ev = evidence(NOW_MS, _marker(publish_failed_at_ms=NOW_MS - 200,
                                  publish_error="ConnectionRefusedError: no"), [], None)
    assert ev.publish_failed_ms == NOW_MS - 200
    assert ev.publish_error == "ConnectionRefusedError: no"


def test_node_scores_that_are_not_numbers_are_skipped_not_the_rest() -> None:
    long_name = "w@" + "n" * 300
    ev = evidence(NOW_MS, None, {b"w@bad": b"soon", long_name.encode(): b"5",
                                 b"w@good": b"7"}, None)
    assert ev.nodes == {long_name[:255]: 5, "w@good": 7}
    ev = evidence(NOW_MS, None, [b"w@bad", b"soon", b"w@good", b"7"], None)
    assert ev.nodes == {"w@good": 7}


# -- entries_from_replies -------------------------------------------------------------------


def test_beat_publishing_on_time_makes_a_missed_entry_not_dispatched() -> None:
    report = entries_from_replies("svc", _replies({b"e": _missed()}, _marker()))
    assert report.error is None and report.now_ms == NOW_MS
    (entry,) = report.entries
    assert (entry.state, entry.diagnosis) == (EntryState.MISSED, "not_dispatched")


def test_an_unreadable_marker_or_node_set_is_no_evidence_not_an_error() -> None:
    refused = ValueError("WRONGTYPE")
    report = entries_from_replies("svc", _replies({b"e": _missed()}, refused))
    assert report.error is None
    assert report.entries[0].diagnosis == "beat_down"
    report = entries_from_replies("svc", [TIME, {b"e": _overrun("w@a")}, _marker(), refused,
                                          []])
    assert report.error is None
    assert report.entries[0].diagnosis == "worker_lost"  # no node known: not alive


def test_the_nodes_decide_whether_an_overrun_worker_was_lost() -> None:
    fresh = [(b"w@a", float(NOW_MS - 1000))]  # redis-py's pairs
    report = entries_from_replies("svc", _replies({b"e": _overrun("w@a")}, _marker(), fresh))
    assert report.entries[0].diagnosis == "task_hung"
    flat = [b"w@a", str(NOW_MS - 1000).encode()]
    report = entries_from_replies("svc", _replies({b"e": _overrun("w@a")}, _marker(), flat))
    assert report.entries[0].diagnosis == "task_hung"
    report = entries_from_replies("svc", _replies({b"e": _overrun("w@a")}, _marker(), []))
    assert report.entries[0].diagnosis == "worker_lost"
    report = entries_from_replies("svc", _replies({b"e": _overrun("w@a")}, _marker(), b"x"))
    assert report.entries[0].diagnosis == "worker_lost"


def test_a_flat_hgetall_reply_is_read_as_pairs() -> None:
    flat = [b"a", _missed(), b"b", _missed(), b"odd"]
    report = entries_from_replies("svc", _replies(flat, _marker()))
    assert [e.name for e in report.entries] == ["a", "b"]
    assert all(e.state is EntryState.MISSED for e in report.entries)
    assert entries_from_replies("svc", _replies(b"junk")).entries == ()


def test_records_that_are_not_objects_or_too_big_are_invalid() -> None:
    at_limit = json.dumps({"next_due_ms": NOW_MS + 60_000, "pad": ""})
    at_limit = at_limit.replace('""', '"' + "x" * (MAX_RECORD_BYTES - len(at_limit)) + '"')
    assert len(at_limit) == MAX_RECORD_BYTES
    raw = {b"list": b"[1]", b"limit": at_limit.encode(), b"over": at_limit.encode() + b" ",
           b"notjson": b"{", b"number": 5}
    report = entries_from_replies("svc", _replies(raw, _marker()))
    by_name = {e.name: e for e in report.entries}
    assert by_name["limit"].state is EntryState.PENDING
    for name in ("list", "over", "notjson", "number"):
        entry = by_name[name]
        assert (entry.state, entry.diagnosis, entry.reason, entry.record) == (
            EntryState.FAILED, "invalid", "the stored record is unreadable", {})


def test_an_invalid_record_keeps_its_silence() -> None:
    silence = json.dumps({"until_ms": NOW_MS + 60_000, "by": "ops", "why": "migration"})
    report = entries_from_replies("svc", _replies({b"bad": b"[]", b"good": _missed()}, _marker(),
                                                  silences=[b"bad", silence.encode()]))
    by_name = {e.name: e for e in report.entries}
    assert by_name["bad"].silence is not None
    assert by_name["bad"].silence.until_ms == NOW_MS + 60_000
    assert by_name["good"].silence is None
    refused = entries_from_replies("svc", [TIME, {b"bad": b"[]"}, b"", [], ValueError("WRONGTYPE")])
    assert refused.entries[0].silence is None


def test_names_filter_and_bad_names_skip_only_those_entries() -> None:
    raw = {b"a": _missed(), b"bad\nname": _missed(), b"b": _missed(), b"c": _missed()}
    report = entries_from_replies("svc", _replies(raw, _marker()), names={"b", "c"})
    assert [e.name for e in report.entries] == ["b", "c"]
    report = entries_from_replies("svc", _replies(raw, _marker()))
    assert [e.name for e in report.entries] == ["a", "b", "c"]
    raw = {b"x": b"[]", b"y": _missed()}
    report = entries_from_replies("svc", _replies(raw, _marker()))
    assert [e.name for e in report.entries] == ["y", "x"]  # missed before failed


@pytest.mark.parametrize("replies", [
    [TIME, {}, b""],  # a missing reply
    [ValueError("ERR x" * 100), {}, b"", [], []],
    [TIME, ValueError("WRONGTYPE Operation"), b"", [], []],
])
def test_a_refused_time_or_entries_reply_is_the_error(replies: list[Any]) -> None:
    report = entries_from_replies("svc", replies)
    assert report.now_ms is None and report.entries == () and report.error
    assert report.error.split(":")[0] in ("ValueError",)
    assert len(report.error) <= 200
    long = entries_from_replies("svc", [ValueError("x" * 300), {}, b"", [], []])
    assert long.error == ("ValueError: " + "x" * 300)[:200]


# -- the commands, on fakeredis -------------------------------------------------------------


def _store() -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis()
    now = int(time.time() * 1000)
    client.hset(KEYS.entries("svc"), "e", json.dumps(
        {"next_due_ms": now - 60_000, "grace_s": 5}))
    return client


def _padded_marker(size: int) -> bytes:
    now = int(time.time() * 1000)
    text = json.dumps({"published_at_ms": now, "next_due_ms": now + 1000, "seq": 1,
                       "interval_s": 1, "pad": ""})
    return text.replace('"pad": ""', '"pad": "' + "x" * (size - len(text)) + '"').encode()


@pytest.mark.parametrize(("size", "diagnosis"), [
    (MAX_MARKER_BYTES - 1, "not_dispatched"),  # read whole: beat is fine
    (MAX_MARKER_BYTES, "beat_down"),  # too big to be beat's: no evidence of beat
])
def test_beat_s_marker_is_read_up_to_its_bound(size: int, diagnosis: str) -> None:
    client = _store()
    marker = _padded_marker(size)
    assert len(marker) == size
    client.set(KEYS.beat("svc"), marker)
    report = read_entries(client, "svc")
    assert report.error is None
    assert report.entries[0].diagnosis == diagnosis


def test_at_most_a_thousand_nodes_are_read_newest_first() -> None:
    client = fakeredis.FakeRedis()
    now = int(time.time() * 1000)
    client.hset(KEYS.entries("svc"), "oldest", _overrun_at(now, "w@0"))
    client.hset(KEYS.entries("svc"), "newest", _overrun_at(now, "w@1000"))
    client.set(KEYS.beat("svc"), json.dumps(
        {"published_at_ms": now, "next_due_ms": now + 1000, "seq": 1, "interval_s": 60}))
    client.zadd(KEYS.nodes("svc"), {f"w@{i}": now - 1000 + i for i in range(1001)})
    by_name = {e.name: e for e in read_entries(client, "svc").entries}
    assert by_name["newest"].diagnosis == "task_hung"  # read and fresh
    assert by_name["oldest"].diagnosis == "worker_lost"  # the 1,001st newest: not read


def _overrun_at(now: int, node: str) -> str:
    return json.dumps({"max_runtime_s": 60, "grace_s": 5, "next_due_ms": now + 600_000,
                       "run": {"dispatched_ms": now - 101_000, "started_ms": now - 100_000,
                               "node": node}})


def test_read_entries_passes_the_names_on_and_reports_a_dead_connection() -> None:
    client = _store()
    client.hset(KEYS.entries("svc"), "other", json.dumps({"next_due_ms": 1}))
    assert [e.name for e in read_entries(client, "svc", names={"e"}).entries] == ["e"]
    assert len(read_entries(client, "svc").entries) == 2

    class Dead:
        def pipeline(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("x" * 300)

        def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("x" * 300)

    report = read_entries(Dead(), "svc")
    assert report.error == ("ConnectionError: " + "x" * 300)[:200]
    assert report.entries == () and report.now_ms is None


def test_the_commands_are_five_per_service() -> None:
    assert len(entries_commands("svc", KEYS)) == ENTRIES_COMMANDS


# -- one entry as JSON ----------------------------------------------------------------------


def test_an_entry_as_json_holds_every_field_of_its_record() -> None:
    run = {"id": "r1", "outcome": "succeeded"}
    record = {"task": "reports.export", "schedule": "every 10s", "kind": "interval",
              "tz": "UTC", "queue": "celery", "grace_s": 5, "max_runtime_s": 60,
              "next_due_ms": 11, "last_success_ms": 12, "last_duration_ms": 13,
              "last_queue_wait_ms": 14, "removed_ms": 15, "counts": {"ok": 3}, "run": run}
    report = EntryReport("e", EntryState.OK, None, "fine", record)
    assert report.as_json() == {
        "name": "e", "state": "ok", "diagnosis": None, "reason": "fine",
        "task": "reports.export", "schedule": "every 10s", "kind": "interval", "tz": "UTC",
        "queue": "celery", "grace_s": 5, "max_runtime_s": 60, "next_due_ms": 11,
        "last_success_ms": 12, "last_duration_ms": 13, "last_queue_wait_ms": 14,
        "removed_ms": 15, "counts": {"ok": 3}, "run": run,
    }
    bare = EntryReport("e", EntryState.MISSED, "beat_down", "why", {"run": "not a dict"})
    assert bare.as_json()["run"] == {} and bare.as_json()["counts"] == {}
    assert bare.as_json()["task"] is None and bare.as_json()["state"] == "missed"
