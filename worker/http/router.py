"""HTTP: PetSage's ``GET /system/health`` router, ``/metrics`` and the dashboard.

Mount the router into the PetSage backend::

    from worker.http.router import router
    app.include_router(router)

It reads the same environment as the worker (on first request, not at import) unless
``configure(settings=..., client=...)`` is called first. ``create_app()`` builds the
stand-alone app ``petsage-heartbeat serve`` runs. Needs ``petsage-heartbeat[http]``.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from worker.core.errors import ConfigError
from worker.core.names import SERVICE_PATTERN, Keys, validate_service
from worker.core.redis_clients import make_client
from worker.core.settings import Settings
from worker.core.states import Diagnosis, State
from worker.core.urls import redact
from worker.http import dashboard
from worker.http.metrics import CONTENT_TYPE, scrape
from worker.http.shared_read import SharedRead
from worker.read.entries import read_entries
from worker.read.entry_scrape import EntriesFleet, read_fleet_entries
from worker.read.fleet import fleet_services, read_fleet
from worker.read.history import read_histories
from worker.read.incidents import IncidentSummary, read_incidents
from worker.read.reader import HeartbeatReport, read_heartbeat
from worker.read.render import summary

log = logging.getLogger("petsage_heartbeat.http")

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
        self.fleet.forget()

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

    @cached_property
    def fleet(self) -> SharedRead:
        """The whole fleet, one read shared by concurrent requests (``shared_read``)."""
        return SharedRead(lambda: read_fleet(self.client(), self.keys()))


source = _Source()
configure = source.configure


class HealthResponse(BaseModel):
    """PetSage's health answer (status, message, timestamp), plus service, state, age, diagnosis."""

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
    diagnosis: str | None = Field(
        None, examples=[None],
        description="Which hop broke, when not fresh: " + ", ".join(d.value for d in Diagnosis)
                    + " (beat_or_broker: beat or the broker, not known yet).")


class ErrorResponse(BaseModel):
    """The body of every 400: one line saying what was refused and what is accepted."""

    detail: str = Field(..., examples=["service name 'a*b' is invalid; accepted: 1-64 "
                                       "characters of A-Z a-z 0-9 . _ -"],
                        description="What was refused, and what is accepted.")


class FleetResponse(BaseModel):
    """``/api/heartbeats``: whether the store answered, and each service with its history."""

    store_up: bool = Field(..., description="False when the store could not be asked (503).")
    store_problem: str | None = Field(None, description="Why the store could not be asked.")
    services: list[dict[str, Any]] = Field(
        ..., description="One summary per service, worst first, each with ``history``: its "
                         "last heartbeats, oldest first (``ts_ms``, ``seq``, ``queue_depth`` "
                         "integers; ``lag_ms``, ``duration_ms`` floats; null when unknown).")


class EntriesResponse(BaseModel):
    """``/api/entries``: whether the store answered, and the service's beat entries."""

    store_up: bool = Field(..., description="False when the store could not be asked (503).")
    store_problem: str | None = Field(None, description="Why the store could not be asked.")
    service: str = Field(..., examples=["petsage"], description="The service read.")
    now_ms: int | None = Field(None, description="The Redis clock of the read (epoch ms).")
    entries: list[dict[str, Any]] = Field(
        ..., description="Every watched entry, worst first: ``name``, ``state`` (missed, "
                         "not_started, overrun, failed, removed, duplicate, retrying, running, "
                         "pending, ok), ``diagnosis``, ``reason``, ``task``, ``schedule``, "
                         "``kind``, ``tz``, ``queue``, ``grace_s``, ``max_runtime_s``, "
                         "``next_due_ms``, ``last_success_ms``, ``last_duration_ms``, "
                         "``last_queue_wait_ms``, ``removed_ms``, ``counts``, ``run`` "
                         "(docs/entries.md).")


def health_response(report: HeartbeatReport) -> HealthResponse:
    """Map a report onto PetSage's ``/system/health`` contract."""
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
_BAD_SERVICE: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid service name"},
}
_SERVICE_SCHEMA = {"type": "string", "pattern": f"^{SERVICE_PATTERN.pattern}$"}
"""A service name as the schema states it: anchored, as OpenAPI patterns are not."""

# Why the path parameter is declared here and read from the request rather than declared as
# a function argument: FastAPI adds a 422 "Validation Error" to every operation with declared
# parameters, yet a ``str`` path segment can never fail FastAPI's validation; the name is
# checked by ``validate_service`` and refused with 400. Declaring it in ``openapi_extra``
# leaves FastAPI nothing to validate, so the schema lists only the codes really returned,
# while still documenting the parameter (required, with its pattern). Doing it on the route,
# not by post-processing ``app.openapi()``, keeps the schema honest in every app that mounts
# the router (the PetSage backend's too); and it avoids a catch-all "4XX", which would be
# valid but vague.
_SERVICE_PARAMETER = {
    "name": "service", "in": "path", "required": True,
    "description": "The service to check: 1-64 characters of A-Z a-z 0-9 . _ -.",
    "schema": _SERVICE_SCHEMA,
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
            summary="Perform a System Health Check of one service",
            responses={**_BAD_SERVICE, **_RESPONSES},
            openapi_extra={"parameters": [_SERVICE_PARAMETER]})
def get_service_health(request: Request, response: Response) -> HealthResponse:
    """Another service's heartbeat from the same store (400 for an invalid name)."""
    return _answer(request.path_params["service"], response)


def _fleet(only: str | None = None) -> tuple[list[HeartbeatReport], str | None]:
    """The fleet's reports (or just ``only``'s, if indexed) and why the store failed, if it did."""
    fleet = source.fleet() if only is None else read_fleet(source.client(), source.keys(),
                                                           only=only)
    return fleet.reports, fleet.store_problem


def _records(services: list[str]) -> tuple[int, dict[str, IncidentSummary] | None]:
    """The monitors' record of ``services`` (uptime, outages, silence), or None when the
    store failed it: the heartbeats already read are still answered."""
    if not services:
        return 0, {}
    try:
        return read_incidents(source.client(), source.keys(), services)
    except Exception as exc:  # the record is extra: a failed read leaves it out
        log.warning("could not read the monitors' record: %s", redact(str(exc))[:200])
        return 0, None


API_PARAMETERS = ("service", "limit")
"""The query parameters ``/api/heartbeats`` accepts; any other is refused with 400."""

MAX_HISTORY_LIMIT = 1000
"""Most history entries per service one ``/api/heartbeats`` answer carries."""

_LIMIT = re.compile(r"[1-9][0-9]{0,3}")

_API_DESCRIPTION = f"""
Every service in the fleet index, worst first, each with its recent history (oldest first).

Query parameters (any other is refused with **400**):

- `?service=NAME`: only that service. An invalid name (accepted: 1-64 characters of
  A-Z a-z 0-9 . _ -) is **400**; a valid name that is not in the index gives `services: []`.
- `?limit=N`: history entries per service, an integer 1-{MAX_HISTORY_LIMIT}
  (default {dashboard.HISTORY_POINTS}); anything else is **400**.

**200** when the store answered (`store_up: true`, even with no service); **503** when it
could not be asked (`store_up: false`, `store_problem` says why, `services: []`).
"""
_API_OPENAPI: dict[str, Any] = {"parameters": [
    {"name": "service", "in": "query", "required": False, "schema": _SERVICE_SCHEMA,
     "description": "Only this service; a valid name that is not indexed gives no services."},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT,
                "default": dashboard.HISTORY_POINTS},
     "description": "History entries per service."},
]}
"""Declared here and read from the request, as for ``/system/health/{service}``: FastAPI's
own parsing would answer 422 with a list of errors, where this API answers 400, one line."""
_API_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": FleetResponse, "description": "The store answered"},
    400: {"model": ErrorResponse, "description": "An unknown, repeated or invalid parameter"},
    503: {"model": FleetResponse, "description": "The store could not be asked"},
}


def _shown(value: str) -> str:
    """Quote a refused value for a one-line error, cut short, control characters escaped."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _query_service(request: Request, accepted: tuple[str, ...]) -> str | None:
    """The ``service`` query parameter, checked; HTTP 400 for an unknown or repeated
    parameter or an invalid name."""
    params = request.query_params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        names = ", ".join(_shown(name) for name in unknown[:5])
        plural = "s" if len(unknown) > 1 else ""
        raise HTTPException(status_code=400, detail=f"unknown query parameter{plural} {names}; "
                                                    f"accepted: {', '.join(accepted)}")
    for name in accepted:
        given = len(params.getlist(name))
        if given > 1:
            raise HTTPException(status_code=400, detail=f"query parameter {name} is given "
                                                        f"{given} times; accepted: once")
    service = params.get("service")
    if service is not None:
        try:
            validate_service(service, source="service")
        except ConfigError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
    return service


ENTRIES_PARAMETERS = ("service",)
"""The query parameters ``/api/entries`` accepts; any other is refused with 400."""

_ENTRIES_DESCRIPTION = """
The beat entries of one service, worst first, each with its state, the hop that broke
(`diagnosis`), one line of why, its schedule and its last run (docs/entries.md).

- `?service=NAME`: the service (default: the configured `HEARTBEAT_SERVICE`). An invalid
  name (accepted: 1-64 characters of A-Z a-z 0-9 . _ -) is **400**, as is any other
  parameter; a service with no watched entry gives `entries: []`.

**200** when the store answered; **503** when it could not be asked (`store_up: false`,
`store_problem` says why, `entries: []`).
"""
_ENTRIES_OPENAPI: dict[str, Any] = {"parameters": [
    {"name": "service", "in": "query", "required": False, "schema": _SERVICE_SCHEMA,
     "description": "The service (default: the configured one)."},
]}
_ENTRIES_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": EntriesResponse, "description": "The store answered"},
    400: {"model": ErrorResponse, "description": "An unknown, repeated or invalid parameter"},
    503: {"model": EntriesResponse, "description": "The store could not be asked"},
}


def _api_query(request: Request) -> tuple[str | None, int]:
    """``/api/heartbeats``' ``service`` and ``limit``; HTTP 400 for anything else."""
    service = _query_service(request, API_PARAMETERS)
    params = request.query_params
    text = params.get("limit")
    if text is None:
        return service, dashboard.HISTORY_POINTS
    if not _LIMIT.fullmatch(text) or int(text) > MAX_HISTORY_LIMIT:
        raise HTTPException(status_code=400, detail=f"limit {_shown(text)} is invalid; "
                                                    f"accepted: an integer 1-{MAX_HISTORY_LIMIT}")
    return service, int(text)


def create_app() -> FastAPI:
    """The stand-alone app: the router, ``/metrics``, ``/``, ``/api/heartbeats`` and
    ``/api/entries``.

    No ``/docs`` or ``/redoc``: FastAPI's pages load their scripts from a public CDN, so
    they are blank offline and reach another host; ``/openapi.json`` stays.
    """
    app = FastAPI(title="PetSage heartbeat", version=_version(),
                  description="Scheduled heartbeat of the PetSage Celery pipeline.",
                  docs_url=None, redoc_url=None)
    app.include_router(router)
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(scrape(source.fleet, lambda names: _records(names)[1], _entries),
                        media_type=CONTENT_TYPE)

    @app.get("/api/entries", summary="The beat entries of one service, worst first",
             description=_ENTRIES_DESCRIPTION, response_model=None,
             responses=_ENTRIES_RESPONSES, openapi_extra=_ENTRIES_OPENAPI)
    def api_entries(request: Request) -> JSONResponse:
        service = _query_service(request, ENTRIES_PARAMETERS) or source.settings.service
        report = read_entries(source.client(), service, keys=source.keys())
        problem = None if report.error is None else (
            f"Redis could not be asked: {redact(report.error)[:200]}")
        return JSONResponse({
            "store_up": problem is None, "store_problem": problem, "service": service,
            "now_ms": report.now_ms, "entries": [e.as_json() for e in report.entries],
        }, status_code=200 if problem is None else 503)

    @app.get("/api/heartbeats", summary="Every service's heartbeat, with recent history",
             description=_API_DESCRIPTION, response_model=None, responses=_API_RESPONSES,
             openapi_extra=_API_OPENAPI)
    def api_heartbeats(request: Request) -> JSONResponse:
        service, limit = _api_query(request)
        reports, problem = _fleet(service)
        names = [r.service for r in reports]
        histories = read_histories(source.client(), source.keys(), names, limit)
        now_ms, records = _records(names)
        return JSONResponse({
            "store_up": problem is None,
            "store_problem": problem,
            "services": [{**summary(r), "history": histories.get(r.service, []),
                          "incidents": None if records is None or r.service not in records
                          else records[r.service].as_json(now_ms)}
                         for r in reports],
        }, status_code=200 if problem is None else 503)

    def _rows() -> tuple[str, str | None]:
        reports, problem = _fleet()
        names = [r.service for r in reports]
        histories = read_histories(source.client(), source.keys(), names,
                                   dashboard.HISTORY_POINTS)
        now_ms, records = _records(names)
        return dashboard.rows(reports, histories, store_problem=problem, records=records,
                              now_ms=now_ms), problem

    def _entry_sections() -> str:
        try:  # the index only: the rows have read the fleet already
            services = fleet_services(source.client(), source.keys())
        except Exception:  # the rows' banner says the store is unreachable
            return ""
        return dashboard.entry_sections(_entries(services))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        body, _ = _rows()
        return HTMLResponse(dashboard.page(body, _entry_sections()))

    @app.get("/dashboard/rows", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_rows() -> HTMLResponse:
        body, problem = _rows()
        headers = {"X-Store-Problem": "1"} if problem else {}
        return HTMLResponse(body, headers=headers)

    @app.get("/dashboard/entries", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_entries() -> HTMLResponse:
        return HTMLResponse(_entry_sections())

    return app


def _entries(services: list[str]) -> EntriesFleet:
    """The beat entries of ``services`` (those that have any), bounded; never raises."""
    return read_fleet_entries(source.client(), services, source.keys())


def _version() -> str:
    from worker.core.version import __version__

    return __version__
