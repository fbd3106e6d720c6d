"""``petsage-heartbeat serve``: the HTTP app under uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

import sys

from worker.errors import ConfigError
from worker.reader_config import reader_settings
from worker.urls import redact


def run_serve(*, host: str, port: int, redis_url: str | None, prefix: str | None) -> int:
    """Validate the settings, then serve until SIGINT/SIGTERM."""
    if not 0 < port < 65536:
        print(f"petsage-heartbeat: --port {port} is out of range; accepted: 1-65535",
              file=sys.stderr)
        return 2
    try:
        settings = reader_settings(redis_url=redis_url, prefix=prefix)
    except ConfigError as exc:
        print(f"petsage-heartbeat: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from worker.http import configure, create_app
    except ImportError as exc:
        print(f"petsage-heartbeat: serve needs the http extra ({exc.name} is missing); "
              "pip install 'petsage-heartbeat[http]'", file=sys.stderr)
        return 2
    configure(settings=settings)
    print(f"petsage-heartbeat: serving http://{host}:{port}/ (store "
          f"{redact(settings.redis_url)})", flush=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False)
    return 0
