"""How reports look to people and machines: the one place a report becomes text.

Nagios lines, table rows, JSON summaries, ``run``'s heartbeat lines and ``watch``'s
transitions. A service's reason, its checks' names and messages, beat's publish error and
a silence's reason are anyone's text who can write to the store: every line for people
shows them through ``escape`` (control characters as ``\\n``, ``\\x1b``, ``\\u202e``), so a
line stays one line and a terminal is never driven by a name. JSON needs no escaping of
its own: ``json.dumps`` escapes controls.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from worker.core.states import State
from worker.read.diagnosis import publish_failure
from worker.read.nodes import node_counts, node_summaries
from worker.read.reader import HeartbeatReport
from worker.read.silence import Silence

if TYPE_CHECKING:
    from worker.read.incidents import IncidentSummary

NAGIOS_LABELS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
"""Nagios plugin status words by exit code."""


def escape(text: object) -> str:
    """``text`` with every non-printable character escaped as Python writes it (``\\n``):
    the one escape of user text in lines for people and in log lines."""
    raw = str(text)
    if raw.isprintable():
        return raw
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in raw)


def _age_s(now_ms: int | None, then_ms: Any) -> float | None:
    if now_ms is None or type(then_ms) is not int:
        return None
    return round(max(now_ms - then_ms, 0) / 1000, 3)


def beat_summary(marker: dict[str, Any], now_ms: int | None) -> dict[str, Any]:
    """Beat's marker for JSON: ages on the reader's Redis clock reading, and a refused publish."""
    failure = publish_failure(marker)
    return {
        "published_age_s": _age_s(now_ms, marker.get("published_at_ms")),
        "seq": marker.get("seq"),
        "queue_depth": marker.get("queue_depth"),
        "publish_failed_age_s": None if failure is None else _age_s(now_ms, failure[0]),
        "publish_error": None if failure is None else failure[1],
    }


def summary(report: HeartbeatReport) -> dict[str, Any]:
    """A flat JSON-ready summary: state, age, thresholds, reason and the payload's key fields."""
    payload: dict[str, Any] = cast(dict[str, Any], report.payload or {})
    worker = payload.get("worker") or {}
    return {
        "service": report.service,
        "state": report.state.value,
        "exit_code": report.exit_code,
        "age_s": None if report.age_s is None else round(report.age_s, 3),
        "late_after_s": report.thresholds.late_after_s if report.thresholds else None,
        "stale_after_s": report.thresholds.stale_after_s if report.thresholds else None,
        "reason": report.reason,
        "diagnosis": report.diagnosis,
        "clock_offset_ms": payload.get("clock_offset_ms"),
        "nodes": node_summaries(report.nodes),
        "second_beat": report.second_beat,
        "beat": None if report.beat is None else beat_summary(report.beat, report.now_ms),
        "heartbeat": None if not payload else {
            "seq": payload.get("seq"),
            "ts_ms": payload.get("ts_ms"),
            "timestamp": payload.get("timestamp"),
            "status": payload.get("status"),
            "message": payload.get("message"),
            "worker": worker.get("node") if isinstance(worker, dict) else None,
            "queue_lag_ms": payload.get("queue_lag_ms"),
            "duration_ms": payload.get("duration_ms"),
            "backlog": payload.get("backlog"),
        },
    }


def _ms(value: Any, unknown: str = "-") -> str:
    """Milliseconds, or ``unknown`` when the payload did not say (null and absent alike)."""
    return unknown if not isinstance(value, int | float) else f"{value:.0f}ms"


def nagios_line(report: HeartbeatReport, note: str | None = None) -> str:
    """``OK - petsage heartbeat 2.1s old, seq 42 | age=2.1s;15;30;0 lag=3ms;;;0 ...``.

    ``note`` (a silence) goes after the state, which it never changes: a probe never lies.
    """
    label = NAGIOS_LABELS[report.exit_code]
    payload = report.payload
    if report.state is State.FRESH and payload is not None and report.age_s is not None:
        text = (f"{escape(report.service)} heartbeat {report.age_s:.1f}s old, "
                f"seq {escape(payload['seq'])}")
    else:
        text = f"{escape(report.service)} heartbeat {report.state.value}: {escape(report.reason)}"
        if payload is not None:
            text += f", seq {escape(payload['seq'])}"
    if report.diagnosis:
        text += f" [{report.diagnosis}]"
    if note:
        text += f" ({escape(note)})"
    if report.age_s is None or report.thresholds is None or payload is None:
        return f"{label} - {text}"
    perf = (f"age={report.age_s:.3f}s;{report.thresholds.late_after_s:g};"
            f"{report.thresholds.stale_after_s:g};0 seq={payload['seq']}c")
    if isinstance(payload.get("queue_lag_ms"), int | float):
        perf += f" lag={payload['queue_lag_ms']:.0f}ms;;;0"
    if isinstance(payload.get("duration_ms"), int | float):
        perf += f" duration={payload['duration_ms']:.0f}ms;;;0"
    return f"{label} - {text} | {perf}"


TABLE_COLUMNS = ("SERVICE", "STATE", "DIAGNOSIS", "AGE", "SEQ", "WORKER", "NODES", "LAG",
                 "STATUS", "REASON")


def table_row(report: HeartbeatReport) -> tuple[str, ...]:
    """One row of the ``status`` table."""
    p: dict[str, Any] = cast(dict[str, Any], report.payload or {})
    worker = p.get("worker") if isinstance(p.get("worker"), dict) else {}
    return (
        escape(report.service),
        report.state.value,
        report.diagnosis or "-",
        "-" if report.age_s is None else f"{report.age_s:.1f}s",
        escape(p.get("seq", "-")),
        escape((worker or {}).get("node", "-")),
        escape(node_counts(report.nodes)) if report.nodes else "-",
        _ms(p.get("queue_lag_ms")),
        escape(p.get("status", "-")),
        escape(report.reason),
    )


def render_table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns; the last column is not padded."""
    all_rows = [TABLE_COLUMNS, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(TABLE_COLUMNS) - 1)]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def heartbeat_line(report: HeartbeatReport) -> str:
    """One line per heartbeat, as ``run`` prints them: service, seq, state, age, lag."""
    payload = report.payload
    if payload is None:
        return f"heartbeat {escape(report.service)}: {report.state.value} ({escape(report.reason)})"
    age = "?" if report.age_s is None else f"{report.age_s:.2f}s"
    return (f"heartbeat {escape(report.service)} seq={escape(payload['seq'])} "
            f"{report.state.value} age={age} lag={_ms(payload.get('queue_lag_ms'), '?')} "
            f"duration={_ms(payload.get('duration_ms'), '?')} "
            f"status={escape(payload['status'])}")


def transition_event(old: State | None, report: HeartbeatReport) -> dict[str, Any]:
    """A state change as ``watch`` reports it (JSON) and hands it to its hook."""
    payload: dict[str, Any] = cast(dict[str, Any], report.payload or {})
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "service": report.service,
        "old_state": old.value if old else "unknown",
        "new_state": report.state.value,
        "age_s": None if report.age_s is None else round(report.age_s, 3),
        "seq": payload.get("seq"),
        "reason": report.reason,
        "diagnosis": report.diagnosis,
        "exit_code": report.exit_code,
    }


def transition_line(event: dict[str, Any]) -> str:
    """A state change as one line of text, its service and reason escaped."""
    return escape(f"{event['time']} {event['service']} {event['old_state']} -> "
                  f"{event['new_state']} ({event['reason']})")


def _span(seconds: float) -> str:
    """A duration for people: ``42s``, ``5m 3s``, ``2h 10m``, ``3d 4h``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86_400}d {s % 86_400 // 3600}h"


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def silence_note(silence: Silence, now_ms: int) -> str:
    """``silenced for 1h 59m: database migration``: what probes add to the true state."""
    why = f": {silence.reason}" if silence.reason else ""
    return f"silenced for {_span(max(silence.until_ms - now_ms, 0) / 1000)}{why}"


def silence_json(silence: Silence | None, now_ms: int) -> dict[str, Any] | None:
    """``check --json``'s ``silence``: ``until_ms``, ``reason`` and ``remaining_s``, or None."""
    if silence is None:
        return None
    return {"until_ms": silence.until_ms, "reason": silence.reason,
            "remaining_s": round((silence.until_ms - now_ms) / 1000, 3)}


def incident_lines(record: IncidentSummary, now_ms: int) -> list[str]:
    """What ``status SERVICE`` prints under its table: uptime, outages, MTTR, silence."""
    # Here, not at the top: ``check`` renders its line with this module and reads no
    # incident stream, so it never pays for importing them.
    from worker.read.incidents import WINDOWS

    if record.silence is not None:
        lines = [f"{escape(silence_note(record.silence, now_ms))} (notifications held back, "
                 "alert rules quiet)"]
    else:
        lines = []
    if not record.monitored:
        return [*lines, "uptime: unknown, no monitor has judged this service yet "
                        "(petsage-heartbeat monitor)"]
    parts = []
    for label, _ in WINDOWS:
        ratio = record.uptime[label]
        share = "-" if ratio is None else f"{100 * ratio:.3f}%"
        mttr = record.mttr_s[label]
        count = record.outages[label]
        parts.append(f"{label} {share} ({count} outage{'' if count == 1 else 's'}"
                     f"{'' if mttr is None else ', MTTR ' + _span(mttr)})")
    watched = _span(record.covered_s["30d"])
    lines.append(f"uptime: {'; '.join(parts)}; monitored for {watched} of 30d")
    for outage in record.recent[:5]:
        end = now_ms if outage.ended_ms is None else outage.ended_ms
        status = "ongoing" if outage.ended_ms is None else "recovered"
        diagnosis = f" [{escape(outage.diagnosis)}]" if outage.diagnosis else ""
        lines.append(f"outage {_when(outage.started_ms)} {_span((end - outage.started_ms) / 1000)}"
                     f" {status}{diagnosis}")
    return lines
