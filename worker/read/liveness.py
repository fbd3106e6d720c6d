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

A worker node is at fault when beat has been publishing without a gap for longer than the
stale threshold since the node's last node heartbeat (``since_ms`` in beat's marker): a
beat that has just come back gives every worker a whole threshold to run a heartbeat.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from worker.core.names import default_queue
from worker.core.settings import DEFAULT_INTERVAL_S
from worker.core.states import State, Thresholds, state_for
from worker.read.diagnosis import beat_seen_ms, publish_failure
from worker.read.nodes import NodeReport, matches, node_summaries
from worker.read.reader import HeartbeatReport, component_thresholds, positive_number


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


def node_verdict(report: HeartbeatReport, wanted: str, *, liveness: bool,
                 late_after_s: float | None = None,
                 stale_after_s: float | None = None) -> Verdict:
    """Judge the worker node(s) named ``wanted`` (a node name, or its host part)."""
    what = f"{report.service} node {wanted}"
    if report.state is State.UNREACHABLE or report.now_ms is None:
        return _unreachable(report, what, liveness)
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
    return _node_liveness(report, worst, thresholds, text, fields)


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
                 stale_after_s: float | None = None) -> Verdict:
    """Judge beat by its marker: when it last published, and whether a second beat runs."""
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
    return Verdict(code, text, fields)
