"""HTTP: the seed's ``GET /system/health`` router, ``/metrics`` and the dashboard.

Mount the router into the PetSage backend::

    from worker.http import router
    app.include_router(router)

It reads the same environment as the worker (on first request, not at import) unless
``configure(settings=..., client=...)`` is called first. ``create_app()`` builds the
stand-alone app ``petsage-heartbeat serve`` runs. Needs ``petsage-heartbeat[http]``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from worker import dashboard
from worker.clients import make_client
from worker.errors import ConfigError
from worker.fleet import read_fleet
from worker.history import read_histories
from worker.keys import Keys, validate_service
from worker.metrics import registry_for
from worker.reader import HeartbeatReport, read_heartbeat
from worker.report_format import summary
from worker.settings import Settings
from worker.states import State

READ_TIMEOUT_S = 2.0
"""Redis timeout of every HTTP read: a probe behind a load balancer must answer quickly."""


class _Source:
    """Where the HTTP layer reads from: settings and one thread-safe redis-py client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._client: Any = None

    def configure(self, *, settings: Settings | None = None, client: Any = None) -> None:
        with self._lock:
            self._settings = settings
            self._client = client

    @property
    def settings(self) -> Settings:
        with self._lock:
            if self._settings is None:
                self._settings = Settings.from_env()
            return self._settings

    def client(self) -> Any:
        settings = self.settings
        with self._lock:
            if self._client is None:
                self._client = make_client(settings.redis_url, timeout_s=READ_TIMEOUT_S)
            return self._client

    def keys(self) -> Keys:
        return self.settings.keys


source = _Source()
configure = source.configure


class HealthResponse(BaseModel):
    """The seed's health answer, plus which service, its state, age and diagnosis."""

    status: Literal["ok", "degraded", "error"] = Field(
        ..., examples=["ok"], description="The operational status of the service.")
    message: str = Field(..., examples=["PetSage system is alive and purring!"],
                         description="A confirmation message, or what is wrong.")
    timestamp: datetime = Field(
        ..., description="UTC time of the last heartbeat (of the check, when there is none).")
    service: str = Field(..., examples=["petsage"], description="The service checked.")
    state: Literal["fresh", "late", "stale", "missing", "invalid", "unreachable"] = Field(
        ..., examples=["fresh"], description="The heartbeat's state on the Redis clock.")
    age_s: float | None = Field(None, examples=[2.1],
                                description="Seconds since the last heartbeat.")
    diagnosis: str | None = Field(None, examples=[None],
                                  description="Which hop broke, when not fresh.")


def health_response(report: HeartbeatReport) -> HealthResponse:
    """Map a report onto the seed's contract."""
    payload = report.payload
    working = report.state in (State.FRESH, State.LATE) and payload is not None
    if payload is not None:
        timestamp = datetime.fromtimestamp(payload["ts_ms"] / 1000, tz=UTC)
    elif report.now_ms is not None:
        timestamp = datetime.fromtimestamp(report.now_ms / 1000, tz=UTC)
    else:
        timestamp = datetime.now(UTC)
    return HealthResponse(
        status=payload["status"] if working and payload is not None else "error",
        message=payload["message"] if working and payload is not None else report.reason,
        timestamp=timestamp,
        service=report.service,
        state=report.state.value,
        age_s=None if report.age_s is None else round(report.age_s, 3),
        diagnosis=report.diagnosis,
    )


router = APIRouter(prefix="/system", tags=["System Health"])

_DESCRIPTION = """
Reports whether PetSage's scheduled heartbeat is fresh: proof, renewed every interval,
that Celery beat, the broker, a worker and the Redis store all work.

- **200** while the heartbeat is fresh or late (the pipeline works).
- **503** when it is stale, missing, invalid, or Redis cannot be asked: load balancers and
  orchestrators act on the code.
"""
_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthResponse, "description": "Stale, missing, invalid or unreachable"},
}


def _answer(service: str, response: Response) -> HealthResponse:
    try:
        validate_service(service)
    except ConfigError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    report = read_heartbeat(source.client(), service, keys=source.keys())
    response.status_code = report.state.http_status
    return health_response(report)


@router.get("/health", response_model=HealthResponse, summary="Perform a System Health Check",
            description=_DESCRIPTION, responses=_RESPONSES)
def get_system_health(response: Response) -> HealthResponse:
    """The configured service's heartbeat (``HEARTBEAT_SERVICE``)."""
    return _answer(source.settings.service, response)


@router.get("/health/{service}", response_model=HealthResponse,
            summary="Perform a System Health Check of one service", responses=_RESPONSES)
def get_service_health(service: str, response: Response) -> HealthResponse:
    """Another service's heartbeat from the same store."""
    return _answer(service, response)


def _fleet() -> tuple[list[HeartbeatReport], str | None]:
    result = read_fleet(source.client(), source.keys())
    if isinstance(result, HeartbeatReport):
        return [], result.reason
    return result, None


def create_app() -> FastAPI:
    """The stand-alone app: the router, ``/metrics``, ``/`` and ``/api/heartbeats``."""
    app = FastAPI(title="PetSage heartbeat", version=_version(),
                  description="Scheduled heartbeat of the PetSage Celery pipeline.")
    app.include_router(router)
    registry = registry_for(source.client, source.keys)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/heartbeats", summary="Every service's heartbeat, with recent history")
    def api_heartbeats() -> JSONResponse:
        reports, problem = _fleet()
        histories = read_histories(source.client(), source.keys(),
                                   [r.service for r in reports], dashboard.HISTORY_POINTS)
        return JSONResponse({
            "store_up": problem is None,
            "store_problem": problem,
            "services": [{**summary(r), "history": histories.get(r.service, [])}
                         for r in reports],
        })

    def _rows() -> tuple[str, str | None]:
        reports, problem = _fleet()
        histories = read_histories(source.client(), source.keys(),
                                   [r.service for r in reports], dashboard.HISTORY_POINTS)
        return dashboard.rows(reports, histories), problem

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        body, problem = _rows()
        return HTMLResponse(dashboard.page(body, store_problem=problem))

    @app.get("/dashboard/rows", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_rows() -> HTMLResponse:
        body, problem = _rows()
        headers = {"X-Store-Problem": "1"} if problem else {}
        return HTMLResponse(body, headers=headers)

    return app


def _version() -> str:
    from worker.version import __version__

    return __version__
