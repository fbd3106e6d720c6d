"""``petsage-heartbeat status``: one service or the whole fleet, worst first."""

from __future__ import annotations

import os
import sys

import orjson

from worker.cli.check import positive_seconds, within
from worker.core.errors import ConfigError, StoreUnreachableError
from worker.core.exits import fail
from worker.core.gc_pause import paused_gc
from worker.core.settings import Settings
from worker.core.states import State
from worker.core.urls import redact
from worker.read.connect import reader_client
from worker.read.fleet import Fleet, read_fleet
from worker.read.incidents import IncidentSummary, read_incidents
from worker.read.reader import HeartbeatReport, read_heartbeat, unreachable
from worker.read.render import incident_lines, render_table, summary, table_row


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

    record: list[tuple[int, IncidentSummary]] = []
    problems: list[str] = []

    def read() -> Fleet:
        client = reader_client(settings.redis_url, timeout_s)
        try:
            if all_services:
                return read_fleet(client, settings.keys)
            report = read_heartbeat(client, settings.service, keys=settings.keys)
            if report.state is not State.UNREACHABLE:
                # The monitors' record: uptime, outages, silence (one more round trip). A
                # reader whose ACL lacks XRANGE/HGETALL still gets the heartbeat.
                try:
                    now_ms, found = read_incidents(client, settings.keys, [settings.service])
                    record.append((now_ms, found[settings.service]))
                except Exception as exc:  # the record is extra: never the state's price
                    problems.append(f"uptime: the monitors' record could not be read: "
                                    f"{redact(str(exc))[:200]}")
            return Fleet([report])
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
        if as_json and record:
            now_ms, summary_of = record[0]
            print(orjson.dumps([{**summary(reports[0]),
                                 "incidents": summary_of.as_json(now_ms)}]).decode())
        elif as_json:
            with paused_gc():
                _write_json(reports)
        elif reports:
            with paused_gc():
                print(render_table([table_row(r) for r in reports]))
            if record:
                print("\n".join(incident_lines(record[0][1], record[0][0])))
            for problem in problems:
                print(problem)
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
