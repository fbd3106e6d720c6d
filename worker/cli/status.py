"""``petsage-heartbeat status``: one service or the whole fleet, worst first."""

from __future__ import annotations

import json

from worker.cli.check import ProbeFailedError, positive_seconds, within
from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.read.connect import reader_client, reader_settings
from worker.read.fleet import read_fleet
from worker.read.reader import HeartbeatReport, read_heartbeat, unreachable
from worker.read.render import render_table, summary, table_row


def run_status(*, redis_url: str | None, service: str | None, all_services: bool,
               prefix: str | None, timeout_s: float, as_json: bool) -> int:
    """Print a table (or a JSON list); return the worst exit code (2 for an empty fleet)."""
    try:
        positive_seconds("--timeout", timeout_s)
        settings = reader_settings(redis_url=redis_url, service=service, prefix=prefix)
    except ConfigError as exc:
        return fail("status", str(exc))

    def read() -> list[HeartbeatReport] | HeartbeatReport:
        client = reader_client(settings.redis_url, timeout_s)
        try:
            if all_services:
                return read_fleet(client, settings.keys)
            return [read_heartbeat(client, settings.service, keys=settings.keys)]
        finally:
            client.close()

    try:
        # ZRANGE, then the script: two round trips. An empty fleet is an empty list, which
        # is an answer; only None means the deadline passed.
        result = within(2 * timeout_s + 0.05, read)
        if result is None:
            result = unreachable("*", f"timed out after {timeout_s:g}s")
    except ProbeFailedError as exc:
        result = unreachable("*", f"Redis could not be asked: {exc}"[:300])
    reports = [result] if isinstance(result, HeartbeatReport) else result
    if as_json:
        print(json.dumps([summary(r) for r in reports]))
    elif reports:
        print(render_table([table_row(r) for r in reports]))
    else:
        print("no service has published a heartbeat under this prefix")
    return max((r.exit_code for r in reports), default=2)
