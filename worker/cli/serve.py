"""``petsage-heartbeat serve``: the HTTP app under uvicorn, on loopback unless told otherwise.

The limits, the Host check and the optional token are ``worker.http.guard`` and
``worker.http.server``; the settings they take are read here, from flags and the
environment (docs/http.md, "Limits and access").
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.core.settings import Settings
from worker.core.urls import redact

HOST_PATTERN = re.compile(r"[A-Za-z0-9._:%-]{1,253}")
"""A bind address: a host name, IPv4 or IPv6 address (``::``), at most 253 characters."""

ALLOWED_HOST_PATTERN = re.compile(r"\[?[A-Za-z0-9._:-]{1,253}\]?")
"""An allowed ``Host``: a host name or IP address (IPv6 with or without brackets), no port."""

MAX_TOKEN_FILE_BYTES = 4096


def validate_host(host: str) -> str:
    """Return ``host`` if it can be a bind address, else raise ``ConfigError``.

    An empty host would make uvicorn listen on every interface: refused, never a default.
    """
    if not HOST_PATTERN.fullmatch(host):
        shown = host if len(host) <= 40 else host[:40] + "..."
        raise ConfigError(f"--host {shown!r} is invalid; accepted: a host name or IP address "
                          "of 1-253 characters, e.g. 127.0.0.1 or 0.0.0.0")
    return host


def allowed_hosts(bind: str, given: Sequence[str],
                  env: Mapping[str, str]) -> frozenset[str] | None:
    """The hosts the ``Host`` header may name (None: any): ``--allowed-host`` flags, else
    ``HEARTBEAT_HTTP_ALLOWED_HOSTS`` (comma-separated), else the loopback names when bound
    to loopback, else any. ``*`` alone means any."""
    from worker.http.guard import LOOPBACK_HOSTS, host_of, is_loopback

    source = "--allowed-host"
    listed = [h.strip() for h in given]
    if not listed:
        source = "HEARTBEAT_HTTP_ALLOWED_HOSTS"
        listed = [h.strip() for h in env.get(source, "").split(",") if h.strip()]
    if not listed:
        if is_loopback(bind):
            return frozenset({*LOOPBACK_HOSTS, host_of(bind)})
        return None
    if listed == ["*"]:
        return None
    for host in listed:
        if not ALLOWED_HOST_PATTERN.fullmatch(host):
            shown = host if len(host) <= 40 else host[:40] + "..."
            raise ConfigError(f"{source} {shown!r} is invalid; accepted: host names or IP "
                              "addresses without a port, e.g. heartbeat.internal,10.0.0.5, "
                              "or * for any")
    return frozenset(host_of(h) for h in listed)


def read_token(env: Mapping[str, str]) -> str | None:
    """The bearer token from ``HEARTBEAT_HTTP_TOKEN`` or the file ``HEARTBEAT_HTTP_TOKEN_FILE``
    names (not both); None when neither is set. Errors never quote the token."""
    from worker.http.guard import check_token

    value, path = env.get("HEARTBEAT_HTTP_TOKEN"), env.get("HEARTBEAT_HTTP_TOKEN_FILE")
    if value and path:
        raise ConfigError("HEARTBEAT_HTTP_TOKEN and HEARTBEAT_HTTP_TOKEN_FILE are both set; "
                          "accepted: one of them")
    try:
        if path:
            try:
                with Path(path).open("rb") as handle:
                    raw = handle.read(MAX_TOKEN_FILE_BYTES + 1)
            except OSError as exc:
                raise ConfigError(f"HEARTBEAT_HTTP_TOKEN_FILE {path!r} can't be read: "
                                  f"{exc.strerror or type(exc).__name__}") from None
            if len(raw) > MAX_TOKEN_FILE_BYTES:
                raise ConfigError(f"HEARTBEAT_HTTP_TOKEN_FILE {path!r} is larger than "
                                  f"{MAX_TOKEN_FILE_BYTES} bytes; accepted: the token alone")
            return check_token(raw.decode("utf-8", "replace"), "HEARTBEAT_HTTP_TOKEN_FILE's "
                                                               "content")
        if value:
            return check_token(value, "HEARTBEAT_HTTP_TOKEN")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return None


def run_serve(*, host: str, port: int, redis_url: str | None, prefix: str | None,
              allowed_host: Sequence[str] = ()) -> int:
    """Validate the settings, then serve until SIGINT/SIGTERM."""
    if not 0 < port < 65536:
        return fail("serve", f"--port {port} is out of range; accepted: 1-65535")
    try:
        import uvicorn  # noqa: F401  (the extra's presence, before any setting is read)

        from worker.http.guard import GuardOptions, Token
        from worker.http.router import CACHE_S, configure, create_app
        from worker.http.server import run
    except ImportError as exc:
        return fail("serve", f"serve needs the http extra ({exc.name} is missing); "
                             "pip install 'petsage-heartbeat[http]'")
    try:
        validate_host(host)
        settings = Settings.from_env(None, redis_url=redis_url, prefix=prefix)
        hosts = allowed_hosts(host, allowed_host, os.environ)
        token = read_token(os.environ)
    except ConfigError as exc:
        return fail("serve", str(exc))
    logging.basicConfig(level=logging.WARNING, format="petsage-heartbeat: %(message)s")
    configure(settings=settings)
    guard = GuardOptions(allowed_hosts=hosts, token=None if token is None else Token(token))
    print(f"petsage-heartbeat: serving http://{host}:{port}/ (store "
          f"{redact(settings.redis_url)})", flush=True)
    print("petsage-heartbeat: " + (
        "Host header: any accepted (bound beyond loopback with no --allowed-host list)"
        if hosts is None else "Host header: " + ", ".join(sorted(hosts))), flush=True)
    print("petsage-heartbeat: " + (
        "no token: every client that reaches the port reads the fleet (set "
        "HEARTBEAT_HTTP_TOKEN to require one)" if token is None else
        "token required for all but /system/health"), flush=True)
    run(create_app(cache_s=CACHE_S, guard=guard), host=host, port=port)
    return 0
