"""Judging one beat entry (``worker.read.entry_judge``), in process: every row of the
module's table, with its exact reason line, at each boundary, on a fixed clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from worker.core.entries import EntryState
from worker.read.entry_judge import Evidence, Judgement, judge

NOW = 1_700_000_000_000
NOT_DISPATCHED = "beat runs but did not send it (a scheduler that skips or lost the entry)"
NO_CONSUMER = "no worker consumes the entry's queue"


def _ev(*, published: int | None = NOW - 500, interval: float | None = 2.0,
        failed: int | None = None, error: str | None = None,
        nodes: dict[str, int] | None = None, stale_ms: int = 30_000) -> Evidence:
    return Evidence(NOW, published, interval, failed, error, nodes or {}, stale_ms)


def _j(record: dict[str, Any], ev: Evidence | None = None) -> Judgement:
    return judge(record, ev or _ev())


def test_a_removed_entry_whatever_else_its_record_says() -> None:
    assert _j({"removed_ms": NOW - 5000, "next_due_ms": NOW - 99_000}) == Judgement(
        EntryState.REMOVED, "removed", "left beat's schedule 5.0s ago")
    assert _j({"removed_ms": NOW + 5000}).reason == "left beat's schedule 0.0s ago"
    assert _j({"removed_ms": 1.5e12}).state is EntryState.REMOVED
    assert _j({"removed_ms": True}).state is EntryState.PENDING  # not a number
    assert _j({"removed_ms": "5"}).state is EntryState.PENDING


def test_a_due_time_past_its_grace_with_beat_running_is_not_dispatched() -> None:
    record = {"next_due_ms": NOW - 15_000, "grace_s": 5}
    assert _j(record) == Judgement(
        EntryState.MISSED, "not_dispatched",
        f"due 15.0s ago, over its 5.0s grace, not dispatched: {NOT_DISPATCHED}")
    assert _j({"next_due_ms": NOW - 5000, "grace_s": 5}).state is EntryState.PENDING  # the edge
    assert _j({"next_due_ms": NOW - 5001, "grace_s": 5}).state is EntryState.MISSED
    assert _j({"next_due_ms": NOW - 1}).reason == (  # no grace: none; beat silent since
        "due 0.0s ago, over its 0.0s grace, not dispatched: beat has not published since "
        "(last 0.5s ago): beat stopped, or its scheduler skipped the entry")
    assert _j({"next_due_ms": NOW}).state is EntryState.PENDING


def test_a_missed_entry_blames_beat_when_beat_stopped_publishing() -> None:
    record = {"next_due_ms": NOW - 15_000, "grace_s": 5}
    late = "due 15.0s ago, over its 5.0s grace, not dispatched"
    assert _j(record, _ev(published=None)) == Judgement(
        EntryState.MISSED, "beat_down", f"{late}: beat has recorded no publish")
    # Down after 1.5 of its own intervals (2 s): 3 s is the edge.
    assert _j(record, _ev(published=NOW - 3000)).diagnosis == "not_dispatched"
    assert _j(record, _ev(published=NOW - 3001)) == Judgement(
        EntryState.MISSED, "beat_down", f"{late}: beat last published 3.0s ago")
    # Without an interval, 10 s: down after 15 s.
    near = {"next_due_ms": NOW - 8000, "grace_s": 5}  # its deadline 3 s ago
    assert _j(near, _ev(published=NOW - 15_000, interval=None)).diagnosis == "beat_or_scheduler"
    assert _j(near, _ev(published=NOW - 15_001, interval=None)).diagnosis == "beat_down"


def test_a_missed_entry_is_beat_or_scheduler_until_beat_shows_life_or_is_late() -> None:
    record = {"next_due_ms": NOW - 8000, "grace_s": 5}  # its deadline 3 s ago
    late = "due 8.0s ago, over its 5.0s grace, not dispatched"
    assert _j(record, _ev(published=NOW - 3000, interval=10)) == Judgement(
        EntryState.MISSED, "beat_or_scheduler",
        f"{late}: beat has not published since (last 3.0s ago): beat stopped, or its "
        "scheduler skipped the entry")
    # The deadline itself is no sign of life; a publish after it is.
    assert _j(record, _ev(published=NOW - 3000 + 1, interval=10)).diagnosis == "not_dispatched"


def test_a_missed_entry_blames_the_broker_when_it_refused_beat_s_last_publish() -> None:
    record = {"next_due_ms": NOW - 15_000, "grace_s": 5}
    late = "due 15.0s ago, over its 5.0s grace, not dispatched"
    refused = _ev(published=NOW - 9000, failed=NOW - 2000, error="ConnectionRefusedError: no")
    assert _j(record, refused) == Judgement(
        EntryState.MISSED, "broker_down",
        f"{late}: beat runs but the broker refused its publish 2.0s ago: "
        "ConnectionRefusedError: no")
    assert _j(record, _ev(published=None, failed=NOW - 2000)).reason == (
        f"{late}: beat runs but the broker refused its publish 2.0s ago")
    # A publish after the refusal: the broker is back.
    assert _j(record, _ev(published=NOW - 1000, failed=NOW - 2000)).diagnosis == "not_dispatched"
    assert _j(record, _ev(published=NOW - 2000, failed=NOW - 2000)).diagnosis == "not_dispatched"


def test_an_entry_without_a_run_or_due_time_is_pending() -> None:
    pending = Judgement(EntryState.PENDING, None, "watched; its first run is not due yet")
    assert _j({}) == pending
    assert _j({"run": "not a run", "next_due_ms": NOW + 1000}) == pending


def _dispatched(ago_ms: int, **run: Any) -> dict[str, Any]:
    return {"next_due_ms": NOW + 60_000, "grace_s": 5,
            "run": {"dispatched_ms": NOW - ago_ms, **run}}


def test_a_run_not_started_within_its_grace() -> None:
    assert _j(_dispatched(10_000)) == Judgement(
        EntryState.NOT_STARTED, "no_consumer",
        f"dispatched 10.0s ago, not started within its 5.0s grace: {NO_CONSUMER}")
    assert _j(_dispatched(10_000, depth=3)).reason == (
        "dispatched 10.0s ago, not started within its 5.0s grace; 3 message(s) waiting in "
        f"its queue: {NO_CONSUMER}")
    for depth in (0, True, "3", None):
        assert "waiting in its queue" not in _j(_dispatched(10_000, depth=depth)).reason
    # Waiting counts from when it was last seen waiting (a redelivery), if given.
    assert _j(_dispatched(60_000, waiting_since_ms=NOW - 7000)).reason.startswith(
        "dispatched 7.0s ago,")
    assert _j(_dispatched(60_000, waiting_since_ms=NOW - 5000)).state is EntryState.PENDING
    assert _j(_dispatched(5000)).state is EntryState.PENDING  # the edge: within grace
    assert _j(_dispatched(5001)).state is EntryState.NOT_STARTED


def test_a_run_not_started_blames_the_broker_only_when_it_refused_beat() -> None:
    head = "dispatched 10.0s ago, not started within its 5.0s grace"
    refused = _ev(published=NOW - 9000, failed=NOW - 2000, error="down")
    assert _j(_dispatched(10_000), refused) == Judgement(
        EntryState.NOT_STARTED, "broker_down",
        f"{head}: beat runs but the broker refused its publish 2.0s ago: down")
    assert _j(_dispatched(10_000), _ev(published=None)) == Judgement(
        EntryState.NOT_STARTED, "no_consumer", f"{head}: {NO_CONSUMER}")


def test_a_run_dispatched_within_its_grace_keeps_the_previous_outcome() -> None:
    waiting = "a run was dispatched 2.0s ago"
    assert _j({**_dispatched(2000), "last_outcome": "failed", "last_error": "boom"}) == Judgement(
        EntryState.FAILED, "task_failed", f"the previous run failed (boom); {waiting}")
    assert _j({**_dispatched(2000), "last_outcome": "revoked"}) == Judgement(
        EntryState.FAILED, "task_failed", f"the previous run revoked; {waiting}")
    assert _j({**_dispatched(2000), "last_outcome": "rejected"}).state is EntryState.FAILED
    assert _j({**_dispatched(2000), "last_outcome": "succeeded"}) == Judgement(
        EntryState.OK, None, f"the previous run succeeded; {waiting}")
    assert _j(_dispatched(2000)) == Judgement(
        EntryState.PENDING, None, f"{waiting}; no run has finished yet")
    assert _j({"grace_s": 5, "run": {"waiting_since_ms": NOW - 1000}}).reason == (
        "a run was dispatched 1700000000.0s ago; no run has finished yet")


def _started(ran_ms: int, node: Any = "w@a", max_runtime_s: Any = 60) -> dict[str, Any]:
    return {"next_due_ms": NOW + 60_000, "grace_s": 5, "max_runtime_s": max_runtime_s,
            "run": {"dispatched_ms": NOW - ran_ms - 100, "started_ms": NOW - ran_ms,
                    "node": node}}


def test_a_run_over_its_max_runtime_on_a_live_worker_hangs() -> None:
    head = "running for 100.0s, over its 60s max runtime"
    alive = _ev(nodes={"w@a": NOW - 30_000})  # the edge: 30 s is still alive
    assert _j(_started(100_000), alive) == Judgement(
        EntryState.OVERRUN, "task_hung",
        f"{head}: its worker w@a is alive; the task itself hangs")
    assert _j(_started(100_000, node=None), alive) == Judgement(
        EntryState.OVERRUN, "task_hung", f"{head}: its worker ? is alive; the task itself hangs")
    assert _j(_started(100_000, max_runtime_s=2.5), alive).reason.startswith(
        "running for 100.0s, over its 2.5s max runtime:")


def test_a_run_over_its_max_runtime_on_a_silent_worker_lost_it() -> None:
    lost = ("running for 100.0s, over its 60s max runtime: its worker w@a stopped its node "
            "heartbeats (killed or hung)")
    assert _j(_started(100_000), _ev(nodes={"w@a": NOW - 30_001})) == Judgement(
        EntryState.OVERRUN, "worker_lost", lost)
    assert _j(_started(100_000), _ev(nodes={"w@b": NOW})) == Judgement(
        EntryState.OVERRUN, "worker_lost", lost)


def test_a_run_within_its_max_runtime_is_running() -> None:
    assert _j(_started(60_000)) == Judgement(EntryState.RUNNING, None, "running for 60.0s on w@a")
    assert _j(_started(60_001)).state is EntryState.OVERRUN
    assert _j(_started(4000, node=None, max_runtime_s=None)) == Judgement(
        EntryState.RUNNING, None, "running for 4.0s on a worker")
    assert _j(_started(10**9, max_runtime_s=None)).state is EntryState.RUNNING


def _finished(ago_ms: int = 3000, **run: Any) -> dict[str, Any]:
    return {"next_due_ms": NOW + 60_000, "grace_s": 5, "period_s": 10,
            "run": {"dispatched_ms": NOW - ago_ms - 2000, "started_ms": NOW - ago_ms - 1000,
                    "finished_ms": NOW - ago_ms, **run}}


def test_the_last_run_s_outcome() -> None:
    assert _j(_finished(outcome="succeeded")) == Judgement(
        EntryState.OK, None, "the last run succeeded 3.0s ago")
    assert _j(_finished(outcome="failed", error_type="ValueError", error="bad")) == Judgement(
        EntryState.FAILED, "task_failed", "the last run raised 3.0s ago: ValueError bad")
    assert _j(_finished(outcome="revoked")) == Judgement(
        EntryState.FAILED, "task_failed", "the last run revoked 3.0s ago")
    assert _j(_finished(outcome="rejected", error="no")).reason == (
        "the last run rejected 3.0s ago: no")
    # Finished without a start recorded (a run that failed before it started).
    no_start = _finished(outcome="failed")
    del no_start["run"]["started_ms"]
    assert _j(no_start).reason == "the last run raised 3.0s ago"


def test_a_retried_run() -> None:
    retrying: dict[str, Any] = {"next_due_ms": NOW + 60_000, "grace_s": 5,
                "run": {"dispatched_ms": NOW - 3000, "started_ms": NOW - 2000,
                        "outcome": "retrying", "attempts": 2, "error_type": "IOError",
                        "error": "reset"}}
    assert _j(retrying) == Judgement(
        EntryState.RETRYING, "task_retrying",
        "the last run raised and is retried (attempt 2): IOError reset")
    del retrying["run"]["attempts"], retrying["run"]["error"], retrying["run"]["error_type"]
    assert _j(retrying).reason == "the last run raised and is retried (attempt 1)"


@pytest.mark.parametrize(("ago_ms", "state"), [
    (25_000, EntryState.DUPLICATE),  # two periods (10 s) and the grace (5 s): the edge
    (25_001, EntryState.OK),
])
def test_a_duplicate_dispatch_counts_for_two_periods_and_the_grace(
        ago_ms: int, state: EntryState) -> None:
    record = {**_finished(outcome="succeeded"), "duplicate_ms": NOW - ago_ms}
    assert _j(record).state is state
    if state is EntryState.DUPLICATE:
        assert _j(record) == Judgement(
            EntryState.DUPLICATE, "two_beats",
            "one due time was dispatched twice 25.0s ago: two beats run; run exactly one")


def test_a_duplicate_without_a_period_counts_for_the_grace_only() -> None:
    record = {**_finished(outcome="succeeded"), "duplicate_ms": NOW - 5000}
    del record["period_s"]
    assert _j(record).state is EntryState.DUPLICATE
    record["duplicate_ms"] = NOW - 5001
    assert _j(record).state is EntryState.OK
    record.update(duplicate_ms=NOW, grace_s=None)
    assert _j(record).state is EntryState.DUPLICATE


def test_a_failure_outranks_a_duplicate_and_a_duplicate_a_retry() -> None:
    failed = {**_finished(outcome="failed"), "duplicate_ms": NOW}
    assert _j(failed).state is EntryState.FAILED
    retrying = {**_finished(outcome="retrying"), "duplicate_ms": NOW}
    assert _j(retrying).state is EntryState.DUPLICATE


def test_every_diagnosis_the_judge_gives_is_listed() -> None:
    """The monitors drop a notification whose diagnosis is not in ``DIAGNOSES``: every
    literal the judge and the reader give must be there."""
    import inspect
    import re

    from worker.read import entries, entry_judge

    source = inspect.getsource(entry_judge) + inspect.getsource(entries)
    given = set(re.findall(r'EntryState\.[A-Z_]+, "([a-z_]+)"', source))
    given |= set(re.findall(r'return "([a-z_]+)", ', source))  # the beat hop's
    assert {"beat_or_scheduler", "not_dispatched", "beat_down", "broker_down",
            "invalid"} <= given
    assert given <= entry_judge.DIAGNOSES
