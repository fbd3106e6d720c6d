"""HTTP: PetSage's ``GET /system/health`` router, ``/metrics`` and the dashboard.

Mount the router into the PetSage backend::

    from worker.http.router import router
    app.include_router(router)

It reads the same environment as the worker (on first request, not at import) unless
``configure(settings=..., client=...)`` is called first. ``create_app()`` builds the
stand-alone app ``petsage-heartbeat serve`` runs. Needs ``petsage-heartbeat[http]``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal, NamedTuple

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from worker.core.errors import ConfigError
from worker.core.names import SERVICE_PATTERN, Keys, validate_service
from worker.core.redis_clients import make_client
from worker.core.settings import Settings
from worker.core.states import Diagnosis, State
from worker.core.urls import redact
from worker.http import dashboard
from worker.http.guard import Guard, GuardOptions
from worker.http.metrics import CONTENT_TYPE, scrape
from worker.http.shared_read import AnswerCache, SharedRead
from worker.read.entries import read_entries
from worker.read.entry_scrape import EntriesFleet, read_fleet_entries
from worker.read.fleet import Fleet, fleet_services, read_fleet, read_listed, sort_worst_first
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
        self.names.forget()

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

    def keep_for(self, max_age_s: float) -> None:
        """Share each fleet read with the requests of the next ``max_age_s`` too."""
        self.fleet.max_age_s = max_age_s
        self.names.max_age_s = max_age_s

    @cached_property
    def fleet(self) -> SharedRead[Fleet]:
        """The whole fleet, one read shared by concurrent requests (``shared_read``)."""
        return SharedRead(lambda: read_fleet(self.client(), self.keys()))

    @cached_property
    def names(self) -> SharedRead[Names]:
        """The index's service names in name order, one read shared likewise."""
        return SharedRead(self._read_names)

    def _read_names(self) -> Names:
        try:
            return Names(sorted(fleet_services(self.client(), self.keys())), None)
        except Exception as exc:  # the reader reports, never raises
            return Names([], f"Redis could not be asked: {redact(str(exc))[:200]}")


class Names(NamedTuple):
    """The index's valid service names, sorted, or why the store could not be asked."""

    names: list[str]
    store_problem: str | None


PUBLIC_PROBLEM = "Redis could not be asked (the reason is in the server log)"
"""What HTTP clients are told when the store can't be asked: its error text (a refused
password, a host name, a TLS detail) goes to the server's log only."""

class _Logged:
    text = ""
    at = 0.0


_LOG_EVERY_S = 30.0


def public_problem(detail: str | None) -> str | None:
    """``PUBLIC_PROBLEM`` for a store problem (None for none); the detail, redacted, goes to
    the log: at once when it changes, else at most every 30 s."""
    if detail is None:
        return None
    text = redact(detail)[:300]
    now = time.monotonic()
    with _LOG_LOCK:
        if text != _Logged.text or now - _Logged.at >= _LOG_EVERY_S:
            _Logged.text, _Logged.at = text, now
            log.warning("store unreachable: %s", text)
    return PUBLIC_PROBLEM


_LOG_LOCK = threading.Lock()


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
    store_problem: str | None = Field(
        None, description="Why the store could not be asked: always " + repr(PUBLIC_PROBLEM)
                          + " (the detail is in the server's log).")
    services: list[dict[str, Any]] = Field(
        ..., description="The page's services, worst first, each with ``history``: its "
                         "last heartbeats, oldest first (``ts_ms``, ``seq``, ``queue_depth`` "
                         "integers; ``lag_ms``, ``duration_ms`` floats; null when unknown).")
    total: int = Field(..., description="Services the query matches: the whole index, or 0 "
                                        "or 1 with ``service``.")
    next: str | None = Field(
        None, description="The last service name of this page when more follow: pass it as "
                          "``after`` for the next page; null on the last page.")


class EntriesResponse(BaseModel):
    """``/api/entries``: whether the store answered, and the service's beat entries."""

    store_up: bool = Field(..., description="False when the store could not be asked (503).")
    store_problem: str | None = Field(
        None, description="Why the store could not be asked: always " + repr(PUBLIC_PROBLEM)
                          + " (the detail is in the server's log).")
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
    if report.state is State.UNREACHABLE:
        report = report._replace(reason=public_problem(report.reason) or PUBLIC_PROBLEM)
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


API_PARAMETERS = ("service", "limit", "after", "page_size")
"""The query parameters ``/api/heartbeats`` accepts; any other is refused with 400."""

MAX_HISTORY_LIMIT = 1000
"""Most history entries per service one ``/api/heartbeats`` answer carries."""

DEFAULT_PAGE_SIZE = 500
"""Services per ``/api/heartbeats`` page unless ``page_size`` says otherwise."""

MAX_PAGE_SIZE = 1000
"""Most services one ``/api/heartbeats`` page carries."""

MAX_PAGE_HISTORY = 30_000
"""Most history entries one page carries in all: a page holds at most this many divided by
``limit`` services (500 at the default 60, 30 at ``limit=1000``), so an answer's size is
bounded whatever the query."""

CACHE_S = 1.0
"""How long ``serve`` keeps a fleet read and each answer for the requests that follow."""

_INTEGER = re.compile(r"[1-9][0-9]{0,3}")

_API_DESCRIPTION = f"""
The services of the fleet index, a page at a time, each with its recent history (oldest
first). Pages cut the index in service-name order; each page lists its services worst
first. `next` is the last name of the page when more follow: pass it as `after`.

Query parameters (any other, or one given twice, is refused with **400**):

- `?service=NAME`: only that service. An invalid name (accepted: 1-64 characters of
  A-Z a-z 0-9 . _ -) is **400**; a valid name that is not in the index gives `services: []`.
- `?after=NAME`: the page of the services whose names sort after NAME (a service name).
- `?page_size=N`: services per page, an integer 1-{MAX_PAGE_SIZE} (default
  {DEFAULT_PAGE_SIZE}); a page also holds at most {MAX_PAGE_HISTORY:,} history entries in
  all, so at `limit=1000` it holds {MAX_PAGE_HISTORY // MAX_HISTORY_LIMIT} services.
- `?limit=N`: history entries per service, an integer 1-{MAX_HISTORY_LIMIT}
  (default {dashboard.HISTORY_POINTS}).

**200** when the store answered (`store_up: true`, even with no service); **503** when it
could not be asked (`store_up: false`, `store_problem` says so, `services: []`).
"""
_API_OPENAPI: dict[str, Any] = {"parameters": [
    {"name": "service", "in": "query", "required": False, "schema": _SERVICE_SCHEMA,
     "description": "Only this service; a valid name that is not indexed gives no services."},
    {"name": "after", "in": "query", "required": False, "schema": _SERVICE_SCHEMA,
     "description": "The cursor: the page of the services whose names sort after this one "
                    "(the previous page's ``next``)."},
    {"name": "page_size", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                "default": DEFAULT_PAGE_SIZE},
     "description": f"Services per page (and at most {MAX_PAGE_HISTORY} history entries in "
                    "all)."},
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


def _query_service(request: Request, accepted: tuple[str, ...],
                   name: str = "service") -> str | None:
    """The ``name`` query parameter (a service name), checked; HTTP 400 for an unknown or
    repeated parameter or an invalid name."""
    params = request.query_params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        names = ", ".join(_shown(each) for each in unknown[:5])
        plural = "s" if len(unknown) > 1 else ""
        raise HTTPException(status_code=400, detail=f"unknown query parameter{plural} {names}; "
                                                    f"accepted: {', '.join(accepted)}")
    for each in accepted:
        given = len(params.getlist(each))
        if given > 1:
            raise HTTPException(status_code=400, detail=f"query parameter {each} is given "
                                                        f"{given} times; accepted: once")
    service = params.get(name)
    if service is not None:
        try:
            validate_service(service, source=name)
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
`store_problem` says so, `entries: []`).
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


class ApiQuery(NamedTuple):
    """``/api/heartbeats``' parameters, checked."""

    service: str | None
    after: str | None
    page_size: int
    limit: int


def _integer(request: Request, name: str, default: int, most: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text) or int(text) > most:
        raise HTTPException(status_code=400, detail=f"{name} {_shown(text)} is invalid; "
                                                    f"accepted: an integer 1-{most}")
    return int(text)


def _api_query(request: Request) -> ApiQuery:
    """``/api/heartbeats``' parameters; HTTP 400 for anything else."""
    service = _query_service(request, API_PARAMETERS)
    after = _query_service(request, API_PARAMETERS, "after")
    return ApiQuery(service, after,
                    _integer(request, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
                    _integer(request, "limit", dashboard.HISTORY_POINTS, MAX_HISTORY_LIMIT))


STREAM_SLICE = 256 * 1024
"""Bodies larger than this are sent a slice at a time (``/metrics`` of a large fleet)."""


class Answer(NamedTuple):
    """A whole HTTP answer, as kept by the cache: code, body, type and extra headers."""

    status: int
    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> Response:
        """The answer to send; a large body goes out in slices as the client reads them,
        so a slow client never makes the server copy the whole body into its buffer."""
        headers = dict(self.headers)
        if len(self.body) <= STREAM_SLICE:
            return Response(self.body, status_code=self.status, media_type=self.media_type,
                            headers=headers)
        view = memoryview(self.body)
        slices = (view[i:i + STREAM_SLICE] for i in range(0, len(view), STREAM_SLICE))
        headers["Content-Length"] = str(len(self.body))
        return StreamingResponse(slices, status_code=self.status, media_type=self.media_type,
                                 headers=headers)


def _json_bytes(content: Any) -> bytes:
    """The body JSONResponse would write (compact, UTF-8)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


def _page(query: ApiQuery) -> tuple[list[HeartbeatReport], str | None, int, str | None]:
    """The page's reports worst first, the store's problem, the total and the next cursor."""
    if query.service is not None:
        fleet = read_fleet(source.client(), source.keys(), only=query.service)
        return fleet.reports, fleet.store_problem, len(fleet.reports), None
    listed = source.names()
    if listed.store_problem is not None:
        return [], listed.store_problem, 0, None
    names = listed.names
    size = min(query.page_size, max(1, MAX_PAGE_HISTORY // query.limit))
    start = 0 if query.after is None else bisect_right(names, query.after)
    page = names[start:start + size]
    following = page[-1] if page and start + size < len(names) else None
    try:
        reports = read_listed(source.client(), page, source.keys())
    except Exception as exc:  # the reader reports, never raises
        return [], f"Redis could not be asked: {redact(str(exc))[:200]}", 0, None
    return sort_worst_first(reports), None, len(names), following


ANSWER_CHUNK = 100
"""Services whose history and record are read and written out together: a page's answer is
built a chunk at a time, so only one chunk's history is held as objects at once."""


def heartbeats_answer(query: ApiQuery) -> Answer:
    """``/api/heartbeats``' answer to ``query``: one page, bounded whatever the fleet."""
    reports, problem, total, following = _page(query)
    parts: list[bytes] = []
    for start in range(0, len(reports), ANSWER_CHUNK):
        chunk = reports[start:start + ANSWER_CHUNK]
        names = [r.service for r in chunk]
        histories = read_histories(source.client(), source.keys(), names, query.limit)
        now_ms, records = _records(names)
        parts += [_json_bytes({**summary(r), "history": histories.get(r.service, []),
                               "incidents": None if records is None or r.service not in records
                               else records[r.service].as_json(now_ms)})
                  for r in chunk]
        del histories, records
    head = _json_bytes({"store_up": problem is None, "store_problem": public_problem(problem)})
    tail = _json_bytes({"total": total if problem is None else 0,
                        "next": following if problem is None else None})
    body = b"".join([head[:-1], b',"services":[', b",".join(parts), b"],", tail[1:]])
    return Answer(200 if problem is None else 503, body, "application/json")


def entries_answer(service: str) -> Answer:
    """``/api/entries``' answer for ``service``."""
    report = read_entries(source.client(), service, keys=source.keys())
    problem = None if report.error is None else public_problem(report.error)
    return Answer(200 if problem is None else 503, _json_bytes({
        "store_up": problem is None, "store_problem": problem, "service": service,
        "now_ms": report.now_ms, "entries": [e.as_json() for e in report.entries],
    }), "application/json")


def rows_answer() -> Answer:
    """The dashboard's rows: the ``dashboard.MAX_ROWS`` worst services, the others counted."""
    fleet = source.fleet()
    problem = public_problem(fleet.store_problem)
    shown = fleet.reports[:dashboard.MAX_ROWS]
    names = [r.service for r in shown]
    histories = read_histories(source.client(), source.keys(), names, dashboard.HISTORY_POINTS)
    now_ms, records = _records(names)
    body = dashboard.rows(shown, histories, store_problem=problem, records=records,
                          now_ms=now_ms, omitted=len(fleet.reports) - len(shown))
    headers = (("X-Store-Problem", "1"),) if problem else ()
    return Answer(200, body.encode(), "text/html", headers)


def entry_sections_answer() -> Answer:
    """The dashboard's beat entries, every service that has any (bounded by the scrape)."""
    listed = source.names()
    if listed.store_problem is not None:  # the rows' banner says the store is unreachable
        return Answer(200, b"", "text/html")
    entries = _entries(listed.names)
    if entries.problem is not None:
        entries = entries._replace(problem=public_problem(entries.problem))
    return Answer(200, dashboard.entry_sections(entries).encode(), "text/html")


def metrics_answer() -> Answer:
    """``/metrics``: one scrape."""
    return Answer(200, scrape(source.fleet, lambda names: _records(names)[1], _entries),
                  CONTENT_TYPE)


def create_app(*, cache_s: float = 0.0, guard: GuardOptions | None = None) -> FastAPI:
    """The stand-alone app: the router, ``/metrics``, ``/``, ``/api/heartbeats`` and
    ``/api/entries``.

    ``cache_s``: each fleet read and each answer is shared with the requests of the next
    ``cache_s`` seconds (``serve``: ``CACHE_S``). ``guard``: the Host, token, concurrency
    and header checks of ``worker.http.guard`` (``serve`` always sets them).

    No ``/docs`` or ``/redoc``: FastAPI's pages load their scripts from a public CDN, so
    they are blank offline and reach another host; ``/openapi.json`` stays.
    """
    app = FastAPI(title="PetSage heartbeat", version=_version(),
                  description="Scheduled heartbeat of the PetSage Celery pipeline.",
                  docs_url=None, redoc_url=None)
    app.include_router(router)
    source.keep_for(cache_s)
    cache = AnswerCache(cache_s)

    def cached(key: tuple[Any, ...], build: Callable[[], Answer]) -> Answer:
        return cache.get(key, build)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return cached(("metrics",), metrics_answer).response()

    @app.get("/api/entries", summary="The beat entries of one service, worst first",
             description=_ENTRIES_DESCRIPTION, response_model=None,
             responses=_ENTRIES_RESPONSES, openapi_extra=_ENTRIES_OPENAPI)
    def api_entries(request: Request) -> Response:
        service = _query_service(request, ENTRIES_PARAMETERS) or source.settings.service
        return cached(("entries", service), lambda: entries_answer(service)).response()

    @app.get("/api/heartbeats", summary="The fleet's heartbeats a page at a time, with "
                                        "recent history",
             description=_API_DESCRIPTION, response_model=None, responses=_API_RESPONSES,
             openapi_extra=_API_OPENAPI)
    def api_heartbeats(request: Request) -> Response:
        query = _api_query(request)
        return cached(("heartbeats", *query), lambda: heartbeats_answer(query)).response()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        rows = cached(("rows",), rows_answer)
        sections = cached(("entry-sections",), entry_sections_answer)
        return HTMLResponse(dashboard.page(rows.body.decode(), sections.body.decode()),
                            headers={"Content-Security-Policy": dashboard.CSP})

    @app.get("/dashboard/rows", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_rows() -> Response:
        return cached(("rows",), rows_answer).response()

    @app.get("/dashboard/entries", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_entries() -> Response:
        return cached(("entry-sections",), entry_sections_answer).response()

    if guard is not None:
        _document_token(app, guard)
        app.add_middleware(Guard, options=guard)
    return app


def _document_token(app: FastAPI, guard: GuardOptions) -> None:
    """With a token, the schema says every operation but ``/system/health*`` needs it."""
    if guard.token is None:
        return
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "The token serve was started with "
                                          "(HEARTBEAT_HTTP_TOKEN)."}}
            for path, operations in schema.get("paths", {}).items():
                if not path.startswith("/system/health"):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
                        operation.setdefault("responses", {})["401"] = {
                            "description": "No token, or a wrong one"}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _entries(services: list[str]) -> EntriesFleet:
    """The beat entries of ``services`` (those that have any), bounded; never raises."""
    return read_fleet_entries(source.client(), services, source.keys())


def _version() -> str:
    from worker.core.version import __version__

    return __version__
