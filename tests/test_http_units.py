"""The HTTP app in-process on fakeredis (FastAPI's TestClient, no server): the dashboard's
rows, timeline and chart, the JSON API, the health routes; and the dashboard's pieces on a
fixed clock. tests/test_http.py has the same routes against a real redis-server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from tests.support.http_app import petsage_app
from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms
from worker.core.settings import Settings
from worker.core.states import State
from worker.http import dashboard
from worker.http.router import PUBLIC_PROBLEM, configure, create_app
from worker.read.incidents import IncidentSummary, Outage, Silence
from worker.read.reader import HeartbeatReport

KEYS = Keys()
H = 3_600_000
NOW = 1_700_000_000_000


@pytest.fixture
def http(fake: fakeredis.FakeRedis) -> Iterator[TestClient]:
    """The app on the ``fake`` of tests/conftest.py, where each test publishes its data."""
    with petsage_app(fake) as client:
        yield client


def test_the_dashboard_lists_each_service_worst_first_with_its_record(
        http: TestClient, fake: fakeredis.FakeRedis) -> None:
    publish(fake, "petsage", interval_s=10)
    publish(fake, "billing", interval_s=10)
    backdate(fake, "billing", 60)
    now = redis_time_ms(fake.time())
    fake.hset(KEYS.observed("billing"), mapping={"state": "stale", "first_ms": now - 2 * H,
                                                 "at_ms": now - H})
    fake.xadd(KEYS.incidents("billing"), {"from": "fresh", "to": "stale", "at_ms": now - H,
                                          "diagnosis": "beat_down", "reason": "r"})
    fake.set(KEYS.silence("billing"), json.dumps({"until_ms": now + 600_000, "reason": "db <x>",
                                                  "since_ms": now}))
    page = http.get("/")
    assert page.status_code == 200 and page.text.startswith("<!doctype html>")
    rows = http.get("/dashboard/rows")
    assert rows.status_code == 200 and "X-Store-Problem" not in rows.headers
    body = rows.text
    assert body.index('data-service="billing"') < body.index('data-service="petsage"')
    assert '<span class="silenced">silenced 10 min more: db &lt;x&gt;</span>' in body
    assert '<rect class="outage"' in body and "1 outage" in body
    assert 'data-state="stale"' in body and 'data-state="fresh"' in body
    # The page embeds the same rows; read a moment apart, only the ages and times may differ.
    assert _numbers_out(body) in _numbers_out(page.text)


def _numbers_out(html: str) -> str:
    return re.sub(r"[0-9]+(\.[0-9]+)?", "N", html)


def test_the_api_lists_services_with_history_and_incidents(
        http: TestClient, fake: fakeredis.FakeRedis) -> None:
    for _ in range(3):
        publish(fake, "petsage", interval_s=10)
    answer = http.get("/api/heartbeats", params={"limit": "2"})
    assert answer.status_code == 200
    data = answer.json()
    assert data["store_up"] is True and data["store_problem"] is None
    (service,) = data["services"]
    assert service["service"] == "petsage" and len(service["history"]) == 2
    assert [h["seq"] for h in service["history"]] == [2, 3]
    assert service["incidents"]["monitored"] is False
    assert http.get("/api/heartbeats", params={"service": "nobody"}).json()["services"] == []
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"service": "a b"}, {"other": "1"}):
        refused = http.get("/api/heartbeats", params=bad)
        assert refused.status_code == 400, bad
    twice = http.get("/api/heartbeats?limit=1&limit=2")
    assert twice.status_code == 400 and "given 2 times" in twice.json()["detail"]


def test_health_routes(http: TestClient, fake: fakeredis.FakeRedis) -> None:
    publish(fake, "petsage", interval_s=10)
    ok = http.get("/system/health")
    assert ok.status_code == 200 and ok.json()["state"] == "fresh"
    missing = http.get("/system/health/billing")
    assert missing.status_code == 503 and missing.json()["diagnosis"] == "never_seen"
    assert http.get("/system/health/a%20b").status_code == 400


class _Broken:
    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ConnectionError("Error 111 connecting to redis://:s3cret@db:6379")
        return refuse


def test_a_store_that_cannot_be_asked(caplog: pytest.LogCaptureFixture) -> None:
    configure(settings=Settings.from_env({}), client=_Broken())
    try:
        with TestClient(create_app()) as http:
            rows = http.get("/dashboard/rows")
            api = http.get("/api/heartbeats")
            health = http.get("/system/health")
            entries = http.get("/api/entries")
    finally:
        configure()
    assert rows.headers["X-Store-Problem"] == "1" and "store unreachable: Redis could not be " \
        "asked (the reason is in the server log)" in rows.text
    for answer in (rows, api, health, entries):  # the error's text is for the log only
        assert "Error 111" not in answer.text and "s3cret" not in answer.text
    assert health.status_code == 503 and health.json()["message"] == PUBLIC_PROBLEM
    assert entries.json()["store_problem"] == PUBLIC_PROBLEM
    assert "Error 111 connecting to redis://:***@db:6379" in caplog.text
    assert "s3cret" not in caplog.text
    assert api.status_code == 503 and api.json()["store_up"] is False
    assert api.json()["services"] == []


def _record(**fields: Any) -> IncidentSummary:
    base: dict[str, Any] = {
        "service": "s", "monitored": True, "state": "fresh", "since_ms": NOW - H,
        "first_ms": NOW - 48 * H, "uptime": {"24h": 0.9875, "7d": 1.0, "30d": 1.0},
        "covered_s": {"24h": 86_400.0}, "outages": {"24h": 1, "7d": 1, "30d": 1},
        "mttr_s": {"24h": 1080.0, "7d": None, "30d": None}, "recent": (), "silence": None}
    return IncidentSummary(**{**base, **fields})


def test_the_timeline_draws_each_outage_of_the_last_day() -> None:
    assert dashboard.timeline(None, NOW) == (
        '<td class="muted" title="no monitor has judged this service">-</td>')
    assert "title=" in dashboard.timeline(_record(monitored=False), NOW)
    record = _record(recent=(Outage(NOW - 6 * H, NOW - 6 * H + 1_080_000, "beat_down", ""),
                             Outage(NOW - 30 * H, NOW - 29 * H, "x", "")))
    cell = dashboard.timeline(record, NOW)
    assert cell.count('<rect class="outage"') == 1  # the one older than a day is left out
    assert '<rect class="outage" x="120.0" y="0" width="2.0"' in cell
    assert "98.75% · 1 outage · MTTR 1080 s" in cell
    assert 'aria-label="outages, last 24 h: 16:13:20Z 1080 s recovered beat_down"' in cell
    young = dashboard.timeline(_record(first_ms=NOW - 12 * H, recent=(
        Outage(NOW - 1000, None, "", ""),), outages={"24h": 2}, mttr_s={"24h": None},
        uptime={"24h": None}), NOW)
    assert '<rect x="0" y="0" width="80.0" height="14" fill="#d0d7de"/>' in young
    assert '<rect class="outage" x="158.0" y="0" width="2.0"' in young
    assert "- · 2 outages<" in young and "ongoing" in young


def test_the_chart_scales_both_lines_to_the_largest_value() -> None:
    assert dashboard.chart([]) == '<span class="muted">-</span>'
    assert dashboard.chart([{"lag_ms": 5}]) == '<span class="muted">-</span>'
    svg = dashboard.chart([{"lag_ms": 0, "duration_ms": 10}, {"lag_ms": 40, "duration_ms": None}],
                          width=100, height=20)
    assert 'points="0.0,18.0 100.0,2.0"' in svg and 'points="0.0,14.0 100.0,18.0"' in svg
    assert "max 40 ms" in svg
    flat = dashboard.chart([{}, {}], width=10, height=10)
    assert 'points="0.0,8.0 10.0,8.0"' in flat


def test_a_row_shows_what_the_report_knows() -> None:
    report = HeartbeatReport("a<b", State.STALE, "why <now>", 61.25,
                             payload={"seq": 7, "worker": {"node": "w@h"},  # type: ignore[typeddict-item]
                                      "queue_lag_ms": 3.4, "duration_ms": None},
                             second_beat="b2")
    row = dashboard.rows([report], {}, records={"a<b": _record(silence=Silence(
        NOW + 90_000, "", NOW))}, now_ms=NOW)
    assert row.startswith('<tr data-service="a&lt;b" data-state="stale">')
    for cell in ("<td>61.2 s</td>", "<td>7</td>", "<td>w@h</td>", "<td>3 ms</td>",
                 "<td>-</td>", '<span class="warn">two beats publish</span>',
                 "silenced 90 s more</span>", "why &lt;now&gt;", '<span class="state st-stale">'):
        assert cell in row, cell
    assert "style=" not in row  # colours by class: the page's CSP allows no inline style
    assert ".st-stale { background: #cf222e; }" in dashboard.STYLE
    assert dashboard.rows([], {}) .endswith("under this prefix</td></tr>")
    bare = dashboard.rows([HeartbeatReport("m", State.MISSING, "none")], {})
    assert "<td>-</td><td>-</td><td>-</td>" in bare and 'class="nodes">-</td>' in bare
