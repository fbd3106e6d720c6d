"""The HTTP routes' pieces in process, on fakeredis under a prefix of their own and a fixed
Redis clock: the source that reads the environment once and builds its own client, the
index's names or why they could not be read, ``/system/health``'s answer for each report
(its timestamp from the heartbeat, the Redis clock or the host's), each answer's body byte
for byte (the API's pages a chunk at a time, the entries, the dashboard's rows and entry
sections, ``/metrics``) with the store's problem told as ``PUBLIC_PROBLEM`` and logged
whole, and the app's title, docs and guard. tests/test_router_units.py has the refusals,
the paging, the slices, the log's throttle and the cache."""

from __future__ import annotations

import importlib
import json
import logging
import re
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.core.settings import Settings
from worker.core.states import Diagnosis, State
from worker.core.version import __version__
from worker.http import dashboard
from worker.http.guard import GuardOptions, Token
from worker.http.metrics import CONTENT_TYPE, scrape
from worker.http.router import (
    PUBLIC_PROBLEM,
    STREAM_SLICE,
    Answer,
    ApiQuery,
    Names,
    _json_bytes,
    _Logged,
    _page,
    _records,
    _Source,
    configure,
    create_app,
    entries_answer,
    entry_sections_answer,
    health_response,
    heartbeats_answer,
    metrics_answer,
    rows_answer,
    source,
)
from worker.publish.entry_store import EntrySpec, EntryStore
from worker.read.entries import read_entries
from worker.read.entry_scrape import read_fleet_entries
from worker.read.fleet import read_fleet
from worker.read.history import read_histories
from worker.read.incidents import read_incidents
from worker.read.reader import HeartbeatReport
from worker.read.render import summary

router = importlib.import_module("worker.http.router")

NOW_MS = 1_800_000_000_000
"""The fake server's clock: 2027-01-15T08:00:00Z."""
H = 3_600_000
KEYS = Keys("acme")
"""Not the default prefix: a read that forgot the configured keys finds nothing."""
SETTINGS = Settings.from_env({"HEARTBEAT_SERVICE": "petsage", "HEARTBEAT_KEY_PREFIX": "acme"})
SECRET = "Error 111 connecting to redis://:s3cret@db:6379 " + "y" * 300
REDACTED = "Error 111 connecting to redis://:***@db:6379 " + "y" * 300
"""``SECRET`` as the log may show it: the password masked (cut to a length by each caller)."""


class Broken:
    """A client every command of which fails as a refused connection would."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ConnectionError(SECRET)
        return refuse


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed Redis clock, and the store's last logged problem forgotten."""
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    monkeypatch.setattr(_Logged, "text", "")
    monkeypatch.setattr(_Logged, "at", 0.0)


def _spec(name: str) -> EntrySpec:
    return EntrySpec(name, "app.task", "every 60s", "interval", None, "celery", 30.0, None,
                     60.0, 60_000)


@pytest.fixture
def fleet(fake: fakeredis.FakeRedis, clock: None) -> fakeredis.FakeRedis:
    """Three services under ``acme``: ``cron`` stale with a monitor's record and three
    heartbeats, ``api`` and ``petsage`` fresh; ``petsage`` has two beat entries."""
    for service in ("petsage", "cron", "api", "cron", "cron"):
        publish(fake, service, interval_s=10, keys=KEYS)
    backdate(fake, "cron", 100, keys=KEYS)
    backdate(fake, "api", 2.5, keys=KEYS)
    fake.hset(KEYS.observed("cron"), mapping={"state": "stale", "first_ms": NOW_MS - 48 * H,
                                              "at_ms": NOW_MS - H})
    fake.xadd(KEYS.incidents("cron"), {"from": "fresh", "to": "stale", "at_ms": NOW_MS - H,
                                       "diagnosis": "beat_down", "reason": "r"})
    store = EntryStore(fake, KEYS, "petsage", retention_s=3600)
    store.sync([_spec("nightly export"), _spec("cleanup")])
    store.dispatched("cleanup", "t1", due_in_ms=0, next_due_in_ms=60_000, beat_id="beat-1",
                     depth=0)
    store.started("cleanup", "t1", "w1@host")
    store.finished("cleanup", "t1", "failed", error_type="ValueError", error="boom")
    return fake


@pytest.fixture
def configured(fleet: fakeredis.FakeRedis) -> Iterator[fakeredis.FakeRedis]:
    configure(settings=SETTINGS, client=fleet)
    source.keep_for(0.0)
    try:
        yield fleet
    finally:
        configure()


@pytest.fixture
def broken(clock: None) -> Iterator[None]:
    configure(settings=SETTINGS, client=Broken())
    source.keep_for(0.0)
    try:
        yield
    finally:
        configure()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "petsage_heartbeat.http"]


# --- the source ---------------------------------------------------------------------------

def test_the_source_reads_the_environment_once_and_builds_its_own_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not configured, the source takes the worker's settings from the environment at the
    first use and builds one client with the HTTP read timeout, kept for every request."""
    monkeypatch.setenv("HEARTBEAT_REDIS_URL", "redis://store.invalid:6380/2")
    monkeypatch.setenv("HEARTBEAT_SERVICE", "billing")
    monkeypatch.setenv("HEARTBEAT_KEY_PREFIX", "acme")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    built: list[tuple[str, object]] = []
    client = object()

    def make_client(url: str, timeout_s: object = "none given") -> object:
        built.append((url, timeout_s))
        return client

    monkeypatch.setattr(router, "make_client", make_client)
    src = _Source()
    settings = src.settings
    assert (settings.service, settings.redis_url) == ("billing", "redis://store.invalid:6380/2")
    assert src.settings is settings
    assert src.keys() == KEYS
    assert src.client() is client and src.client() is client
    assert built == [("redis://store.invalid:6380/2", 2.0)]


def test_a_configured_source_hands_back_its_settings_and_client_and_shares_reads(
        fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """``configure`` replaces both (no client is built then); ``keep_for`` sets how long
    both shared reads are kept."""
    monkeypatch.setattr(router, "make_client", lambda *_, **__: pytest.fail("built a client"))
    src = _Source()
    src.configure(settings=SETTINGS, client=fake)
    assert src.settings is SETTINGS and src.client() is fake
    src.keep_for(12.5)
    assert (src.fleet.max_age_s, src.names.max_age_s) == (12.5, 12.5)


def test_the_index_s_names_are_sorted_or_say_why_the_store_could_not_be_asked(
        fleet: fakeredis.FakeRedis) -> None:
    """The names under the configured prefix, in name order; a failed read is one line
    with the error redacted and cut at 200 characters, never an exception."""
    src = _Source()
    src.configure(settings=SETTINGS, client=fleet)
    assert src._read_names() == Names(["api", "cron", "petsage"], None)
    src.configure(settings=SETTINGS, client=Broken())
    assert src._read_names() == Names([], "Redis could not be asked: " + REDACTED[:200])


# --- /system/health ----------------------------------------------------------------------

class _FixedNow(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FixedNow:
        return cls(2030, 5, 6, 7, 8, 9, tzinfo=tz)


def test_the_health_answer_of_each_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Working (fresh or late with a payload): the payload's status and message. Otherwise
    ``error`` and the reason. The timestamp is the heartbeat's, else the Redis clock's, else
    the host's (UTC each); the age is rounded to the millisecond."""
    monkeypatch.setattr(router, "datetime", _FixedNow)
    payload: Any = {"ts_ms": 1_700_000_000_123, "status": "degraded", "message": "slow db"}
    beat = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    late = HeartbeatReport("api", State.LATE, "late by 3s", age_s=2.34567, payload=payload,
                           now_ms=1_700_000_002_000)
    assert health_response(late).model_dump() == {
        "status": "degraded", "message": "slow db", "timestamp": beat, "service": "api",
        "state": "late", "age_s": 2.346, "diagnosis": None}
    assert health_response(late._replace(state=State.FRESH)).model_dump()["state"] == "fresh"
    stale = HeartbeatReport("api", State.STALE, "no heartbeat for 100s", age_s=100.0,
                            payload=payload, now_ms=1_700_000_100_000,
                            diagnosis=Diagnosis.BEAT_DOWN)
    assert health_response(stale).model_dump() == {
        "status": "error", "message": "no heartbeat for 100s", "timestamp": beat,
        "service": "api", "state": "stale", "age_s": 100.0, "diagnosis": "beat_down"}
    missing = HeartbeatReport("api", State.MISSING, "never published", now_ms=1_700_000_000_000)
    assert health_response(missing).model_dump() == {
        "status": "error", "message": "never published",
        "timestamp": datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), "service": "api",
        "state": "missing", "age_s": None, "diagnosis": None}
    down = HeartbeatReport("api", State.UNREACHABLE, "down")
    assert health_response(down).model_dump()["timestamp"] == datetime(2030, 5, 6, 7, 8, 9,
                                                                      tzinfo=UTC)
    assert health_response(late._replace(payload=None)).model_dump()["status"] == "error"


def test_the_health_routes_read_the_configured_prefix(configured: fakeredis.FakeRedis,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """200 with the whole answer for a fresh heartbeat, 503 for a missing one with its own
    reason (not the store's problem, nothing logged), 400 with the whole line for a bad name."""
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    with TestClient(create_app()) as http:
        api = http.get("/system/health/api")
        missing = http.get("/system/health/nobody")
        bad = http.get("/system/health/a*b")
        own = http.get("/system/health")
    assert (api.status_code, api.json()) == (200, {
        "status": "ok", "message": "PetSage system is alive and purring!",
        "timestamp": "2027-01-15T07:59:57.500000Z", "service": "api", "state": "fresh",
        "age_s": 2.5, "diagnosis": None})
    assert (missing.status_code, missing.json()) == (503, {
        "status": "error", "message": "no heartbeat stored for this service; never_seen: no "
        "heartbeat and no publish by beat were ever recorded",
        "timestamp": "2027-01-15T08:00:00Z", "service": "nobody", "state": "missing",
        "age_s": None, "diagnosis": "never_seen"})
    assert (bad.status_code, bad.json()) == (400, {
        "detail": "service name 'a*b' is invalid; accepted: 1-64 characters of A-Z a-z 0-9 "
                  ". _ -"})
    assert (own.status_code, own.json()["service"]) == (200, "petsage")
    assert _warnings(caplog) == []


def test_an_unreachable_store_s_health_is_503_and_its_error_goes_to_the_log(
        broken: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    with TestClient(create_app()) as http:
        health = http.get("/system/health/api")
    assert health.status_code == 503
    assert (health.json()["message"], health.json()["state"]) == (PUBLIC_PROBLEM, "unreachable")
    (line,) = _warnings(caplog)
    assert re.fullmatch(r"store unreachable: Redis could not be asked \(ConnectionError after "
                        r"[0-9.]+s\): Error 111 connecting to redis://:\*\*\*@db:6379 y+",
                        line), line


# --- the monitors' record ----------------------------------------------------------------

def test_the_monitors_record_or_none_when_it_could_not_be_read(
        configured: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture) -> None:
    """No service: nothing asked. A failed read: None and one warning, the error redacted
    and cut at 200 characters; the heartbeats are still answered."""
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    now_ms, records = _records(["cron", "api"])
    assert (now_ms, records) == read_incidents(configured, KEYS, ["cron", "api"])
    assert now_ms == NOW_MS and records is not None and records["cron"].monitored is True
    configure(settings=SETTINGS, client=Broken())
    assert _records([]) == (0, {})
    assert _warnings(caplog) == []
    assert _records(["cron"]) == (0, None)
    assert _warnings(caplog) == ["could not read the monitors' record: " + REDACTED[:200]]


# --- refusals not pinned elsewhere -------------------------------------------------------

def test_each_refusal_is_its_own_whole_line(configured: fakeredis.FakeRedis) -> None:
    with TestClient(create_app()) as http:
        def refused(path: str) -> str:
            answer = http.get(path)
            assert answer.status_code == 400, path
            return str(answer.json()["detail"])

        accepted = "accepted: service, limit, after, page_size"
        assert refused("/api/heartbeats?zz=1&aa=2") == (
            f"unknown query parameters 'aa', 'zz'; {accepted}")
        assert refused("/api/heartbeats?limit=1&limit=2") == (
            "query parameter limit is given 2 times; accepted: once")
        assert refused("/api/heartbeats?service=a*b") == (
            "service 'a*b' is invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ -")
        assert refused("/api/heartbeats?after=" + "b" * 70) == (
            f"after '{'b' * 40}...' is invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ -")
        assert refused("/api/entries?service=a*b") == (
            "service 'a*b' is invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ -")
        assert refused("/api/entries?service=a&service=b") == (
            "query parameter service is given 2 times; accepted: once")


# --- the API's pages ---------------------------------------------------------------------

def test_json_bodies_are_compact_utf8_and_refuse_nan() -> None:
    """What JSONResponse would write: no spaces, UTF-8 as is, no NaN (not JSON)."""
    assert _json_bytes({"a": "é ü", "b": [1, None]}) == '{"a":"é ü","b":[1,null]}'.encode()
    with pytest.raises(ValueError, match="not JSON compliant"):
        _json_bytes({"x": float("nan")})


def test_a_page_s_reports_problem_total_and_cursor(configured: fakeredis.FakeRedis,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    one = _page(ApiQuery("cron", None, 500, 60))
    assert one == (read_fleet(configured, KEYS, only="cron").reports, None, 1, None)
    assert [(r.service, r.state) for r in one[0]] == [("cron", State.STALE)]
    reports, problem, total, following = _page(ApiQuery(None, None, 500, 60))
    assert [(r.service, r.state) for r in reports] == [
        ("cron", State.STALE), ("api", State.FRESH), ("petsage", State.FRESH)]
    assert (problem, total, following) == (None, 3, None)
    first = _page(ApiQuery(None, None, 2, 60))
    assert ([r.service for r in first[0]], first[1:]) == (["cron", "api"], (None, 3, "cron"))

    def refuse(*_: Any) -> Any:
        raise RuntimeError("NOPERM redis://:s3cret@db:6379 " + "z" * 300)

    monkeypatch.setattr(router, "read_listed", refuse)
    assert _page(ApiQuery(None, None, 500, 60)) == (
        [], "Redis could not be asked: " + ("NOPERM redis://:***@db:6379 " + "z" * 300)[:200],
        0, None)


def test_the_next_cursor_is_the_page_s_last_name(fake: fakeredis.FakeRedis,
                                                 clock: None) -> None:
    for name in ("a", "b", "c", "d", "e"):
        publish(fake, name, keys=KEYS)
    configure(settings=SETTINGS, client=fake)
    try:
        _, _, total, following = _page(ApiQuery(None, None, 3, 60))
        assert (total, following) == (5, "c")
    finally:
        configure()


def test_an_unreachable_index_is_a_page_of_nothing(broken: None) -> None:
    assert _page(ApiQuery(None, None, 500, 60)) == (
        [], "Redis could not be asked: " + REDACTED[:200], 0, None)


def _expected(reports: list[HeartbeatReport], client: Any, limit: int) -> list[dict[str, Any]]:
    names = [r.service for r in reports]
    histories = read_histories(client, KEYS, names, limit)
    now_ms, records = read_incidents(client, KEYS, names)
    return [{**summary(r), "history": histories[r.service],
             "incidents": records[r.service].as_json(now_ms)} for r in reports]


def _compact(content: Any) -> bytes:
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_api_s_page_byte_for_byte_a_chunk_at_a_time(
        configured: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service of the page worst first with its last ``limit`` heartbeats and its
    record, however the page is cut into chunks; then the total and the cursor."""
    monkeypatch.setattr(router, "ANSWER_CHUNK", 2)
    reports = read_fleet(configured, KEYS).reports
    services = _expected(reports, configured, 2)
    assert [len(s["history"]) for s in services] == [2, 1, 1]
    assert services[0]["incidents"]["monitored"] is True
    answer = heartbeats_answer(ApiQuery(None, None, 500, 2))
    assert answer == Answer(200, _compact({
        "store_up": True, "store_problem": None, "services": services, "total": 3,
        "next": None}), "application/json")
    page = heartbeats_answer(ApiQuery(None, None, 2, 2))
    assert page.body == _compact({
        "store_up": True, "store_problem": None, "services": services[:2], "total": 3,
        "next": "cron"})


def test_a_page_without_its_record_or_history_still_lists_its_services(
        configured: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The record is extra: a failed read makes every ``incidents`` null; a history that
    could not be read is an empty one."""
    def refuse(*_: Any) -> Any:
        raise ConnectionError("record refused")

    monkeypatch.setattr(router, "read_incidents", refuse)
    monkeypatch.setattr(router, "read_histories", lambda *_: {})
    data = json.loads(heartbeats_answer(ApiQuery("cron", None, 500, 60)).body)
    (service,) = data["services"]
    assert (service["service"], service["history"], service["incidents"]) == ("cron", [], None)
    assert (data["total"], data["next"]) == (1, None)


def test_a_page_lists_no_incidents_for_a_service_the_record_leaves_out(
        configured: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "read_incidents", lambda *_: (NOW_MS, {}))
    data = json.loads(heartbeats_answer(ApiQuery("cron", None, 500, 60)).body)
    assert data["services"][0]["incidents"] is None


def test_an_unreachable_store_s_page_is_503_with_the_public_problem(
        broken: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    assert heartbeats_answer(ApiQuery(None, None, 500, 60)) == Answer(503, (
        b'{"store_up":false,"store_problem":"Redis could not be asked (the reason is in the '
        b'server log)","services":[],"total":0,"next":null}'), "application/json")
    assert _warnings(caplog) == ["store unreachable: Redis could not be asked: "
                                 + REDACTED[:200]]


# --- entries -----------------------------------------------------------------------------

def test_the_entries_answer_byte_for_byte(configured: fakeredis.FakeRedis) -> None:
    report = read_entries(configured, "petsage", keys=KEYS)
    assert [e.name for e in report.entries] == ["cleanup", "nightly export"]
    assert entries_answer("petsage") == Answer(200, _compact({
        "store_up": True, "store_problem": None, "service": "petsage", "now_ms": NOW_MS,
        "entries": [e.as_json() for e in report.entries]}), "application/json")


def test_the_entries_of_an_unreachable_store_are_503(broken: None,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    assert entries_answer("petsage") == Answer(503, (
        b'{"store_up":false,"store_problem":"Redis could not be asked (the reason is in the '
        b'server log)","service":"petsage","now_ms":null,"entries":[]}'), "application/json")
    (line,) = _warnings(caplog)
    assert "redis://:***@db:6379" in line


# --- the dashboard -----------------------------------------------------------------------

def test_the_dashboard_rows_byte_for_byte(configured: fakeredis.FakeRedis,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``MAX_ROWS`` worst with their last ``HISTORY_POINTS`` heartbeats and their record,
    the rest counted; no problem header while the store answers."""
    monkeypatch.setattr(dashboard, "MAX_ROWS", 2)
    monkeypatch.setattr(dashboard, "HISTORY_POINTS", 2)
    reports = read_fleet(configured, KEYS).reports
    shown = reports[:2]
    names = [r.service for r in shown]
    now_ms, records = read_incidents(configured, KEYS, names)
    body = dashboard.rows(shown, read_histories(configured, KEYS, names, 2), store_problem=None,
                          records=records, now_ms=now_ms, omitted=1)
    assert "1 more services" in body and '<rect class="outage"' in body
    assert rows_answer() == Answer(200, body.encode(), "text/html", ())


def test_the_dashboard_rows_of_an_unreachable_store_say_so_in_a_header(broken: None) -> None:
    assert rows_answer() == Answer(200, (
        b'<tr data-state="unreachable"><td colspan="12" class="banner">store unreachable: '
        b"Redis could not be asked (the reason is in the server log)</td></tr>"),
        "text/html", (("X-Store-Problem", "1"),))


def test_the_dashboard_s_entry_sections(configured: fakeredis.FakeRedis) -> None:
    expected = dashboard.entry_sections(
        read_fleet_entries(configured, ["api", "cron", "petsage"], KEYS))
    assert "nightly export" in expected and "cleanup" in expected
    assert entry_sections_answer() == Answer(200, expected.encode(), "text/html")


def test_entries_that_could_not_be_read_say_so_without_the_error(
        configured: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    configured.set(KEYS.entries("cron"), "not a hash")
    answer = entry_sections_answer()
    assert answer.body.decode().endswith(
        '<p class="banner">entries not read: Redis could not be asked (the reason is in the '
        "server log)</p>")
    assert _warnings(caplog) == ["store unreachable: cron: ResponseError: WRONGTYPE Operation "
                                 "against a key holding the wrong kind of value"]


def test_no_entry_sections_when_the_index_could_not_be_read(broken: None) -> None:
    """The rows' banner already says the store is unreachable."""
    assert entry_sections_answer() == Answer(200, b"", "text/html")


def test_metrics_are_one_scrape_with_the_record_and_the_entries(
        configured: fakeredis.FakeRedis) -> None:
    expected = scrape(lambda: read_fleet(configured, KEYS),
                      lambda names: read_incidents(configured, KEYS, names)[1],
                      lambda names: read_fleet_entries(configured, names, KEYS))
    assert b'service="cron"' in expected and b'entry="cleanup"' in expected
    assert b"uptime" in expected
    assert metrics_answer() == Answer(200, expected, CONTENT_TYPE)


# --- the app -----------------------------------------------------------------------------

def test_the_app_s_title_version_and_no_docs_pages(configured: fakeredis.FakeRedis,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema's version is the package's (FastAPI's own default is 0.1.0)."""
    app = create_app()
    assert (app.title, app.version, app.description) == (
        "PetSage heartbeat", __version__, "Scheduled heartbeat of the PetSage Celery pipeline.")
    monkeypatch.setattr(router, "_version", lambda: "9.8.7")
    assert create_app().openapi()["info"]["version"] == "9.8.7"
    assert (app.docs_url, app.redoc_url) == (None, None)
    with TestClient(app) as http:
        assert http.get("/docs").status_code == 404
        assert http.get("/redoc").status_code == 404


def test_by_default_nothing_is_kept_between_requests(configured: fakeredis.FakeRedis) -> None:
    """``cache_s`` 0: each request reads the store again; a longer one is the shared reads'
    age too."""
    create_app(cache_s=30.0)
    assert (source.fleet.max_age_s, source.names.max_age_s) == (30.0, 30.0)
    with TestClient(create_app()) as http:
        assert http.get("/api/heartbeats").json()["total"] == 3
        publish(configured, "zeta", keys=KEYS)
        assert http.get("/api/heartbeats").json()["total"] == 4
        assert 'data-service="zeta"' in http.get("/dashboard/rows").text
    assert (source.fleet.max_age_s, source.names.max_age_s) == (0.0, 0.0)


def test_the_guard_asks_for_the_token(configured: fakeredis.FakeRedis) -> None:
    token = "t" * 16
    with TestClient(create_app(guard=GuardOptions(token=Token(token)))) as http:
        assert http.get("/api/heartbeats").status_code == 401
        authorized = http.get("/api/heartbeats", headers={"Authorization": f"Bearer {token}"})
        assert authorized.status_code == 200
        assert http.get("/system/health").status_code == 200


def test_a_large_answer_keeps_its_code_type_and_headers() -> None:
    body = b"x" * (STREAM_SLICE + 1)
    big = Answer(503, body, "text/html", (("X-Store-Problem", "1"),)).response()
    assert isinstance(big, StreamingResponse)
    assert big.status_code == 503
    assert (big.headers["content-type"], big.headers["x-store-problem"],
            big.headers["content-length"]) == ("text/html; charset=utf-8", "1", str(len(body)))
