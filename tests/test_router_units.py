"""The HTTP routes in process on fakeredis: each refused query's whole one-line message at
its bounds, pages cut by name with their cursor, large answers sent in slices, the store's
problem logged at once when it changes and every 30 s otherwise, and the schema's token
notes."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import fakeredis
import pytest
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from tests.support.http_app import petsage_app
from tests.support.publishing import publish
from worker.core.settings import Settings
from worker.http.guard import GuardOptions, Token
from worker.http.router import (
    PUBLIC_PROBLEM,
    STREAM_SLICE,
    Answer,
    _Logged,
    _shown,
    configure,
    create_app,
    public_problem,
)

router = importlib.import_module("worker.http.router")


@pytest.fixture
def http(fake: fakeredis.FakeRedis) -> Iterator[TestClient]:
    """The app on the ``fake`` of tests/conftest.py, where each test publishes its data."""
    with petsage_app(fake) as client:
        yield client


def _detail(http: TestClient, query: str) -> str:
    answer = http.get("/api/heartbeats?" + query)
    assert answer.status_code == 400, query
    return str(answer.json()["detail"])


def test_each_refused_query_is_one_whole_line(http: TestClient) -> None:
    accepted = "accepted: service, limit, after, page_size"
    assert _detail(http, "x=1") == f"unknown query parameter 'x'; {accepted}"
    assert _detail(http, "b=1&a=2&c=3&d=4&e=5&f=6") == (
        f"unknown query parameters 'a', 'b', 'c', 'd', 'e'; {accepted}")
    assert _detail(http, "after=a&after=b&after=c") == (
        "query parameter after is given 3 times; accepted: once")
    for name, most in (("limit", 1000), ("page_size", 1000)):
        for bad in ("0", str(most + 1), "01", "1.5", "12345"):
            assert _detail(http, f"{name}={bad}") == (
                f"{name} '{bad}' is invalid; accepted: an integer 1-{most}"), bad
        assert http.get(f"/api/heartbeats?{name}={most}").status_code == 200
        assert http.get(f"/api/heartbeats?{name}=1").status_code == 200
    assert _detail(http, "after=a*b").startswith("after 'a*b' is invalid")
    entries = http.get("/api/entries?service=x&y=1")
    assert entries.json()["detail"] == "unknown query parameter 'y'; accepted: service"


def test_a_refused_value_is_quoted_cut_at_40_characters() -> None:
    assert _shown("a" * 40) == repr("a" * 40)
    assert _shown("a" * 41) == repr("a" * 40 + "...")
    assert _shown("\x1b") == "'\\x1b'"


def test_pages_cut_the_index_by_name_with_a_cursor(http: TestClient,
                                                   fake: fakeredis.FakeRedis) -> None:
    for name in ("a", "b", "c", "d", "e"):
        publish(fake, name)
    def names(query: str) -> tuple[list[str], str | None, int]:
        data = http.get("/api/heartbeats?" + query).json()
        return sorted(s["service"] for s in data["services"]), data["next"], data["total"]

    assert names("page_size=2") == (["a", "b"], "b", 5)
    assert names("page_size=2&after=b") == (["c", "d"], "d", 5)
    assert names("page_size=2&after=d") == (["e"], None, 5)
    assert names("page_size=3&after=b") == (["c", "d", "e"], None, 5)
    assert names("after=e") == ([], None, 5)
    assert names("after=0") == (["a", "b", "c", "d", "e"], None, 5)
    assert names("page_size=1000&limit=1000") == (["a", "b", "c", "d", "e"], None, 5)
    assert names("service=c") == (["c"], None, 1)
    assert names("service=zz") == ([], None, 0)


def test_the_history_bound_sets_the_page_size(http: TestClient, fake: fakeredis.FakeRedis,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c"):
        publish(fake, name)
    monkeypatch.setattr(router, "MAX_PAGE_HISTORY", 2000)
    data = http.get("/api/heartbeats?limit=1000").json()
    assert sorted(s["service"] for s in data["services"]) == ["a", "b"] and data["next"] == "b"
    data = http.get("/api/heartbeats?limit=999").json()
    assert sorted(s["service"] for s in data["services"]) == ["a", "b"]
    monkeypatch.setattr(router, "MAX_PAGE_HISTORY", 10)
    assert len(http.get("/api/heartbeats?limit=1000").json()["services"]) == 1  # at least 1


def test_a_large_answer_goes_out_in_slices() -> None:
    small = Answer(201, b"x" * STREAM_SLICE, "text/plain", (("X-A", "1"),)).response()
    assert not isinstance(small, StreamingResponse)
    assert (small.status_code, small.body, small.headers["x-a"]) == (201, b"x" * STREAM_SLICE,
                                                                     "1")
    assert small.headers["content-type"] == "text/plain; charset=utf-8"
    body = b"".join(bytes([65 + i]) * STREAM_SLICE for i in range(2)) + b"z"
    big = Answer(200, body, "application/json").response()
    assert isinstance(big, StreamingResponse)
    assert big.headers["content-length"] == str(len(body))

    async def read() -> list[bytes]:
        return [bytes(s) async for s in big.body_iterator]  # type: ignore[union-attr]

    slices = asyncio.run(read())
    assert slices == [b"A" * STREAM_SLICE, b"B" * STREAM_SLICE, b"z"]


def test_the_store_s_problem_is_logged_when_it_changes_else_every_30_s(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(router, "time", SimpleNamespace(monotonic=lambda: clock.now))
    monkeypatch.setattr(_Logged, "text", "")
    monkeypatch.setattr(_Logged, "at", 0.0)
    caplog.set_level(logging.WARNING, "petsage_heartbeat.http")
    assert public_problem(None) is None
    assert public_problem("down redis://:pw@h:1") == PUBLIC_PROBLEM
    clock.now = 1029.9
    public_problem("down redis://:pw@h:1")
    clock.now = 1030.0
    public_problem("down redis://:pw@h:1")
    public_problem("other")
    public_problem("x" * 400)
    assert [r.getMessage() for r in caplog.records] == [
        "store unreachable: down redis://:***@h:1", "store unreachable: down redis://:***@h:1",
        "store unreachable: other", "store unreachable: " + "x" * 300]


def test_with_a_token_the_schema_says_which_operations_need_it(
        fake: fakeredis.FakeRedis) -> None:
    configure(settings=Settings.from_env({}), client=fake)
    try:
        app = create_app(guard=GuardOptions(token=Token("t" * 16)))
        schema = app.openapi()
        assert app.openapi() is schema
        assert schema["components"]["securitySchemes"] == {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "The token serve was started with (HEARTBEAT_HTTP_TOKEN)."}}
        get = schema["paths"]["/api/heartbeats"]["get"]
        assert get["security"] == [{"bearer": []}]
        assert get["responses"]["401"] == {"description": "No token, or a wrong one"}
        for path in ("/system/health", "/system/health/{service}"):
            assert "security" not in schema["paths"][path]["get"]
            assert "401" not in schema["paths"][path]["get"]["responses"]
        plain = create_app(guard=GuardOptions()).openapi()
        assert "securitySchemes" not in plain.get("components", {})
    finally:
        configure()


def test_answers_are_kept_for_cache_s(fake: fakeredis.FakeRedis) -> None:
    publish(fake, "petsage")
    configure(settings=Settings.from_env({"HEARTBEAT_SERVICE": "petsage"}), client=fake)
    try:
        with TestClient(create_app(cache_s=3600.0)) as http:
            first = http.get("/api/heartbeats").json()
            publish(fake, "billing")
            assert http.get("/api/heartbeats").json() == first
            assert json.loads(http.get("/api/entries").text)["service"] == "petsage"
    finally:
        configure()
