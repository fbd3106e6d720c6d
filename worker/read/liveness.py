"""Probes of one component: a worker node (``check --node``) or beat (``check --beat``).

With ``--liveness`` a probe fails only when the fault is in the probed component, so that
Kubernetes restarts only what broke:

| fault | worker node liveness | beat liveness |
|---|---|---|
| this worker hung, dead or not consuming the queue | fail | pass |
| another worker's fault | pass | pass |
| beat down | pass (no heartbeat to run) | fail |
| broker down | pass (beat can't publish) | pass while beat notes its refused publishes |
| store unreachable | pass (can't tell) | pass (can't tell) |
| store can't take writes (a replica, loading, full) | pass (can't tell) | pass (can't tell) |
| store (re)started less than a threshold ago | pass (can't tell yet) | the same |
| its record absent, the store taking writes | fail once absent over the threshold (1) | the same |

(1) since this probe first found it absent (``worker.read.absence``).

A worker node is at fault when beat has been publishing without a gap for longer than the
stale threshold since the node's last node heartbeat (``since_ms`` in beat's marker): a
beat that has just come back gives every worker a whole threshold to run a heartbeat.

Before failing, a liveness probe looks at the store (``StoreEvidence``, from one ``INFO``
and the fleet index's size): a component's record that is absent or old on a store that
can't take its writes, or that started less than a threshold ago, says nothing about the
component.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from worker.core.names import default_queue
from worker.core.settings import DEFAULT_INTERVAL_S
from worker.core.states import State, Thresholds, state_for
from worker.read.diagnosis import beat_seen_ms, publish_failure
from worker.read.nodes import NodeReport, matches, node_summaries
from worker.read.reader import HeartbeatReport, component_thresholds, positive_number
from worker.read.store_writes import refusal

if TYPE_CHECKING:  # the absence clock's module is imported by the probes that run it
    from worker.read.absence import Absence


class StoreEvidence(NamedTuple):
    """What the store says of itself (``INFO``, the fleet index), for a liveness probe."""

    cannot_write: str | None = None  #: why no component can write to it now, or None
    uptime_s: float | None = None  #: seconds since the store (re)started; None: unknown
    run_id: str = ""  #: the store process's id (a new one after each restart)
    empty: bool = False  #: no heartbeat in the fleet index: a store restarted empty


def store_evidence(info: dict[str, str], index_size: int | None) -> StoreEvidence:
    """Judge ``INFO`` fields and the fleet index's size; an empty ``info`` says nothing.

    Evidence that the store can't take writes: ``role:slave`` (a replica; its
    ``master_link_status`` is said), ``loading:1`` (loading its data set), or memory full
    under ``noeviction`` (``store_writes.refusal``).
    """
    cannot: str | None = None
    if info.get("role") in ("slave", "replica"):
        link = info.get("master_link_status", "?")
        sync = ", resyncing" if info.get("master_sync_in_progress") == "1" else ""
        cannot = (f"the store is a read-only replica of {info.get('master_host', '?')}:"
                  f"{info.get('master_port', '?')} (link {link}{sync})")
    elif info.get("loading") == "1":
        cannot = "the store is loading its data set"
    else:
        cannot = refusal(info)
    try:
        uptime: float | None = float(info["uptime_in_seconds"])
    except (KeyError, ValueError):
        uptime = None
    return StoreEvidence(cannot, uptime, info.get("run_id", "")[:64], index_size == 0)


def _cannot_tell(store: StoreEvidence | None, absence: Absence | None,
                 thresholds: Thresholds, *, absent: bool) -> str | None:
    """Why a liveness probe can't blame its component for an absent or old record, or None.

    ``absent``: the record is missing (the absence clock applies), else it is old.
    """
    if store is not None and store.cannot_write is not None:
        return f"cannot tell: {store.cannot_write}, so no component can write its record there"
    if (store is not None and store.uptime_s is not None
            and store.uptime_s <= thresholds.stale_after_s):
        empty = ", empty" if store.empty else ""
        return (f"cannot tell yet: the store (re)started {store.uptime_s:g}s ago{empty}, "
                f"within the {thresholds.stale_after_s:g}s threshold")
    if not absent:
        return None
    if absence is None or absence.absent_s is None:
        problem = "" if absence is None else absence.problem
        return f"cannot tell: {problem or 'no liveness state file'}"
    if absence.absent_s <= thresholds.stale_after_s:
        empty = " (the store holds no heartbeat: restarted empty?)" if (
            store is not None and store.empty) else ""
        return (f"cannot tell yet: absent{empty} for {absence.absent_s:.1f}s since this probe "
                f"first found it so, within the {thresholds.stale_after_s:g}s threshold")
    return None


class Verdict(NamedTuple):
    """A component probe's answer: its exit code, one line of text, and JSON fields."""

    exit_code: int
    text: str
    fields: dict[str, Any]


def _thresholds(report: HeartbeatReport, late_after_s: float | None,
                stale_after_s: float | None) -> Thresholds:
    return component_thresholds(report, report.beat).overridden(late_after_s, stale_after_s)


def _beat_age_s(report: HeartbeatReport, *, refused_too: bool = False) -> float | None:
    """Seconds since beat's last publish (or, ``refused_too``, its last refused one)."""
    seen_ms = (beat_seen_ms(report.beat) if refused_too
               else None if report.beat is None else report.beat.get("published_at_ms"))
    if seen_ms is None or report.now_ms is None:
        return None
    return max(report.now_ms - seen_ms, 0) / 1000


def _beat_on_time(report: HeartbeatReport) -> bool:
    """Beat published within its own late threshold (1.5 of its own interval)."""
    age_s = _beat_age_s(report)
    if age_s is None or report.beat is None:
        return False
    interval_s = positive_number(report.beat.get("interval_s"), DEFAULT_INTERVAL_S)
    return age_s <= Thresholds.for_interval(interval_s).late_after_s


def _unreachable(report: HeartbeatReport, what: str, liveness: bool) -> Verdict:
    fields = {"state": State.UNREACHABLE.value, "reason": report.reason}
    if liveness:
        return Verdict(0, f"{what}: store unreachable, tolerated by liveness (a store fault is "
                          f"not this component's): {report.reason}", fields)
    return Verdict(3, f"{what} unreachable: {report.reason}", fields)


def name_part_only(report: HeartbeatReport, wanted: str) -> str | None:
    """The one line refusing ``wanted`` when it is only the part before a node's ``@``.

    That part (``heartbeat`` in ``heartbeat@pod-7``) is shared by every pod of a
    deployment, so it never names one node: matching it would let one hung pod's record
    restart another. None when ``wanted`` matches a node, or is no node's name part.
    """
    if "@" in wanted or any(matches(n.node, wanted) for n in report.nodes):
        return None
    named = [n.node for n in report.nodes if n.node.partition("@")[0] == wanted]
    if not named:
        return None
    host = named[0].partition("@")[2]
    return (f"petsage-heartbeat: --node {wanted} is the name part of {named[0]}"
            f"{f' and {len(named) - 1} other node(s)' if len(named) > 1 else ''}, which "
            f"names no one node; accepted: the full node name ({named[0]}) or its host part "
            f"({host})")


def node_verdict(report: HeartbeatReport, wanted: str, *, liveness: bool,
                 late_after_s: float | None = None,
                 stale_after_s: float | None = None,
                 store: StoreEvidence | None = None,
                 absence: Absence | None = None) -> Verdict:
    """Judge the worker node(s) named ``wanted`` (a node name, or its host part).

    ``store`` and ``absence`` (the store's own evidence and this probe's absence clock,
    asked by a liveness probe) keep a liveness probe from blaming the worker for a record
    the store lost or can't take.
    """
    what = f"{report.service} node {wanted}"
    if report.state is State.UNREACHABLE or report.now_ms is None:
        return _unreachable(report, what, liveness)
    refused = name_part_only(report, wanted)
    if refused is not None:
        return Verdict(3, refused, {"node": wanted, "state": None, "reason": refused})
    thresholds = _thresholds(report, late_after_s, stale_after_s)
    found = [n for n in report.nodes if matches(n.node, wanted)]
    nodes = [NodeReport(n.node, state_for(n.age_s, "ok", thresholds), n.age_s, n.ts_ms)
             for n in found]
    worst = max(nodes, key=lambda n: n.age_s) if nodes else None
    fields: dict[str, Any] = {
        "node": wanted, "nodes": node_summaries(tuple(nodes)),
        "age_s": None if worst is None else round(worst.age_s, 3),
        "late_after_s": thresholds.late_after_s, "stale_after_s": thresholds.stale_after_s,
    }
    if worst is None:
        state, text = State.MISSING, f"{what} missing: no node heartbeat recorded for it"
    else:
        state = worst.state
        text = f"{what} ({worst.node}) {state.value}: last node heartbeat {worst.age_s:.1f}s ago"
        if state is not State.FRESH:
            limit = thresholds.stale_after_s if state is State.STALE else thresholds.late_after_s
            text += f", over {limit:g}s"
    fields["state"] = state.value
    if not liveness:
        fields["reason"] = text
        return Verdict(state.exit_code, text, fields)
    verdict = _node_liveness(report, worst, thresholds, text, fields)
    if verdict.exit_code == 2:
        why = _cannot_tell(store, absence, thresholds, absent=worst is None)
        if why is not None:
            text = f"{text}; {why}: tolerated by liveness"
            return Verdict(0, text, {**fields, "reason": text})
    return verdict


def _node_liveness(report: HeartbeatReport, worst: NodeReport | None, thresholds: Thresholds,
                   text: str, fields: dict[str, Any]) -> Verdict:
    assert report.now_ms is not None
    if not _beat_on_time(report):
        age_s = _beat_age_s(report)
        beat = "has recorded no publish" if age_s is None else f"last published {age_s:.1f}s ago"
        why = f"{text}; beat {beat}: not this worker's fault"
        fields["reason"] = why
        return Verdict(0, why, fields)
    assert report.beat is not None
    since_ms = max(int(report.beat.get("since_ms") or report.beat["published_at_ms"]),
                   worst.ts_ms if worst is not None else 0)
    waited_s = max(report.now_ms - since_ms, 0) / 1000
    if waited_s > thresholds.stale_after_s:
        why = (f"{text}; beat has published for {waited_s:.1f}s since, over "
               f"{thresholds.stale_after_s:g}s: this worker is stuck, dead or not consuming "
               f"queue {report.beat.get('queue', default_queue(report.service))}")
        fields["reason"] = why
        return Verdict(2, why, fields)
    fields["reason"] = text
    return Verdict(0, text, fields)


def beat_verdict(report: HeartbeatReport, *, liveness: bool,
                 late_after_s: float | None = None,
                 stale_after_s: float | None = None,
                 store: StoreEvidence | None = None,
                 absence: Absence | None = None) -> Verdict:
    """Judge beat by its marker: when it last published, and whether a second beat runs.

    With ``liveness`` it fails only for a marker older than the threshold, or absent for
    longer than the threshold since this probe first found it so (``absence``), on a
    store that takes writes and ran for the whole threshold (``store``); otherwise it
    passes, saying it cannot tell.
    """
    what = f"{report.service} beat"
    if report.state is State.UNREACHABLE or report.now_ms is None:
        return _unreachable(report, what, liveness)
    thresholds = _thresholds(report, late_after_s, stale_after_s)
    age_s = _beat_age_s(report, refused_too=True)
    failure = publish_failure(report.beat)
    fields: dict[str, Any] = {
        "age_s": None if age_s is None else round(age_s, 3),
        "late_after_s": thresholds.late_after_s, "stale_after_s": thresholds.stale_after_s,
        "second_beat": report.second_beat,
        "seq": None if report.beat is None else report.beat.get("seq"),
    }
    if age_s is None:
        state, text = State.MISSING, f"{what} missing: beat has recorded no publish"
    else:
        state = state_for(age_s, "ok", thresholds)
        text = f"{what} {state.value}: last published {age_s:.1f}s ago"
        if failure is not None:
            text = (f"{what} {state.value}: running, but the broker refused its last publish "
                    f"{age_s:.1f}s ago: {failure[1]}")
            fields["publish_error"] = failure[1]
        if state is not State.FRESH:
            limit = thresholds.stale_after_s if state is State.STALE else thresholds.late_after_s
            text += f", over {limit:g}s"
    code = state.exit_code
    if report.second_beat is not None:
        text += f"; two beats publish (the other is {report.second_beat}): run exactly one"
        code = max(code, 1)
    fields.update(state=state.value, reason=text)
    if liveness:  # only a beat that stopped publishing is restarted; a second one is a warning
        code = 2 if state in (State.STALE, State.MISSING) else 0
        why = None if code == 0 else _cannot_tell(store, absence, thresholds,
                                                  absent=state is State.MISSING)
        if why is not None:
            code, text = 0, f"{text}; {why}: tolerated by liveness"
            fields["reason"] = text
    return Verdict(code, text, fields)
