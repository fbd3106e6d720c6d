"""The dashboard page: one row per service and a chart of queue lag and run time, then
the beat entries of each service that has any.

Rendered on the server as plain HTML and inline SVG (no framework, nothing loaded from
the internet), so it reads without JavaScript; a few lines of script re-fetch the rows
every few seconds, and without script a ``<meta refresh>`` reloads the page.

The page's one ``<style>`` and one ``<script>`` are constants, allowed by their SHA-256 in
its Content-Security-Policy (``CSP``); no element has a ``style`` attribute (states are
coloured by class), so the policy allows no other script or style at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from worker.core.entries import EntryState
from worker.core.states import State
from worker.read.entries import EntriesReport, EntryReport
from worker.read.entry_scrape import EntriesFleet, last_run_ms
from worker.read.incidents import IncidentSummary
from worker.read.nodes import node_counts
from worker.read.reader import HeartbeatReport
from worker.read.silence import Silence

REFRESH_S = 3
"""How often the page refreshes its rows."""

HISTORY_POINTS = 60
"""Heartbeats per service drawn in the chart."""

MAX_ROWS = 200
"""Services shown, worst first; the others are counted in one row (``/api/heartbeats``
pages through them all)."""

_COLOURS = {
    State.FRESH: "#1a7f37", State.LATE: "#bf8700", State.STALE: "#cf222e",
    State.MISSING: "#8250df", State.INVALID: "#6e7781", State.UNREACHABLE: "#24292f",
}


_ENTRY_COLOURS = {
    EntryState.OK: "#1a7f37", EntryState.PENDING: "#6e7781", EntryState.RUNNING: "#0969da",
    EntryState.RETRYING: "#bf8700", EntryState.DUPLICATE: "#bf8700",
    EntryState.FAILED: "#cf222e", EntryState.OVERRUN: "#cf222e",
    EntryState.NOT_STARTED: "#cf222e", EntryState.MISSED: "#cf222e",
    EntryState.REMOVED: "#8250df",
}


def _fmt_ms(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.0f} ms"


def chart(points: Sequence[dict[str, Any]], width: int = 180, height: int = 36) -> str:
    """An inline SVG with two lines: queue lag (blue) and duration (orange), oldest left."""
    if len(points) < 2:
        return '<span class="muted">-</span>'
    series = {name: [float(p.get(name) or 0.0) for p in points]
              for name in ("lag_ms", "duration_ms")}
    top = max(max(values) for values in series.values()) or 1.0
    step = width / (len(points) - 1)
    lines = []
    for name, colour in (("lag_ms", "#0969da"), ("duration_ms", "#fb8500")):
        coords = " ".join(f"{i * step:.1f},{height - 2 - v / top * (height - 4):.1f}"
                          for i, v in enumerate(series[name]))
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{coords}"/>')
    title = f"queue lag (blue) and duration (orange), max {top:.0f} ms"
    return (f'<svg class="chart" width="{width}" height="{height}" role="img" '
            f'aria-label="{title}"><title>{title}</title>{"".join(lines)}</svg>')


def _nodes_cell(report: HeartbeatReport) -> str:
    """Fresh nodes of total, the ones that are not named; a second beat flagged."""
    text = node_counts(report.nodes) if report.nodes else "-"
    cell = f'<td class="nodes">{html.escape(text)}'
    if report.second_beat is not None:
        cell += '<br><span class="warn">two beats publish</span>'
    return cell + "</td>"


TIMELINE_MS = 86_400_000
"""The outage timeline covers the last 24 hours."""


def timeline(record: IncidentSummary | None, now_ms: int, width: int = 160,
             height: int = 14) -> str:
    """The last 24 hours as a bar: each outage a red stretch, the unwatched part grey;
    under it uptime, outages and MTTR over 24 h. ``-`` before any monitor judged it."""
    if record is None or not record.monitored:
        return '<td class="muted" title="no monitor has judged this service">-</td>'
    start_ms = now_ms - TIMELINE_MS

    def x(ms: int) -> float:
        return round((min(max(ms, start_ms), now_ms) - start_ms) / TIMELINE_MS * width, 1)

    parts = []
    if record.first_ms is not None and record.first_ms > start_ms:
        parts.append(f'<rect x="0" y="0" width="{x(record.first_ms)}" height="{height}" '
                     'fill="#d0d7de"/>')
    titles = []
    for outage in record.recent:
        end = now_ms if outage.ended_ms is None else outage.ended_ms
        if end <= start_ms:
            continue
        # At least 2 px, inside the bar: an outage that began a moment ago still shows.
        left = min(x(outage.started_ms), width - 2.0)
        length_s = (end - outage.started_ms) / 1000
        status = "ongoing" if outage.ended_ms is None else "recovered"
        label = (f"{datetime.fromtimestamp(outage.started_ms / 1000, UTC):%H:%M:%S}Z "
                 f"{length_s:.0f} s {status} {outage.diagnosis or ''}").strip()
        titles.append(label)
        parts.append(f'<rect class="outage" x="{left}" y="0" '
                     f'width="{max(x(end) - left, 2.0)}" height="{height}" fill="#cf222e">'
                     f"<title>{html.escape(label)}</title></rect>")
    ratio = record.uptime["24h"]
    mttr = record.mttr_s["24h"]
    count = record.outages["24h"]
    text = (f"{'-' if ratio is None else f'{100 * ratio:.2f}%'} · "
            f"{count} outage{'' if count == 1 else 's'}"
            + ("" if mttr is None else f" · MTTR {mttr:.0f} s"))
    bar = (f'<svg class="timeline" width="{width}" height="{height}" role="img" '
           f'aria-label="outages, last 24 h: {html.escape("; ".join(titles) or "none")}">'
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#1a7f37"/>'
           f'{"".join(parts)}</svg>')
    return f'<td class="uptime">{bar}<br><span class="muted">{text}</span></td>'


def _state_cell(report: HeartbeatReport, record: IncidentSummary | None, now_ms: int) -> str:
    cell = (f'<td><span class="state st-{report.state.value}">'
            f"{report.state.value}</span>")
    silence = None if record is None else record.silence
    if silence is not None:
        cell += _silenced(silence, now_ms)
    return cell + "</td>"


def _silenced(silence: Silence, now_ms: int) -> str:
    """``silenced 12 min more: reason`` under a state: a service's or an entry's silence."""
    left_s = max(silence.until_ms - now_ms, 0) / 1000
    left = f"{left_s:.0f} s" if left_s < 120 else f"{left_s / 60:.0f} min"
    why = f": {silence.reason}" if silence.reason else ""
    return f'<br><span class="silenced">silenced {left} more{html.escape(why)}</span>'


def rows(reports: Sequence[HeartbeatReport], histories: dict[str, list[dict[str, Any]]], *,
         store_problem: str | None = None,
         records: dict[str, IncidentSummary] | None = None, now_ms: int = 0,
         omitted: int = 0) -> str:
    """The ``<tbody>`` content: one row per service, worst first; ``omitted`` services
    (the healthiest, past ``MAX_ROWS``) counted in a last row.

    When the store could not be asked, one row says so and why: nothing is known about the
    fleet then, so no "nobody published" row (that would claim the fleet is empty).
    """
    if store_problem is not None:
        return ('<tr data-state="unreachable"><td colspan="12" class="banner">'
                f"store unreachable: {html.escape(store_problem)}</td></tr>")
    out = []
    for report in reports:
        p: dict[str, Any] = cast(dict[str, Any], report.payload or {})
        worker = p.get("worker") if isinstance(p.get("worker"), dict) else {}
        cells = [
            f'<td class="service">{html.escape(report.service)}</td>',
            _state_cell(report, (records or {}).get(report.service), now_ms),
            f"<td>{html.escape(report.diagnosis or '-')}</td>",
            "<td>-</td>" if report.age_s is None else f"<td>{report.age_s:.1f} s</td>",
            f"<td>{html.escape(str(p.get('seq', '-')))}</td>",
            f"<td>{html.escape(str((worker or {}).get('node', '-')))}</td>",
            _nodes_cell(report),
            f"<td>{_fmt_ms(p.get('queue_lag_ms'))}</td>",
            f"<td>{_fmt_ms(p.get('duration_ms'))}</td>",
            f"<td>{chart(histories.get(report.service, []))}</td>",
            timeline((records or {}).get(report.service), now_ms),
            f'<td class="reason">{html.escape(report.reason)}</td>',
        ]
        out.append(f'<tr data-service="{html.escape(report.service)}" '
                   f'data-state="{report.state.value}">{"".join(cells)}</tr>')
    if omitted:
        out.append(f'<tr><td colspan="12" class="muted">{omitted} more services, healthier '
                   'than these, not shown: <a href="api/heartbeats">api/heartbeats</a> pages '
                   "through them all</td></tr>")
    if not out:
        out.append('<tr><td colspan="12" class="muted">no service has published a heartbeat '
                   "under this prefix</td></tr>")
    return "\n".join(out)


def _number(value: Any) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, int | float) else value


def _span_s(ms: float) -> str:
    seconds = abs(ms) / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def _when(ms: Any, now_ms: int | None, *, future: bool) -> str:
    """A Redis-clock time as a cell: how long ago (or from now), the UTC time as a title."""
    at = _number(ms)
    if at is None:
        return '<td class="muted">-</td>'
    stamp = f"{datetime.fromtimestamp(at / 1000, UTC):%Y-%m-%d %H:%M:%S}Z"
    if now_ms is None:
        text = stamp
    elif future:
        text = f"in {_span_s(at - now_ms)}" if at >= now_ms else f"{_span_s(now_ms - at)} overdue"
    else:
        text = f"{_span_s(now_ms - at)} ago"
    return f'<td title="{html.escape(stamp)}">{html.escape(text)}</td>'


def _entry_row(entry: EntryReport, now_ms: int | None) -> str:
    """One entry: every field is escaped, names and schedules being the user's text."""
    rec = entry.record
    schedule = str(rec.get("schedule") or "-")
    tz = rec.get("tz")
    cells = [
        f'<td class="entry">{html.escape(entry.name)}</td>',
        f'<td><span class="state en-{entry.state.value}">'
        f"{html.escape(entry.state.value)}</span>"
        + ("" if entry.silence is None or now_ms is None else _silenced(entry.silence, now_ms))
        + "</td>",
        f"<td>{html.escape(entry.diagnosis or '-')}</td>",
        f"<td>{html.escape(schedule)}"
        + (f' <span class="muted">{html.escape(str(tz))}</span>' if tz else "") + "</td>",
        _when(rec.get("last_success_ms"), now_ms, future=False),
        _when(rec.get("next_due_ms"), now_ms, future=True),
        f"<td>{_fmt_ms(last_run_ms(rec, 'duration_ms'))}</td>",
        f"<td>{_fmt_ms(last_run_ms(rec, 'queue_wait_ms'))}</td>",
        f'<td class="reason">{html.escape(entry.reason)}</td>',
    ]
    return (f'<tr data-entry="{html.escape(entry.name)}" data-state="{entry.state.value}">'
            f'{"".join(cells)}</tr>')


def _entry_section(report: EntriesReport) -> str:
    body = "\n".join(_entry_row(entry, report.now_ms) for entry in report.entries)
    service = html.escape(report.service)
    return (f'<section class="entries" data-service="{service}">'
            f"<h2>Beat entries of {service}</h2>"
            "<table><thead><tr><th>entry</th><th>state</th><th>diagnosis</th>"
            "<th>schedule</th><th>last success</th><th>next due</th><th>last duration</th>"
            "<th>queue wait</th><th>reason</th></tr></thead>"
            f"<tbody>\n{body}\n</tbody></table></section>")


def entry_sections(entries: EntriesFleet) -> str:
    """The beat entries of each service that has any, one table each, worst entry first;
    a note when some could not be read or were left out by the bound."""
    out = [_entry_section(report) for report in entries.reports if report.entries]
    if entries.problem is not None:
        out.append('<p class="banner">entries not read: '
                   f"{html.escape(entries.problem)}</p>")
    if entries.omitted:
        out.append(f'<p class="muted">{entries.omitted} entries of other services left out '
                   "(the bound of one read)</p>")
    return "\n".join(out)


_STATE_RULES = "".join(
    [f".st-{state.value} {{ background: {colour}; }}\n" for state, colour in _COLOURS.items()]
    + [f".en-{state.value} {{ background: {colour}; }}\n"
       for state, colour in _ENTRY_COLOURS.items()])

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #24292f; }
h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d0d7de;
          vertical-align: middle; }
th { background: #f6f8fa; font-weight: 600; }
.state { color: #fff; border-radius: 1em; padding: .1rem .6rem; font-weight: 600; }
.muted, .reason { color: #57606a; }
td { white-space: nowrap; }
td.reason, td.banner { white-space: normal; }
.banner { background: #ffebe9; border: 1px solid #cf222e; padding: .5rem; }
.service { font-weight: 600; }
.warn { color: #bf8700; font-weight: 600; }
.silenced { color: #6639ba; font-weight: 600; font-size: .85em; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
.entry { font-weight: 600; white-space: normal; word-break: break-word; }
""" + _STATE_RULES
"""The page's one style sheet (allowed by its hash)."""

SCRIPT = """
async function refresh() {
  try {
    const response = await fetch("dashboard/rows", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    document.getElementById("fleet").innerHTML = await response.text();
    const entries = await fetch("dashboard/entries", {cache: "no-store"});
    if (!entries.ok) throw new Error("HTTP " + entries.status);
    document.getElementById("entries").innerHTML = await entries.text();
    document.getElementById("updated").textContent = new Date().toISOString();
  } catch (error) {
    document.getElementById("updated").textContent = "refresh failed: " + error.message;
  }
}
setInterval(refresh, REFRESH_MS);
""".replace("REFRESH_MS", str(REFRESH_S * 1000))
"""The page's one script: re-fetch the rows and the entries every ``REFRESH_S`` (allowed by
its hash)."""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = ("default-src 'none'; "
       f"script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
       "connect-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
"""The dashboard's Content-Security-Policy: its own script and style sheet by hash, fetches
to its own origin, nothing else."""


def page(body_rows: str, entries_html: str = "") -> str:
    """The whole page around ``body_rows`` (which say it when the store is unreachable) and
    the entries' sections."""
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>PetSage heartbeat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{REFRESH_S}"></noscript>
<style>{STYLE}</style></head>
<body>
<h1>PetSage heartbeat</h1>
<p class="muted">Ages on the Redis clock. Updated <span id="updated">{generated}</span>;
refreshes every {REFRESH_S} s. JSON: <a href="api/heartbeats">api/heartbeats</a>,
<a href="api/entries">api/entries</a>, Prometheus: <a href="metrics">metrics</a>.</p>
<table><thead><tr><th>service</th><th>state</th><th>diagnosis</th><th>age</th><th>seq</th>
<th>worker</th><th>nodes fresh</th><th>queue lag</th><th>duration</th><th>lag / duration</th>
<th>last 24 h</th><th>reason</th>
</tr></thead><tbody id="fleet">
{body_rows}
</tbody></table>
<div id="entries">
{entries_html}
</div>
<script>{SCRIPT}</script>
</body></html>
"""
