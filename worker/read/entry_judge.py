"""The state of one beat entry, and which hop broke, from its record and one clock reading.

Pure: the record (``entries.lua`` writes it), the Redis time of the same read, beat's
marker and the worker nodes in; a state, a diagnosis and one line out. Every rule is in
docs/entries.md, worst first:

| state | when | diagnosis |
|---|---|---|
| ``removed`` | the entry left the schedule | ``removed`` |
| ``missed`` | next due time + grace passed, no dispatch | ``beat_down``, ``broker_down``, |
| | | ``not_dispatched`` (beat published since, |
| | | skipped it) or ``beat_or_scheduler`` (not |
| | | known yet: within one of beat's intervals) |
| ``not_started`` | dispatched, not started within grace | ``no_consumer``, ``broker_down`` |
| ``overrun`` | started, not finished within max runtime | ``worker_lost`` or ``task_hung`` |
| ``failed`` | the last run raised, was revoked or rejected | ``task_failed`` |
| ``duplicate`` | two dispatches of one due time, recently | ``two_beats`` |
| ``retrying`` | the last run raised and is retried | ``task_retrying`` |
| ``running`` | started, not finished | |
| ``ok`` | the last run succeeded | |
| ``pending`` | watched, no run yet and not yet due | |
"""

from __future__ import annotations

from typing import Any, NamedTuple

from worker.core.entries import EntryState

DIAGNOSES = frozenset((
    "removed", "beat_down", "broker_down", "beat_or_scheduler", "not_dispatched",
    "no_consumer", "worker_lost", "task_hung", "task_failed", "two_beats", "task_retrying",
    "invalid"))
"""Every diagnosis an entry can have (``invalid``: its record is unreadable, said by the
reader); the monitors' notifications are checked against it."""

BEAT_DOWN_INTERVALS = 1.5
"""Beat counts as down when its heartbeat publish is this many of its intervals old: the
heartbeat's own late threshold."""


class Evidence(NamedTuple):
    """What the service heartbeat's keys say about the hops, read with the entries."""

    now_ms: int
    beat_published_ms: int | None  #: beat's last publish of the heartbeat (marker)
    beat_interval_s: float | None
    publish_failed_ms: int | None  #: beat's last refused publish, if after its last publish
    publish_error: str | None
    nodes: dict[str, int]  #: worker node -> its last node heartbeat (ms)
    node_stale_after_ms: int  #: a node heartbeat older than this is a dead node


class Judgement(NamedTuple):
    """An entry's state, the hop that broke (None when nothing did) and one line of why."""

    state: EntryState
    diagnosis: str | None
    reason: str


def _s(ms: float) -> str:
    return f"{max(ms, 0) / 1000:.1f}s"


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _beat_hop(ev: Evidence) -> tuple[str, str] | None:
    """``beat_down`` or ``broker_down`` when beat's marker says so; None when beat is fine."""
    if ev.publish_failed_ms is not None and (
            ev.beat_published_ms is None or ev.publish_failed_ms > ev.beat_published_ms):
        return "broker_down", (f"beat runs but the broker refused its publish "
                               f"{_s(ev.now_ms - ev.publish_failed_ms)} ago: "
                               f"{ev.publish_error or ''}".rstrip(": "))
    if ev.beat_published_ms is None:
        return "beat_down", "beat has recorded no publish"
    interval_ms = (ev.beat_interval_s or 10.0) * 1000
    age_ms = ev.now_ms - ev.beat_published_ms
    if age_ms > BEAT_DOWN_INTERVALS * interval_ms:
        return "beat_down", f"beat last published {_s(age_ms)} ago"
    return None


def judge(record: dict[str, Any], ev: Evidence) -> Judgement:
    """The state of the entry ``record`` at ``ev.now_ms`` (see the module's table)."""
    now = ev.now_ms
    removed = _num(record.get("removed_ms"))
    if removed is not None:
        return Judgement(EntryState.REMOVED, "removed",
                         f"left beat's schedule {_s(now - removed)} ago")
    grace_ms = (_num(record.get("grace_s")) or 0.0) * 1000
    run = record.get("run") if isinstance(record.get("run"), dict) else None
    next_due = _num(record.get("next_due_ms"))
    if next_due is not None and now > next_due + grace_ms:
        hop = _beat_hop(ev)
        late = f"due {_s(now - next_due)} ago, over its {_s(grace_ms)} grace, not dispatched"
        if hop is not None:
            return Judgement(EntryState.MISSED, hop[0], f"{late}: {hop[1]}")
        if ev.beat_published_ms is not None and ev.beat_published_ms <= next_due + grace_ms:
            # Beat has shown no life since the entry's deadline, nor is its own heartbeat
            # late yet: which one stopped is known within one of beat's intervals.
            return Judgement(EntryState.MISSED, "beat_or_scheduler",
                             f"{late}: beat has not published since (last "
                             f"{_s(now - ev.beat_published_ms)} ago): beat stopped, or its "
                             "scheduler skipped the entry")
        return Judgement(EntryState.MISSED, "not_dispatched",
                         f"{late}: beat runs but did not send it (a scheduler that skips or "
                         "lost the entry)")
    if run is not None:
        judged = _judge_run(record, run, ev, grace_ms)
        if judged is not None:
            return judged
    return Judgement(EntryState.PENDING, None, "watched; its first run is not due yet")


def _judge_run(record: dict[str, Any], run: dict[str, Any], ev: Evidence,
               grace_ms: float) -> Judgement | None:
    now = ev.now_ms
    dispatched = _num(run.get("dispatched_ms")) or 0.0
    started = _num(run.get("started_ms"))
    finished = _num(run.get("finished_ms"))
    outcome = run.get("outcome")
    if started is None and finished is None:
        waiting = _num(run.get("waiting_since_ms")) or dispatched
        if now - waiting > grace_ms:
            return _not_started(run, ev, now - waiting, grace_ms)
        return _before_start(record, now - dispatched)
    max_runtime = _num(record.get("max_runtime_s"))
    if started is not None and finished is None and max_runtime is not None \
            and now - started > max_runtime * 1000:
        return _overrun(run, ev, now - started, max_runtime)
    if finished is not None and outcome in ("failed", "revoked", "rejected"):
        what = outcome if outcome != "failed" else "raised"
        error = " ".join(str(x) for x in (run.get("error_type"), run.get("error")) if x)
        return Judgement(EntryState.FAILED, "task_failed",
                         f"the last run {what} {_s(now - finished)} ago"
                         + (f": {error}" if error else ""))
    duplicate = _num(record.get("duplicate_ms"))
    period_ms = (_num(record.get("period_s")) or 0.0) * 1000
    if duplicate is not None and now - duplicate <= 2 * period_ms + grace_ms:
        return Judgement(EntryState.DUPLICATE, "two_beats",
                         f"one due time was dispatched twice {_s(now - duplicate)} ago: two "
                         "beats run; run exactly one")
    if outcome == "retrying":
        error = " ".join(str(x) for x in (run.get("error_type"), run.get("error")) if x)
        return Judgement(EntryState.RETRYING, "task_retrying",
                         f"the last run raised and is retried (attempt "
                         f"{run.get('attempts', 1)})" + (f": {error}" if error else ""))
    if finished is None:
        return Judgement(EntryState.RUNNING, None, f"running for {_s(now - (started or now))} "
                                                   f"on {run.get('node') or 'a worker'}")
    return Judgement(EntryState.OK, None, f"the last run succeeded {_s(now - finished)} ago")


def _before_start(record: dict[str, Any], waited_ms: float) -> Judgement:
    """A run dispatched within its grace: the entry is as its previous run left it."""
    waiting = f"a run was dispatched {_s(waited_ms)} ago"
    last = record.get("last_outcome")
    if last in ("failed", "revoked", "rejected"):
        error = record.get("last_error")
        return Judgement(EntryState.FAILED, "task_failed", f"the previous run {last}"
                         + (f" ({error})" if error else "") + f"; {waiting}")
    if last == "succeeded":
        return Judgement(EntryState.OK, None, f"the previous run succeeded; {waiting}")
    return Judgement(EntryState.PENDING, None, f"{waiting}; no run has finished yet")


def _not_started(run: dict[str, Any], ev: Evidence, waited_ms: float,
                 grace_ms: float) -> Judgement:
    head = f"dispatched {_s(waited_ms)} ago, not started within its {_s(grace_ms)} grace"
    hop = _beat_hop(ev)
    if hop is not None and hop[0] == "broker_down":
        return Judgement(EntryState.NOT_STARTED, "broker_down", f"{head}: {hop[1]}")
    depth = run.get("depth")
    queued = f"; {depth} message(s) waiting in its queue" if type(depth) is int and depth else ""
    return Judgement(EntryState.NOT_STARTED, "no_consumer",
                     f"{head}{queued}: no worker consumes the entry's queue")


def _overrun(run: dict[str, Any], ev: Evidence, ran_ms: float, max_runtime_s: float) -> Judgement:
    head = f"running for {_s(ran_ms)}, over its {max_runtime_s:g}s max runtime"
    node = run.get("node")
    seen = ev.nodes.get(node) if isinstance(node, str) else None
    if isinstance(node, str) and (seen is None or ev.now_ms - seen > ev.node_stale_after_ms):
        return Judgement(EntryState.OVERRUN, "worker_lost",
                         f"{head}: its worker {node} stopped its node heartbeats (killed or "
                         "hung)")
    return Judgement(EntryState.OVERRUN, "task_hung",
                     f"{head}: its worker {node or '?'} is alive; the task itself hangs")
