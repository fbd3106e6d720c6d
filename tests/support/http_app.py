"""The HTTP app in process: the router configured for service ``petsage`` on a given
client, behind FastAPI's TestClient, and the router's configuration put back after.

``tests/test_http_units.py`` (the dashboard, the JSON API, the health routes) and
``tests/test_router_units.py`` (refused queries, pages, slices, logged problems) drive
their routes through this same app; one copy keeps their setup and their teardown the
same (a configuration left behind would hand the next test another test's store).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from fastapi.testclient import TestClient

from worker.core.settings import Settings
from worker.http.router import configure, create_app


@contextlib.contextmanager
def petsage_app(client: redis.Redis) -> Iterator[TestClient]:
    """The app of service ``petsage`` reading ``client``, its lifespan run by TestClient."""
    configure(settings=Settings.from_env({"HEARTBEAT_SERVICE": "petsage"}), client=client)
    try:
        with TestClient(create_app()) as test_client:
            yield test_client
    finally:
        configure()
