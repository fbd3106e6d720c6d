"""``petsage-heartbeat status``: one service or the whole fleet, worst first."""

from __future__ import annotations

import os
import sys

import orjson

from worker.cli.check import positive_seconds, within
from worker.core.errors import ConfigError, StoreUnreachableError
from worker.core.exits import fail
from worker.core.settings import Settings
from worker.read.connect import reader_client
from worker.read.fleet import Fleet, read_fleet
from worker.read.reader import HeartbeatReport, read_heartbeat, unreachable
from worker.read.render import render_table, summary, table_row


def _write_json(reports: list[HeartbeatReport]) -> None:
    """The JSON list, one summary at a time: a 100,000-service list is never held whole."""
    out = sys.stdout.buffer
    out.write(b"[")
    for start in range(0, len(reports), 1000):
        if start:
            out.write(b",")
        out.write(b",".join([orjson.dumps(summary(r)) for r in reports[start:start + 1000]]))
    out.write(b"]\n")
    out.flush()


def run_status(*, redis_url: str | None, service: str | None, all_services: bool,
               prefix: str | None, timeout_s: float, as_json: bool) -> int:
    """Print a table (or a JSON list); return the worst exit code (2 for an empty fleet)."""
    try:
        positive_seconds("--timeout", timeout_s)
        settings = Settings.from_env(None, redis_url=redis_url, service=service, prefix=prefix)
    except ConfigError as exc:
        return fail("status", str(exc))

    def read() -> Fleet:
        client = reader_client(settings.redis_url, timeout_s)
        try:
            if all_services:
                return read_fleet(client, settings.keys)
            return Fleet([read_heartbeat(client, settings.service, keys=settings.keys)])
        finally:
            client.close()

    try:
        # ZRANGE, then the script: two round trips. An empty fleet is an answer; only None
        # means the deadline passed.
        fleet = within(2 * timeout_s + 0.05, read) or Fleet([], f"timed out after {timeout_s:g}s")
    except StoreUnreachableError as exc:
        fleet = Fleet([], f"Redis could not be asked: {exc}"[:300])
    # A store that could not be asked is one row, for the whole fleet ("*").
    reports = fleet.reports if fleet.store_problem is None else [
        unreachable("*" if all_services else settings.service, fleet.store_problem)]
    try:
        if as_json:
            _write_json(reports)
        elif reports:
            print(render_table([table_row(r) for r in reports]))
        else:
            print("no service has published a heartbeat under this prefix")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): the answer is still the exit code, and no
        # traceback. Later flushes go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return fleet.exit_code
