"""The beat entries on the command line: ``check --entry``, ``status --entries``, ``watch
--entries``.

``check --entry NAME`` is a probe like ``check``: one line, the Nagios exit code, one round
trip under one deadline, no Celery, kombu or redis-py imported. An entry name is the
user's text; one that no entry can have (control characters, over 200 characters, empty)
is refused in one line with exit 2, CRITICAL: beat never watches such an entry, so the
probe pointed at it fails as it would for any entry that is not watched (docs/entries.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker.cli.check import positive_seconds, within
from worker.core.entries import validate_entry_name
from worker.core.errors import ConfigError, StoreUnreachableError
from worker.core.exits import fail
from worker.core.settings import Settings
from worker.read.connect import reader_client
from worker.read.entries import EntriesReport, EntryReport, read_entries
from worker.read.entry_render import (
    MISSING,
    UNREACHABLE,
    entries_table,
    entry_json,
    entry_line,
    entry_row,
    entry_transition,
    entry_transition_line,
    missing_line,
    missing_reason,
    problem_json,
    unreachable_line,
    unreachable_row,
    worst_first,
)

if TYPE_CHECKING:
    from worker.cli.watch import Hooks

REFUSED_NAME_EXIT = 2
"""``check --entry`` with a name no entry can have: CRITICAL, as for an entry not watched."""


def _quiet_broken_pipe() -> None:
    """The reader went away (``| head``): later writes go nowhere, and no traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# --- check --entry --------------------------------------------------------------------------

def run_check_entry(*, name: str, redis_url: str | None, service: str | None,
                    prefix: str | None, timeout_s: float, as_json: bool,
                    unreachable_ok: bool = False) -> int:
    """Print one line (or one JSON object) about one entry; return its Nagios exit code."""
    try:
        positive_seconds("--timeout", timeout_s)
        settings = Settings.from_env(None, redis_url=redis_url, service=service, prefix=prefix)
    except ConfigError as exc:
        return fail("check", str(exc))
    try:
        validate_entry_name(name, source="--entry")
    except ConfigError as exc:
        # The name is shown by its repr: one line, its controls escaped, blanks kept.
        print(f"CRITICAL - petsage-heartbeat: {exc}", flush=True)
        return REFUSED_NAME_EXIT

    def probe() -> EntriesReport:
        client = reader_client(settings.redis_url, timeout_s)
        try:
            return read_entries(client, settings.service, keys=settings.keys)
        finally:
            client.close()

    try:
        report = within(timeout_s + 0.05, probe) or EntriesReport(
            settings.service, None, (), f"timed out after {timeout_s:g}s")
    except StoreUnreachableError as exc:
        report = EntriesReport(settings.service, None, (), f"{exc}"[:300])
    found = next((e for e in report.entries if e.name == name), None)
    if report.error is not None:
        reason = f"Redis could not be asked: {report.error}"
        code = 0 if unreachable_ok else 3
        if as_json:
            print(json.dumps(problem_json(report.service, name, UNREACHABLE, reason, code)))
        else:
            line = unreachable_line(report.service, name, reason)
            print(line if code == 3 else "OK - (unreachable tolerated) " + line)
        return code
    if found is None:
        reason = missing_reason(report, name)
        if as_json:
            print(json.dumps({**problem_json(report.service, name, MISSING, reason, 2),
                              "watched": sorted(e.name for e in report.entries)[:100]}))
        else:
            print(missing_line(report.service, name, reason))
        return 2
    if as_json:
        print(json.dumps(entry_json(report.service, found, report.now_ms)))
    else:
        print(entry_line(report.service, found, report.now_ms))
    return found.state.exit_code


# --- status --entries -----------------------------------------------------------------------

def _read_all(client: Any, settings: Settings, all_services: bool) -> list[EntriesReport]:
    if not all_services:
        return [read_entries(client, settings.service, keys=settings.keys)]
    from worker.read.entry_fleet import read_entries_of
    from worker.read.fleet import fleet_services

    return read_entries_of(client, fleet_services(client, settings.keys), keys=settings.keys)


def run_status_entries(*, redis_url: str | None, service: str | None, all_services: bool,
                       prefix: str | None, timeout_s: float, as_json: bool) -> int:
    """Print every entry, worst first (a table, or a JSON list); return the worst exit code.

    No entry watched at all is exit 2, like an empty fleet: a probe must not pass on a
    service name with a typo in it.
    """
    try:
        positive_seconds("--timeout", timeout_s)
        settings = Settings.from_env(None, redis_url=redis_url, service=service, prefix=prefix)
    except ConfigError as exc:
        return fail("status", str(exc))

    def read() -> list[EntriesReport]:
        client = reader_client(settings.redis_url, timeout_s)
        try:
            return _read_all(client, settings, all_services)
        finally:
            client.close()

    where = "*" if all_services else settings.service
    try:
        # ZCARD and ZRANGE, then the entries: two round trips at least. An empty list is
        # an answer; only None means the deadline passed.
        answer = within(2 * timeout_s + 0.05, read)
        reports = answer if answer is not None else [
            EntriesReport(where, None, (), f"timed out after {timeout_s:g}s")]
    except StoreUnreachableError as exc:
        reports = [EntriesReport(where, None, (), str(exc)[:300])]
    failed = [r for r in reports if r.error is not None]
    pairs = worst_first([(r.service, e) for r in reports for e in r.entries])
    now = {r.service: r.now_ms for r in reports}
    code = 3 if failed else max((e.state.exit_code for _, e in pairs), default=2)
    try:
        _print_status(pairs, now, failed, as_json=as_json, all_services=all_services,
                      service=settings.service)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    return code


def _print_status(pairs: list[tuple[str, EntryReport]], now: dict[str, int | None],
                  failed: list[EntriesReport], *, as_json: bool, all_services: bool,
                  service: str) -> None:
    problems = [(r.service, f"Redis could not be asked: {r.error}") for r in failed]
    if as_json:
        items = [problem_json(s, None, UNREACHABLE, why, 3) for s, why in problems]
        items += [entry_json(s, e, now.get(s)) for s, e in pairs]
        print(json.dumps(items))
        return
    if not pairs and not problems:
        where = "under this prefix" if all_services else f"for service {service}"
        print(f"no beat entry is watched {where}")
        return
    rows = [((s,) if all_services else ()) + unreachable_row(why) for s, why in problems]
    rows += [((s,) if all_services else ()) + entry_row(e, now.get(s)) for s, e in pairs]
    print(entries_table(rows, with_service=all_services))


# --- watch --entries ------------------------------------------------------------------------

class EntryWatcher:
    """Polls the entries every ``poll_s`` and reports each one's state changes.

    The service's events channel fires for the heartbeat, not for entries, so this only
    polls. An entry that leaves the hash (``forget``) turns ``missing``; a store that can't
    be asked turns every entry known so far ``unreachable`` (``*`` before any is known).
    """

    def __init__(self, settings: Settings, *, all_services: bool, exec_cmd: str | None,
                 as_json: bool, timeout_s: float, poll_s: float,
                 emit: Callable[[str], None] | None = None,
                 client_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.all_services = all_services
        self.exec_cmd = exec_cmd
        self.as_json = as_json
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.emit = emit or (lambda line: print(line, flush=True))
        self.states: dict[tuple[str, str | None], str] = {}
        self.diagnoses: dict[tuple[str, str | None], str | None] = {}
        #: ``--exec``: debounced and with a minimal environment, as ``watch``'s own hooks
        self.hooks: Hooks | None = None
        if exec_cmd:
            from worker.cli.watch import Hooks  # redis-py: not on check --entry's path

            self.hooks = Hooks(exec_cmd)
        self.stop = threading.Event()
        self._client_factory = client_factory

    def read(self, client: Any) -> list[EntriesReport]:
        """One poll's reports (never raises)."""
        try:
            return _read_all(client, self.settings, self.all_services)
        except Exception as exc:  # the index could not be read
            where = "*" if self.all_services else self.settings.service
            return [EntriesReport(where, None, (), f"{type(exc).__name__}: {exc}"[:200])]

    def observe(self, reports: list[EntriesReport]) -> None:
        """Compare with the last known states; report and hook each change."""
        now: dict[tuple[str, str | None], tuple[str, str | None, str, int]] = {}
        failed = {r.service for r in reports if r.error is not None}
        for report in reports:
            if report.error is not None:
                why = f"Redis could not be asked: {report.error}"
                known = [k for k in self.states if k[1] is not None
                         and (report.service == "*" or k[0] == report.service)]
                for key in known or [(report.service, None)]:
                    now[key] = (UNREACHABLE, None, why, 3)
                continue
            for entry in report.entries:
                now[(report.service, entry.name)] = (
                    entry.state.value, entry.diagnosis, entry.reason, entry.state.exit_code)
        for key, old in list(self.states.items()):
            if key[1] is None:  # "unreachable" before any entry was known: gone once read
                if key not in now and "*" not in failed and key[0] not in failed:
                    del self.states[key]
            elif key not in now and old != MISSING and "*" not in failed \
                    and key[0] not in failed:
                now[key] = (MISSING, None, "the entry is no longer in the store (forgotten, "
                                           "or its retention passed)", 2)
        for key, (state, diagnosis, reason, code) in now.items():
            before = self.states.get(key)
            # A diagnosis that becomes known (beat_or_scheduler, then beat_down) is news too.
            if before == state and self.diagnoses.get(key) == diagnosis:
                continue
            self.states[key] = state
            self.diagnoses[key] = diagnosis
            self._transition(entry_transition(key[0], key[1], before, new=state,
                                              diagnosis=diagnosis, reason=reason,
                                              exit_code=code))

    def _transition(self, event: dict[str, Any]) -> None:
        self.emit(json.dumps(event) if self.as_json else entry_transition_line(event))
        if self.hooks is not None:
            # The service watch's variables too (``watch --help``): an entry has no
            # heartbeat age or seq.
            self.hooks.add((event["service"], event["entry"]),
                           {**event, "age_s": None, "seq": None})

    def _client(self) -> Any:
        if self._client_factory is not None:
            return self._client_factory()
        from worker.core.redis_clients import make_client

        return make_client(self.settings.redis_url, timeout_s=self.timeout_s)

    def run(self) -> int:
        """Poll until SIGINT or SIGTERM (or ``stop`` is set); return 0."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        client = self._client()
        with contextlib.suppress(KeyboardInterrupt):
            while not self.stop.is_set():
                self.observe(self.read(client))
                if self.hooks is not None:
                    self.hooks.pump()  # a hook held back by the interval starts now
                self.stop.wait(self.poll_s)
        return 0


def run_watch_entries(settings: Settings, **kwargs: Any) -> int:
    """Entry for the CLI."""
    try:
        return EntryWatcher(settings, **kwargs).run()
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 0
    except BrokenPipeError:  # the reader went away (``| head -3``): done, no traceback
        _quiet_broken_pipe()
        return 0

