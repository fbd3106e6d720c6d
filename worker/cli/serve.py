"""``petsage-heartbeat serve``: the HTTP app under uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

import re

from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.core.settings import Settings
from worker.core.urls import redact

HOST_PATTERN = re.compile(r"[A-Za-z0-9._:%-]{1,253}")
"""A bind address: a host name, IPv4 or IPv6 address (``::``), at most 253 characters."""


def validate_host(host: str) -> str:
    """Return ``host`` if it can be a bind address, else raise ``ConfigError``.

    An empty host would make uvicorn listen on every interface: refused, never a default.
    """
    if not HOST_PATTERN.fullmatch(host):
        shown = host if len(host) <= 40 else host[:40] + "..."
        raise ConfigError(f"--host {shown!r} is invalid; accepted: a host name or IP address "
                          "of 1-253 characters, e.g. 127.0.0.1 or 0.0.0.0")
    return host


def run_serve(*, host: str, port: int, redis_url: str | None, prefix: str | None) -> int:
    """Validate the settings, then serve until SIGINT/SIGTERM."""
    if not 0 < port < 65536:
        return fail("serve", f"--port {port} is out of range; accepted: 1-65535")
    try:
        validate_host(host)
        settings = Settings.from_env(None, redis_url=redis_url, prefix=prefix)
    except ConfigError as exc:
        return fail("serve", str(exc))
    try:
        import uvicorn

        from worker.http.router import configure, create_app
    except ImportError as exc:
        return fail("serve", f"serve needs the http extra ({exc.name} is missing); "
                             "pip install 'petsage-heartbeat[http]'")
    configure(settings=settings)
    print(f"petsage-heartbeat: serving http://{host}:{port}/ (store "
          f"{redact(settings.redis_url)})", flush=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False)
    return 0
