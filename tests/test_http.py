"""The seed's router, /metrics and the dashboard, in-process with FastAPI's TestClient."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.publishing import backdate, publish
from worker.core.names import Keys
from worker.core.payload import DEFAULT_MESSAGE
from worker.core.settings import Settings
from worker.http.router import configure, create_app, router
from worker.publish.beat_marker import BeatMarker

SETTINGS = Settings.from_env({"HEARTBEAT_SERVICE": "petsage"})


@pytest.fixture
def api(real: redis.Redis) -> Iterator[TestClient]:
    """The router mounted into a bare app, as the PetSage backend mounts it."""
    configure(settings=SETTINGS, client=real)
    app = FastAPI(title="PetSage API")
    app.include_router(router)
    with TestClient(app) as client:
        yield client
    configure()


@pytest.mark.parametrize(
    ("setup", "code", "state", "status", "diagnosis"),
    [
        ("fresh", 200, "fresh", "ok", None),
        ("late", 200, "late", "ok", "beat_down"),  # no beat marker was written here
        ("degraded", 200, "late", "degraded", "check_failed"),
        ("stale", 503, "stale", "error", "beat_down"),
        ("error", 503, "stale", "error", "check_failed"),
        ("missing", 503, "missing", "error", "never_seen"),
        ("invalid", 503, "invalid", "error", None),
    ],
)
def test_system_health_for_every_state(api: TestClient, real: redis.Redis, setup: str,
                                       code: int, state: str, status: str,
                                       diagnosis: str | None) -> None:
    if setup == "invalid":
        real.set(Keys().latest("petsage"), b"{not json")
    elif setup != "missing":
        publish(real, status={"degraded": "degraded", "error": "error"}.get(setup, "ok"))
        backdate(real, "petsage", {"late": 20, "stale": 40}.get(setup, 0))
    response = api.get("/system/health")
    assert response.status_code == code
    body = response.json()
    assert set(body) == {"status", "message", "timestamp", "service", "state", "age_s",
                         "diagnosis"}
    assert (body["state"], body["status"], body["service"]) == (state, status, "petsage")
    assert body["timestamp"]
    if setup == "fresh":
        assert body["message"] == DEFAULT_MESSAGE and body["diagnosis"] is None
        assert 0 <= body["age_s"] < 5
    assert body["diagnosis"] == diagnosis  # pinned: the right hop, not any of them
    if code == 503:
        assert body["message"]


def test_unreachable_store_is_503_with_store_unreachable() -> None:
    configure(settings=SETTINGS, client=redis.Redis(port=1, socket_connect_timeout=0.3,
                                                    retry=None))
    app = FastAPI()
    app.include_router(router)
    try:
        response = TestClient(app).get("/system/health")
    finally:
        configure()
    assert response.status_code == 503
    body = response.json()
    assert body["state"] == "unreachable" and body["diagnosis"] == "store_unreachable"


def test_other_services_and_bad_names(api: TestClient, real: redis.Redis) -> None:
    publish(real, "billing")
    assert api.get("/system/health/billing").json()["service"] == "billing"
    assert api.get("/system/health/billing").status_code == 200
    assert api.get("/system/health/nobody").status_code == 503
    bad = api.get("/system/health/a*b")
    assert bad.status_code == 400 and "accepted" in bad.json()["detail"]


def test_openapi_keeps_the_seed_summary_and_tag(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    operation = schema["paths"]["/system/health"]["get"]
    assert operation["summary"] == "Perform a System Health Check"
    assert "System Health" in operation["tags"]
    assert {"200", "503"} <= set(operation["responses"])
    model = schema["components"]["schemas"]["HealthResponse"]["properties"]
    assert {"status", "message", "timestamp", "service", "state", "age_s", "diagnosis"} <= set(
        model)


def test_metrics_api_and_dashboard_in_process(real: redis.Redis) -> None:
    publish(real, "api", interval_s=10)
    publish(real, "old", interval_s=1)
    backdate(real, "old", 30)
    BeatMarker(real, Keys(), "old", interval_s=1, retention_s=60).record_publish()
    configure(settings=SETTINGS, client=real)
    try:
        client = TestClient(create_app())
        metrics = client.get("/metrics").text
        data = client.get("/api/heartbeats").json()
        page = client.get("/").text
    finally:
        configure()
    assert 'petsage_heartbeat_up{service="api"} 1.0' in metrics
    assert 'petsage_heartbeat_state{service="old",state="stale"} 1.0' in metrics
    assert 'petsage_heartbeat_diagnosis{diagnosis="no_consumer",service="old"} 1.0' in metrics
    assert "petsage_heartbeat_store_up 1.0" in metrics
    assert data["store_up"] is True
    by_name = {s["service"]: s for s in data["services"]}
    assert by_name["old"]["state"] == "stale" and by_name["api"]["state"] == "fresh"
    assert by_name["api"]["history"][-1]["seq"] == 1
    assert 'data-service="api" data-state="fresh"' in page
    assert 'data-service="old" data-state="stale"' in page
    assert "http://" not in page.replace('http-equiv', '')  # nothing loads from elsewhere
    assert "<script src" not in page
    json.dumps(data)  # plain JSON all the way down
