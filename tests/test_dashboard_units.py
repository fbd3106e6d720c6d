"""The dashboard's HTML pieces on a fixed clock, whole: a row with every cell, the chart,
the 24-hour timeline at its edges, the entries' sections, the spans of time at each unit's
boundary, the page around them and the hash its policy allows."""

from __future__ import annotations

import re
from typing import Any

from worker.core.entries import EntryState
from worker.core.states import State
from worker.http import dashboard
from worker.read.entries import EntriesReport, EntryReport
from worker.read.entry_scrape import EntriesFleet
from worker.read.incidents import IncidentSummary, Outage, Silence
from worker.read.nodes import NodeReport
from worker.read.reader import HeartbeatReport

C1 = (
    '<svg class="chart" width="180" height="36" role="img" aria-label="queue lag (blue) '
    'and duration (orange), max 30 ms"><title>queue lag (blue) and duration (orange), '
    'max 30 ms</title><polyline fill="none" stroke="#0969da" stroke-width="1.5" points="0.0,23.3 '
    '90.0,12.7 180.0,34.0"/><polyline fill="none" stroke="#fb8500" stroke-width="1.5" '
    'points="0.0,28.7 90.0,34.0 180.0,2.0"/></svg>')
C2 = (
    '<svg class="chart" width="180" height="36" role="img" aria-label="queue lag (blue) '
    'and duration (orange), max 1 ms"><title>queue lag (blue) and duration (orange), '
    'max 1 ms</title><polyline fill="none" stroke="#0969da" stroke-width="1.5" points="0.0,34.0 '
    '180.0,34.0"/><polyline fill="none" stroke="#fb8500" stroke-width="1.5" points="0.0,34.0 '
    '180.0,34.0"/></svg>')
T1 = (
    '<td class="uptime"><svg class="timeline" width="160" height="14" role="img" '
    'aria-label="outages, '
    'last 24 h: none"><rect x="0" y="0" width="160" height="14" fill="#1a7f37"/></svg>'
    '<br><span class="muted">100.00% · 0 outages</span></td>')
T2 = (
    '<td class="uptime"><svg class="timeline" width="160" height="14" role="img" '
    'aria-label="outages, '
    'last 24 h: 21:13:20Z 3601 s recovered"><rect x="0" y="0" width="160" height="14" '
    'fill="#1a7f37"/><rect class="outage" x="0.0" y="0" width="2.0" height="14" fill="#cf222e">'
    '<title>21:13:20Z 3601 s recovered</title></rect></svg><br><span class="muted">'
    '50.00% · 1 outage · MTTR 60 s</span></td>')
T3 = (
    '<td class="uptime"><svg class="timeline" width="100" height="10" role="img" '
    'aria-label="outages, '
    'last 24 h: 22:13:25Z -5 s ongoing beat_down"><rect x="0" y="0" width="100" height="10" '
    'fill="#1a7f37"/><rect x="0" y="0" width="0.0" height="10" fill="#d0d7de"/><rect '
    'class="outage" x="98.0" y="0" width="2.0" height="10" fill="#cf222e"><title>22:13:25Z '
    '-5 s ongoing beat_down</title></rect></svg><br><span class="muted">50.00% · 3 '
    'outages · MTTR 60 s</span></td>')
R1 = (
    '<tr data-service="api" data-state="late"><td class="service">api</td><td><span '
    'class="state st-late">late</span><br><span class="silenced">silenced 119 s more: '
    'db</span></td><td>beat_down</td><td>12.3 s</td><td>9</td><td>-</td><td class="nodes">'
    '1/2 (w2 not fresh)</td><td>3 ms</td><td>0 ms</td><td><svg class="chart" width="180" '
    'height="36" role="img" aria-label="queue lag (blue) and duration (orange), max '
    '2 ms"><title>queue lag (blue) and duration (orange), max 2 ms</title><polyline '
    'fill="none" stroke="#0969da" stroke-width="1.5" points="0.0,18.0 180.0,2.0"/>'
    '<polyline fill="none" stroke="#fb8500" stroke-width="1.5" points="0.0,34.0 180.0,34.0"/>'
    '</svg></td><td class="uptime"><svg class="timeline" width="160" height="14" role="img" '
    'aria-label="outages, last 24 h: none"><rect x="0" y="0" width="160" height="14" '
    'fill="#1a7f37"/></svg><br><span class="muted">50.00% · 1 outage · MTTR 60 s</span>'
    '</td><td class="reason">late &lt;1&gt;</td></tr>\n<tr><td colspan="12" class="muted">'
    '3 more services, healthier than these, not shown: <a href="api/heartbeats">api/heartbeats</a>'
    ' pages through them all</td></tr>')
R2 = (
    '<tr data-state="unreachable"><td colspan="12" class="banner">store unreachable: '
    'a &lt;b&gt;</td></tr>')
R3 = (
    '<tr><td colspan="12" class="muted">1 more services, healthier than these, not '
    'shown: <a href="api/heartbeats">api/heartbeats</a> pages through them all</td>'
    '</tr>')
E1 = (
    '<section class="entries" data-service="svc&lt;1&gt;"><h2>Beat entries of svc&lt;1&gt;</h2>'
    '<table><thead><tr><th>entry</th><th>state</th><th>diagnosis</th><th>schedule</th>'
    '<th>last success</th><th>next due</th><th>last duration</th><th>queue wait</th>'
    '<th>reason</th></tr></thead><tbody>\n<tr data-entry="nightly &lt;x&gt;" data-state="missed">'
    '<td class="entry">nightly &lt;x&gt;</td><td><span class="state en-missed">missed</span>'
    '<br><span class="silenced">silenced 120 min more</span></td><td>beat_down</td>'
    '<td>0 3 * * * <span class="muted">Europe/Paris</span></td><td title="2023-11-14 '
    '19:13:20Z">3.0 h ago</td><td title="2023-11-14 22:10:00Z">3 min overdue</td><td>'
    '12 ms</td><td>3 ms</td><td class="reason">missed &lt;y&gt;</td></tr>\n<tr data-entry="hourly" '
    'data-state="ok"><td class="entry">hourly</td><td><span class="state en-ok">ok</span>'
    '</td><td>-</td><td>-</td><td class="muted">-</td><td title="2023-11-14 22:14:20Z">'
    'in 60.0 s</td><td>-</td><td>-</td><td class="reason">ok</td></tr>\n</tbody></table>'
    '</section>\n<p class="banner">entries not read: some &lt;problem&gt;</p>\n<p '
    'class="muted">4 entries of other services left out (the bound of one read)</p>')
E2 = (
    '<section class="entries" data-service="s"><h2>Beat entries of s</h2><table><thead>'
    '<tr><th>entry</th><th>state</th><th>diagnosis</th><th>schedule</th><th>last success</th>'
    '<th>next due</th><th>last duration</th><th>queue wait</th><th>reason</th></tr>'
    '</thead><tbody>\n<tr data-entry="nightly &lt;x&gt;" data-state="missed"><td class="entry">'
    'nightly &lt;x&gt;</td><td><span class="state en-missed">missed</span></td><td>'
    'beat_down</td><td>0 3 * * * <span class="muted">Europe/Paris</span></td><td title="2023-11-14 '
    '19:13:20Z">2023-11-14 19:13:20Z</td><td title="2023-11-14 22:10:00Z">2023-11-14 '
    '22:10:00Z</td><td>12 ms</td><td>3 ms</td><td class="reason">missed &lt;y&gt;</td>'
    '</tr>\n</tbody></table></section>')

NOW = 1_700_000_000_000
H = 3_600_000


def _record(**fields: Any) -> IncidentSummary:
    base: dict[str, Any] = {
        "service": "s", "monitored": True, "state": "fresh", "since_ms": NOW - H,
        "first_ms": NOW - 48 * H, "uptime": {"24h": 0.5}, "covered_s": {},
        "outages": {"24h": 1}, "mttr_s": {"24h": 60.4}, "recent": (), "silence": None}
    return IncidentSummary(**{**base, **fields})


def test_the_chart_whole() -> None:
    assert dashboard.chart([{"lag_ms": 10, "duration_ms": 5}, {"lag_ms": 20, "duration_ms": 0},
                            {"lag_ms": 0, "duration_ms": 30}]) == C1
    assert dashboard.chart([{}, {}]) == C2  # nothing measured: a flat chart, "max 1 ms"


def test_the_timeline_at_its_edges() -> None:
    """No outage and no start (no grey part); an outage ending exactly 24 h ago is left out,
    one ending a second later shows at least 2 px; a record starting 1 ms into the day has a
    grey part; an ongoing outage keeps 2 px inside the bar."""
    assert dashboard.timeline(_record(first_ms=None, uptime={"24h": 1.0}, outages={"24h": 0},
                                      mttr_s={"24h": None}), NOW) == T1
    assert dashboard.timeline(_record(first_ms=NOW - 24 * H, recent=(
        Outage(NOW - 30 * H, NOW - 24 * H, "x", ""),
        Outage(NOW - 25 * H, NOW - 24 * H + 1000, "", ""))), NOW) == T2
    assert dashboard.timeline(_record(first_ms=NOW - 24 * H + 1, recent=(
        Outage(NOW + 5000, None, "beat_down", ""),), outages={"24h": 3}), NOW,
        width=100, height=10) == T3
    assert dashboard.timeline(_record(monitored=False), NOW) == (
        '<td class="muted" title="no monitor has judged this service">-</td>')


def test_a_row_whole_with_the_omitted_ones_counted() -> None:
    report = HeartbeatReport(
        "api", State.LATE, "late <1>", 12.34,
        payload={"seq": 9, "worker": "notadict", "queue_lag_ms": 2.6,  # type: ignore[typeddict-item]
                 "duration_ms": 0.4},
        diagnosis="beat_down",  # type: ignore[arg-type]
        nodes=(NodeReport("w1", State.FRESH, 1.0, NOW), NodeReport("w2", State.STALE, 99.0, NOW)))
    records = {"api": _record(silence=Silence(NOW + 119_000, "db", NOW))}
    assert dashboard.rows([report], {"api": [{"lag_ms": 1}, {"lag_ms": 2}]}, records=records,
                          now_ms=NOW, omitted=3) == R1
    assert dashboard.rows([], {}, store_problem="a <b>", omitted=3) == R2
    assert dashboard.rows([], {}, omitted=1) == R3


def test_a_silence_says_seconds_under_two_minutes_then_minutes() -> None:
    def said(left_ms: int, reason: str = "") -> str:
        return dashboard._silenced(Silence(NOW + left_ms, reason, NOW), NOW)

    assert said(119_000) == '<br><span class="silenced">silenced 119 s more</span>'
    assert said(120_000, "a <b>") == (
        '<br><span class="silenced">silenced 2 min more: a &lt;b&gt;</span>')
    assert said(-5000) == '<br><span class="silenced">silenced 0 s more</span>'


def test_spans_of_time_at_each_unit_s_boundary() -> None:
    spans = {119_949: "119.9 s", 120_000: "2 min", 7_199_000: "120 min", 7_200_000: "2.0 h",
             172_799_000: "48.0 h", 172_800_000: "2 d", -5000: "5.0 s"}
    assert {ms: dashboard._span_s(ms) for ms in spans} == spans


def test_a_time_cell_ago_in_or_overdue() -> None:
    title = '<td title="2023-11-14 22:13:20Z">'
    assert dashboard._when(NOW, NOW, future=True) == title + "in 0.0 s</td>"
    assert dashboard._when(NOW, NOW + 1000, future=True) == title + "1.0 s overdue</td>"
    assert dashboard._when(NOW, NOW + 1000, future=False) == title + "1.0 s ago</td>"
    assert dashboard._when(NOW, None, future=False) == title + "2023-11-14 22:13:20Z</td>"
    for value in (None, True, "1700000000000"):
        assert dashboard._when(value, NOW, future=False) == '<td class="muted">-</td>'


def _entries() -> tuple[EntryReport, EntryReport]:
    nightly = EntryReport(
        "nightly <x>", EntryState.MISSED, "beat_down", "missed <y>",
        {"schedule": "0 3 * * *", "tz": "Europe/Paris", "last_success_ms": NOW - 3 * H,
         "next_due_ms": NOW - 200_000, "run": {"duration_ms": 12.4}, "last_queue_wait_ms": 3},
        Silence(NOW + 7_200_000, "", NOW))
    hourly = EntryReport("hourly", EntryState.OK, None, "ok",
                         {"next_due_ms": NOW + 60_000, "last_success_ms": True})
    return nightly, hourly


def test_the_entries_sections_whole() -> None:
    """A service without entries has no section; the problem and the left-out count follow;
    without a clock, times are shown as they are and no silence is said."""
    nightly, hourly = _entries()
    assert dashboard.entry_sections(EntriesFleet(
        [EntriesReport("svc<1>", NOW, (nightly, hourly), None),
         EntriesReport("empty", NOW, (), None)], 4, "some <problem>")) == E1
    assert dashboard.entry_sections(EntriesFleet(
        [EntriesReport("s", None, (nightly,), None)], 0, None)) == E2
    assert dashboard.entry_sections(EntriesFleet([], 0, None)) == ""


def test_the_page_around_its_rows_and_entries() -> None:
    page = dashboard.page("<tr>ROWS</tr>", "<p>ENTRIES</p>")
    generated = re.search(r'<span id="updated">([^<]*)</span>', page)
    assert generated is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", generated[1])
    assert page == PAGE.format(generated=generated[1], style=dashboard.STYLE,
                               script=dashboard.SCRIPT)
    assert '<div id="entries">\n\n</div>' in dashboard.page("<tr>ROWS</tr>")


def test_the_policy_allows_the_page_s_script_and_style_by_their_hash() -> None:
    assert dashboard._sha256("abc") == "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"
    assert (
        f"default-src 'none'; script-src {dashboard._sha256(dashboard.SCRIPT)}; "
        f"style-src {dashboard._sha256(dashboard.STYLE)}; connect-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'") == dashboard.CSP


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>PetSage heartbeat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="3"></noscript>
<style>{style}</style></head>
<body>
<h1>PetSage heartbeat</h1>
<p class="muted">Ages on the Redis clock. Updated <span id="updated">{generated}</span>;
refreshes every 3 s. JSON: <a href="api/heartbeats">api/heartbeats</a>,
<a href="api/entries">api/entries</a>, Prometheus: <a href="metrics">metrics</a>.</p>
<table><thead><tr><th>service</th><th>state</th><th>diagnosis</th><th>age</th><th>seq</th>
<th>worker</th><th>nodes fresh</th><th>queue lag</th><th>duration</th><th>lag / duration</th>
<th>last 24 h</th><th>reason</th>
</tr></thead><tbody id="fleet">
<tr>ROWS</tr>
</tbody></table>
<div id="entries">
<p>ENTRIES</p>
</div>
<script>{script}</script>
</body></html>
"""
