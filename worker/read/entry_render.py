"""How beat entries look to people and machines: the one place an entry report becomes text.

``check --entry``'s Nagios line, ``status --entries``' table and JSON list, ``watch
--entries``' transitions. An entry's name, its failed run's message and its worker's node
are the user's text (or anyone's who can write to the store): every such field is shown
with its control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``), so a line stays one
line and a terminal is never driven by a name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.core.entries import ENTRY_SEVERITY, EntryState
from worker.read.entries import EntriesReport, EntryReport
from worker.read.render import NAGIOS_LABELS, escape, silence_json, silence_note

MISSING = "missing"
"""``check --entry``'s state for a name no entry of the service has: CRITICAL, exit 2."""

UNREACHABLE = "unreachable"
"""The state shown when the store could not be asked: UNKNOWN, exit 3."""

WATCHED_SHOWN = 5
"""A missing entry's line names at most this many of the entries that are watched."""

ENTRY_COLUMNS = ("ENTRY", "STATE", "DIAGNOSIS", "LAST_SUCCESS", "NEXT_DUE", "DURATION",
                 "QUEUE_WAIT", "REASON")
"""The columns of ``status --entries`` (``SERVICE`` goes first with ``--all``)."""


def quoted(name: str) -> str:
    """An entry name in double quotes, its quotes, backslashes and controls escaped."""
    return '"' + escape(name.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def nagios_text(text: str) -> str:
    """Text for a Nagios line: escaped, and ``|`` (which starts performance data) as ``¦``."""
    return escape(text).replace("|", "\u00a6")


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def span(ms: float) -> str:
    """A duration for people: ``120ms``, ``3.1s``, ``5m 3s``, ``2h 10m``, ``3d 4h``."""
    ms = max(ms, 0.0)
    if ms < 1000:
        return f"{ms:.0f}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    whole = round(s)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s"
    if whole < 86_400:
        return f"{whole // 3600}h {whole % 3600 // 60}m"
    return f"{whole // 86_400}d {whole % 86_400 // 3600}h"


def ago(now_ms: int | None, then: Any) -> str:
    """``3.1s ago``, or ``-`` when there is no such time."""
    when = _num(then)
    return "-" if now_ms is None or when is None else f"{span(now_ms - when)} ago"


def due(now_ms: int | None, then: Any) -> str:
    """``in 4.2s`` on the Redis clock, ``4.2s ago`` once it passed, ``-`` when unknown."""
    when = _num(then)
    if now_ms is None or when is None:
        return "-"
    return f"in {span(when - now_ms)}" if when >= now_ms else f"{span(now_ms - when)} ago"


def _ms(value: Any) -> str:
    number = _num(value)
    return "-" if number is None else span(number)


# --- check --entry ------------------------------------------------------------------------

def entry_line(service: str, entry: EntryReport, now_ms: int | None) -> str:
    """``OK - petsage entry "nightly export" ok: the last run succeeded 3.1s ago | ...``.

    Performance data: the age of the last success, the last run's duration and queue wait,
    each only when known. A silenced entry's line says so after its true state, as
    ``check`` says it of a silenced service: ``(silenced for 1h 59m: reason)``.
    """
    label = NAGIOS_LABELS[entry.state.exit_code]
    text = f"{escape(service)} entry {quoted(entry.name)} {entry.state.value}: {entry.reason}"
    if entry.diagnosis:
        text += f" [{entry.diagnosis}]"
    note = entry_silence_note(entry, now_ms)
    if note:
        text += f" ({note})"
    rec = entry.record
    perf = []
    success = _num(rec.get("last_success_ms"))
    if now_ms is not None and success is not None:
        perf.append(f"last_success={max(now_ms - success, 0) / 1000:.3f}s;;;0")
    for key, field in (("duration", "last_duration_ms"), ("queue_wait", "last_queue_wait_ms")):
        value = _num(rec.get(field))
        if value is not None:
            perf.append(f"{key}={max(value, 0):.0f}ms;;;0")
    line = f"{label} - {nagios_text(text)}"
    return f"{line} | {' '.join(perf)}" if perf else line


def watched_names(report: EntriesReport, limit: int = WATCHED_SHOWN) -> str:
    """``"a", "b" and 3 more``: the entries a service has, by name, the first few."""
    names = sorted(e.name for e in report.entries)
    shown = ", ".join(quoted(n) for n in names[:limit])
    more = len(names) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def missing_reason(report: EntriesReport, name: str) -> str:
    """Why ``name`` is not found: which entries the service does have, or that it has none."""
    if not report.entries:
        return (f"no beat entry is watched for service {report.service} (is "
                "install_heartbeat(app) in beat's app, and does its schedule have entries?)")
    count = len(report.entries)
    return (f"no entry of that name is watched for service {report.service}; "
            f"{count} entr{'y is' if count == 1 else 'ies are'}: {watched_names(report)}")


def missing_line(service: str, name: str, reason: str) -> str:
    """``CRITICAL - petsage entry "nightly exprt" missing: ...``."""
    return nagios_text(f"CRITICAL - {service} entry {quoted(name)} {MISSING}: {reason}")


def unreachable_line(service: str, name: str, reason: str) -> str:
    """``UNKNOWN - petsage entry "nightly export" unreachable: ...``."""
    return nagios_text(f"UNKNOWN - {service} entry {quoted(name)} {UNREACHABLE}: {reason}")


def entry_silence_note(entry: EntryReport, now_ms: int | None) -> str | None:
    """``silenced for 1h 59m: reason`` while the entry is silenced (``silence_note``, the
    service's own), its reason escaped; else None."""
    if entry.silence is None or now_ms is None:
        return None
    return escape(silence_note(entry.silence, now_ms))


# --- JSON -----------------------------------------------------------------------------------

def entry_json(service: str, entry: EntryReport, now_ms: int | None) -> dict[str, Any]:
    """``EntryReport.as_json()`` with the service, the exit code and the entry's
    ``silence`` (None, or its ``until_ms``, ``reason`` and ``remaining_s``, as ``check``
    gives a service's)."""
    silence = None if now_ms is None else silence_json(entry.silence, now_ms)
    return {"service": service, **entry.as_json(), "exit_code": entry.state.exit_code,
            "silence": silence}


def problem_json(service: str, name: str | None, state: str, reason: str,
                 exit_code: int) -> dict[str, Any]:
    """A JSON object for what is no entry report: a missing entry, a store not asked."""
    return {"service": service, "name": name, "state": state, "diagnosis": None,
            "reason": reason, "exit_code": exit_code, "silence": None}


# --- status --entries -----------------------------------------------------------------------

def entry_row(entry: EntryReport, now_ms: int | None) -> tuple[str, ...]:
    """One row of ``status --entries`` (without the service); a silenced entry's reason
    ends with ``(silenced for 1h 59m: reason)``."""
    rec = entry.record
    note = entry_silence_note(entry, now_ms)
    return (
        escape(entry.name), entry.state.value, entry.diagnosis or "-",
        ago(now_ms, rec.get("last_success_ms")), due(now_ms, rec.get("next_due_ms")),
        _ms(rec.get("last_duration_ms")), _ms(rec.get("last_queue_wait_ms")),
        escape(entry.reason) + (f" ({note})" if note else ""),
    )


def unreachable_row(reason: str) -> tuple[str, ...]:
    """The one row of a store that could not be asked."""
    return ("*", UNREACHABLE, "-", "-", "-", "-", "-", escape(reason))


def entries_table(rows: list[tuple[str, ...]], *, with_service: bool = False) -> str:
    """Left-aligned columns, the last one not padded."""
    columns = ("SERVICE", *ENTRY_COLUMNS) if with_service else ENTRY_COLUMNS
    all_rows = [columns, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(columns) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)),
                                row[-1]]).rstrip() for row in all_rows)


_RANK = {state: i for i, state in enumerate(ENTRY_SEVERITY)}


def worst_first(pairs: list[tuple[str, EntryReport]]) -> list[tuple[str, EntryReport]]:
    """(service, entry) pairs of several services, worst state first, then by name."""
    return sorted(pairs, key=lambda p: (_RANK[p[1].state], p[0], p[1].name))


# --- watch --entries ------------------------------------------------------------------------

def entry_transition(service: str, name: str | None, old: str | None, *, new: str,
                     diagnosis: str | None, reason: str, exit_code: int) -> dict[str, Any]:
    """An entry's state change as ``watch --entries`` reports it (JSON) and hands to a hook."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "service": service, "entry": name, "old_state": old or "unknown", "new_state": new,
        "diagnosis": diagnosis, "reason": reason, "exit_code": exit_code,
    }


def entry_transition_line(event: dict[str, Any]) -> str:
    """``2026-...+00:00 petsage entry "raises" ok -> failed [task_failed] (the last run ...)``."""
    name = "*" if event["entry"] is None else quoted(event["entry"])
    diagnosis = f" [{event['diagnosis']}]" if event["diagnosis"] else ""
    return escape(f"{event['time']} {event['service']} entry {name} {event['old_state']} -> "
                  f"{event['new_state']}{diagnosis} ({event['reason']})")


def state_exit_code(state: str) -> int:
    """The exit code of an entry state, or of ``missing`` (2) and ``unreachable`` (3)."""
    if state == UNREACHABLE:
        return 3
    if state == MISSING:
        return 2
    return EntryState(state).exit_code
