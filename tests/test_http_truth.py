"""The HTTP app says what is true: an unreachable store, history numbers as stored, the
query parameters it takes, no other host, and an OpenAPI schema with the real codes."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.helpers import (
    STARTUP_S,
    Proc,
    RedisServer,
    cli_argv,
    free_port,
    heartbeat_env,
    wait_for,
)
from worker.core.names import Keys
from worker.core.payload import DEFAULT_MESSAGE
from worker.core.settings import Settings
from worker.http.router import PUBLIC_PROBLEM, configure, create_app, router
from worker.publish.store import HeartbeatStore

SETTINGS = Settings.from_env({"HEARTBEAT_SERVICE": "petsage"})
EMPTY_ROW = "no service has published a heartbeat under this prefix"
LIMIT_ACCEPTED = "accepted: an integer 1-1000"


def _publish(client: redis.Redis, service: str = "petsage", times: int = 1) -> None:
    """Real heartbeats through the store script, as a worker writes them."""
    store = HeartbeatStore(client, Keys(), retention_s=3600, history_len=2000)
    body = {
        "schema": 1, "service": service, "status": "ok", "message": DEFAULT_MESSAGE,
        "interval_s": 10, "stale_after_s": 30, "published_at": None, "queue_lag_ms": 3.0,
        "duration_ms": 1.0, "clock_offset_ms": 0.0,
        "worker": {"node": "test@host", "hostname": "host", "pid": 1}, "version": "test",
        "checks": {"redis": {"status": "ok", "latency_ms": 0.1}},
    }
    for _ in range(times):
        store.publish(service, body)


@pytest.fixture
def app(real: redis.Redis) -> Iterator[TestClient]:
    """The stand-alone app over the session's real redis-server."""
    configure(settings=SETTINGS, client=real)
    with TestClient(create_app()) as client:
        yield client
    configure()


@pytest.fixture
def down(own_redis: RedisServer) -> Iterator[tuple[TestClient, str]]:
    """The stand-alone app with its own client of a redis-server that has been killed."""
    configure(settings=Settings.from_env({"HEARTBEAT_SERVICE": "petsage",
                                          "HEARTBEAT_REDIS_URL": own_redis.url}))
    own_redis.kill()
    reason = PUBLIC_PROBLEM  # the error's text goes to the server's log, never to a client
    with TestClient(create_app()) as client:
        yield client, reason
    configure()


# 1. Unreachable is unreachable.

def test_unreachable_page_shows_one_message_with_the_reason(
        down: tuple[TestClient, str], caplog: pytest.LogCaptureFixture) -> None:
    client, reason = down
    response = client.get("/")
    assert response.status_code == 200
    assert EMPTY_ROW not in response.text
    assert response.text.count("store unreachable") == 1
    assert response.text.count(f"store unreachable: {reason}") == 1
    assert "Error 111" not in response.text and "Connection refused" not in response.text
    assert "Connection refused" in caplog.text  # the detail, in the server's log


def test_unreachable_rows_say_so_and_keep_the_header(down: tuple[TestClient, str]) -> None:
    client, reason = down
    response = client.get("/dashboard/rows")
    assert response.status_code == 200
    assert response.headers["X-Store-Problem"] == "1"
    assert EMPTY_ROW not in response.text
    assert response.text.count("<tr") == 1
    assert f"store unreachable: {reason}" in response.text


def test_unreachable_api_is_503(down: tuple[TestClient, str]) -> None:
    client, reason = down
    for path in ("/api/heartbeats", "/api/heartbeats?service=petsage&limit=5"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json() == {"store_up": False, "store_problem": reason, "services": [],
                                   "total": 0, "next": None}


def test_empty_reachable_fleet_says_nobody_published(app: TestClient) -> None:
    page = app.get("/")
    assert page.status_code == 200
    assert EMPTY_ROW in page.text and "store unreachable" not in page.text
    rows = app.get("/dashboard/rows")
    assert rows.status_code == 200 and "X-Store-Problem" not in rows.headers
    assert EMPTY_ROW in rows.text
    api = app.get("/api/heartbeats")
    assert api.status_code == 200
    assert api.json() == {"store_up": True, "store_problem": None, "services": [], "total": 0,
                          "next": None}


# 2. and 3. History numbers as stored; a bad one is unknown, not a failed fleet.

def test_history_integers_stay_integers(app: TestClient, real: redis.Redis) -> None:
    _publish(real, times=2)
    stored = json.loads(real.get(Keys().latest("petsage")) or b"")
    real.xadd(Keys().history("petsage"), {"ts_ms": "1795693901384", "seq": "3", "status": "ok",
                                          "lag_ms": "2.5", "duration_ms": "4",
                                          "queue_depth": "7"})
    response = app.get("/api/heartbeats")
    assert response.status_code == 200
    assert '"ts_ms":1795693901384,' in response.text
    assert "1795693901384.0" not in response.text
    history = response.json()["services"][0]["history"]
    assert [entry["seq"] for entry in history] == [1, 2, 3]
    assert history[1] == {"ts_ms": stored["ts_ms"], "seq": 2, "status": "ok", "lag_ms": 3.0,
                          "duration_ms": 1.0, "queue_depth": None}
    assert history[2] == {"ts_ms": 1795693901384, "seq": 3, "status": "ok", "lag_ms": 2.5,
                          "duration_ms": 4.0, "queue_depth": 7}
    for entry in history:
        assert type(entry["ts_ms"]) is int and type(entry["seq"]) is int
        assert type(entry["lag_ms"]) is float and type(entry["duration_ms"]) is float
    assert type(history[2]["queue_depth"]) is int


@pytest.mark.parametrize(("field", "value"), [
    ("lag_ms", "nan"), ("lag_ms", "inf"), ("lag_ms", "-inf"), ("lag_ms", "1e309"),
    ("duration_ms", "nan"), ("seq", "inf"), ("ts_ms", "1e309"), ("queue_depth", "-inf"),
    ("seq", "1.5"),
])
def test_a_bad_history_number_is_unknown(app: TestClient, real: redis.Redis, field: str,
                                         value: str) -> None:
    _publish(real, "api")
    _publish(real, "billing")
    entry = {"ts_ms": "1795693901384", "seq": "2", "status": "ok", "lag_ms": "2.5",
             "duration_ms": "4.5", "queue_depth": "7", field: value}
    real.xadd(Keys().history("billing"), entry)  # type: ignore[arg-type]
    response = app.get("/api/heartbeats")
    assert response.status_code == 200
    by_name = {s["service"]: s for s in response.json()["services"]}
    assert set(by_name) == {"api", "billing"}
    assert by_name["api"]["state"] == by_name["billing"]["state"] == "fresh"
    expected: dict[str, Any] = {"ts_ms": 1795693901384, "seq": 2, "status": "ok", "lag_ms": 2.5,
                                "duration_ms": 4.5, "queue_depth": 7, field: None}
    assert by_name["billing"]["history"][-1] == expected
    assert [e["seq"] for e in by_name["api"]["history"]] == [1]
    assert app.get("/").status_code == 200
    assert app.get("/dashboard/rows").status_code == 200


def test_history_bytes_that_are_not_utf8_are_unknown(app: TestClient,
                                                     real: redis.Redis) -> None:
    _publish(real, "billing")
    real.xadd(Keys().history("billing"), {"ts_ms": b"\xff", "seq": "2", "status": b"o\xffk",
                                          "lag_ms": b"\xfe1", "duration_ms": "4.5"})
    response = app.get("/api/heartbeats")
    assert response.status_code == 200
    assert response.json()["services"][0]["history"][-1] == {
        "ts_ms": None, "seq": 2, "status": "o\ufffdk", "lag_ms": None, "duration_ms": 4.5}


# 4. ?service= and ?limit=, and nothing else.

def test_service_parameter_selects_one_service(app: TestClient, real: redis.Redis) -> None:
    _publish(real, "api")
    _publish(real, "billing", times=3)
    response = app.get("/api/heartbeats", params={"service": "billing"})
    assert response.status_code == 200
    body = response.json()
    assert (body["store_up"], body["store_problem"]) == (True, None)
    assert [s["service"] for s in body["services"]] == ["billing"]
    assert [e["seq"] for e in body["services"][0]["history"]] == [1, 2, 3]
    assert body["services"][0]["heartbeat"]["seq"] == 3
    nobody = app.get("/api/heartbeats", params={"service": "nobody"})
    assert nobody.status_code == 200
    assert nobody.json() == {"store_up": True, "store_problem": None, "services": [],
                             "total": 0, "next": None}


@pytest.mark.parametrize(("name", "shown"), [
    ("a*b", "'a*b'"), ("", "''"), ("a:b", "'a:b'"), ("x" * 65, "'" + "x" * 40 + "...'"),
    ("a\nb", "'a\\nb'"),
])
def test_invalid_service_parameter_is_400(app: TestClient, name: str, shown: str) -> None:
    response = app.get("/api/heartbeats", params={"service": name})
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"service {shown} is invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ -"}


def test_limit_parameter_is_history_per_service(app: TestClient, real: redis.Redis) -> None:
    _publish(real, "api", times=65)
    _publish(real, "billing", times=2)

    def seqs(**params: str) -> dict[str, list[int]]:
        response = app.get("/api/heartbeats", params=params)
        assert response.status_code == 200
        return {s["service"]: [e["seq"] for e in s["history"]]
                for s in response.json()["services"]}

    assert seqs() == {"api": list(range(6, 66)), "billing": [1, 2]}  # default: 60
    assert seqs(limit="1") == {"api": [65], "billing": [2]}
    assert seqs(limit="3") == {"api": [63, 64, 65], "billing": [1, 2]}
    assert seqs(limit="1000") == {"api": list(range(1, 66)), "billing": [1, 2]}
    assert seqs(limit="2", service="api") == {"api": [64, 65]}


@pytest.mark.parametrize("value", ["0", "1001", "abc", "", "-1", "1.5", "+5", " 5", "00001",
                                   "99999999999999999999"])
def test_invalid_limit_is_400(app: TestClient, value: str) -> None:
    response = app.get("/api/heartbeats", params={"limit": value})
    assert response.status_code == 400
    shown = repr(value if len(value) <= 40 else value[:40] + "...")
    assert response.json() == {"detail": f"limit {shown} is invalid; {LIMIT_ACCEPTED}"}


def test_unknown_or_repeated_parameter_is_400(app: TestClient) -> None:
    response = app.get("/api/heartbeats?services=api")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "unknown query parameter 'services'; accepted: service, limit, after, page_size"}
    response = app.get("/api/heartbeats?limit=5&zz=1&aa=2")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "unknown query parameters 'aa', 'zz'; accepted: service, limit, after, page_size"}
    response = app.get("/api/heartbeats?limit=5&limit=6")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "query parameter limit is given 2 times; accepted: once"}


def test_openapi_documents_the_api_parameters(app: TestClient) -> None:
    operation = app.get("/openapi.json").json()["paths"]["/api/heartbeats"]["get"]
    by_name = {p["name"]: p for p in operation["parameters"]}
    assert set(by_name) == {"service", "limit", "after", "page_size"}
    assert {p["in"] for p in by_name.values()} == {"query"}
    assert not any(p["required"] for p in by_name.values())
    assert by_name["service"]["schema"] == by_name["after"]["schema"] == {
        "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
    assert by_name["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                          "default": 60}
    assert by_name["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                              "default": 500}
    for name in ("service", "limit", "after", "page_size"):
        assert f"?{name}=" in operation["description"]
    fleet = app.get("/openapi.json").json()["components"]["schemas"]["FleetResponse"]
    assert {"total", "next"} <= set(fleet["properties"])
    assert set(operation["responses"]) == {"200", "400", "503"}


# 5. Nothing from another host; no /docs or /redoc.

SERVED_PAGES = ("/", "/dashboard/rows", "/api/heartbeats", "/metrics", "/openapi.json",
                "/system/health", "/system/health/petsage")
URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/\s\"'<>()\\]*)")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_served_pages_reference_no_other_host(own_redis: RedisServer, procs: list[Proc],
                                              tmp_path: Path) -> None:
    _publish(own_redis.client(), "petsage", times=3)
    port = free_port()
    procs.append(Proc(cli_argv("serve", "--port", str(port)), heartbeat_env(own_redis.url),
                      tmp_path, "serve"))
    own = f"127.0.0.1:{port}"
    wait_for(lambda: _get(f"http://{own}/system/health")[0] == 200, STARTUP_S,
             what="serve answering")
    for path in SERVED_PAGES:
        status, body = _get(f"http://{own}{path}")
        assert status == 200, (path, body[:300])
        elsewhere = [host for host in URL.findall(body) if host != own]
        assert elsewhere == [], path
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert _get(f"http://{own}{path}")[0] == 404, path
    assert URL.findall("<script src='https://cdn.example.net/x.js'> //h/y") == [
        "cdn.example.net", "h"]  # the search would see such a reference


def test_docs_and_redoc_are_gone_in_process(app: TestClient) -> None:
    assert app.get("/docs").status_code == 404
    assert app.get("/redoc").status_code == 404
    assert app.get("/openapi.json").status_code == 200


# 6. The schema lists the codes the endpoints really return.

@pytest.fixture(params=["stand-alone", "mounted"])
def schema(request: pytest.FixtureRequest, real: redis.Redis) -> Iterator[dict[str, Any]]:
    """``/openapi.json`` of the stand-alone app and of a backend that mounts the router."""
    configure(settings=SETTINGS, client=real)
    if request.param == "stand-alone":
        application = create_app()
    else:
        application = FastAPI(title="PetSage API")
        application.include_router(router)
    with TestClient(application) as client:
        response = client.get("/openapi.json")
    configure()
    assert response.status_code == 200
    yield response.json()


def test_service_health_schema_lists_400_and_no_422(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/system/health/{service}"]["get"]
    assert set(operation["responses"]) == {"200", "400", "503"}
    bad = operation["responses"]["400"]["content"]["application/json"]["schema"]
    assert bad == {"$ref": "#/components/schemas/ErrorResponse"}
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["detail"]
    assert error["properties"]["detail"]["type"] == "string"
    assert operation["parameters"] == [{
        "name": "service", "in": "path", "required": True,
        "description": "The service to check: 1-64 characters of A-Z a-z 0-9 . _ -.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}]


def test_system_health_schema_lists_200_and_503_only(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/system/health"]["get"]
    assert set(operation["responses"]) == {"200", "503"}
    assert operation["summary"] == "Perform a System Health Check"
    assert operation["tags"] == ["System Health"]


def test_no_operation_lists_422(schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (path, method)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_bad_name_answers_the_documented_400(app: TestClient, real: redis.Redis) -> None:
    _publish(real, "billing")
    assert app.get("/system/health/billing").status_code == 200
    assert app.get("/system/health/nobody").status_code == 503
    response = app.get("/system/health/a*b")
    assert response.status_code == 400
    assert response.json() == {"detail": "service name 'a*b' is invalid; accepted: 1-64 "
                                         "characters of A-Z a-z 0-9 . _ -"}
