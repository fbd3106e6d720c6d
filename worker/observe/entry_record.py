"""Record the beat entries' transitions, once across monitors (``entry_record.lua``).

Each round the monitor asks which indexed services have beat entries (pipelined
``EXISTS``, of most services one round in ten: ``EntryRounds``), reads those services'
entries (``read_entries``: one round trip each) and sends every entry's judged state to
``entry_record.lua``, one call per service. The
script keeps each entry's verdict in the service's ``entry_observed`` hash and, in the
same atomic step, appends a change of verdict to the service's ``entry_incidents`` stream
and a notification to the shared outbox, which the webhook threads deliver like any other.

Verdicts, so that a schedule of one second is not news every second: ``ok`` is up;
``running`` and ``pending`` are no verdict (the recorded one stands until a run ends);
every other state (failed, retrying, overrun, not_started, missed, duplicate, removed)
is its own verdict. A silence of the service, or of the one entry, holds the
notification back; the transition is still recorded.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, NamedTuple

from worker.core.entries import EntryState
from worker.core.names import Keys, summary_shard
from worker.core.redis_io import Command, as_text, execute_many, is_cluster_client, lua_script
from worker.core.settings import DEFAULT_INCIDENTS_LEN, Settings
from worker.observe.record import OUTBOX_LEN
from worker.read.entries import MAX_ENTRIES_READ, EntriesReport, EntryReport, read_entries

ENTRY_RECORD_SCRIPT = lua_script(__package__, "entry_record.lua")

EXISTS_PER_ROUND_TRIP = 1000
"""``EXISTS`` of the entries' hash, one a service, sent together."""

EXISTS_SLICES = 10
"""Services not known to have entries are asked again once in this many rounds."""

CALLS_PER_ROUND_TRIP = 20
"""Script calls (one a service) sent together."""

log = logging.getLogger("petsage_heartbeat.monitor")


class EntryRecorded(NamedTuple):
    """What the monitors' record says of one beat entry after this judgement."""

    service: str
    entry: str
    state: str  #: the recorded state
    incident: str  #: the id of the transition this judgement recorded, or ''
    notification: dict[str, Any] | None  #: the notification it queued, if any


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def entry_began_ms(report: EntryReport, now_ms: int) -> int:
    """When ``report``'s state began on the Redis clock, as far as the entry's record tells
    (a run's end, a due time plus the grace ...); else ``now_ms``."""
    rec = report.record
    run: dict[str, Any] = rec["run"] if isinstance(rec.get("run"), dict) else {}
    grace_ms = (_num(rec.get("grace_s")) or 0.0) * 1000
    began: float | None = None
    state = report.state
    if state in (EntryState.FAILED, EntryState.OK):
        began = _num(run.get("finished_ms"))
    elif state is EntryState.NOT_STARTED:
        waiting = _num(run.get("waiting_since_ms")) or _num(run.get("dispatched_ms"))
        began = None if waiting is None else waiting + grace_ms
    elif state is EntryState.MISSED:
        due = _num(rec.get("next_due_ms"))
        began = None if due is None else due + grace_ms
    elif state is EntryState.OVERRUN:
        started, limit = _num(run.get("started_ms")), _num(rec.get("max_runtime_s"))
        began = None if started is None or limit is None else started + limit * 1000
    elif state is EntryState.REMOVED:
        began = _num(rec.get("removed_ms"))
    elif state is EntryState.DUPLICATE:
        began = _num(rec.get("duplicate_ms"))
    if began is None or began <= 0:
        return now_ms
    return min(round(began), now_ms)


def entry_judgement(report: EntryReport, now_ms: int) -> str:
    """The JSON argument ``entry_record.lua`` takes for one entry."""
    return json.dumps({"entry": report.name, "to": report.state.value,
                       "diagnosis": report.diagnosis or "", "reason": report.reason[:300],
                       "at": entry_began_ms(report, now_ms)})


def services_with_entries(client: Any, keys: Keys, services: list[str]) -> list[str]:
    """The services among ``services`` whose app's beat entries are watched (their entries
    hash exists): one ``EXISTS`` each, a thousand a round trip. Raises on a store error."""
    out: list[str] = []
    for start in range(0, len(services), EXISTS_PER_ROUND_TRIP):
        batch = services[start:start + EXISTS_PER_ROUND_TRIP]
        replies = execute_many(client, [("EXISTS", keys.entries(s)) for s in batch])
        for service, reply in zip(batch, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            if int(reply):
                out.append(service)
    return out


def _call(keys: Keys, report: EntriesReport, head: tuple[str, ...],
          with_outbox: bool) -> Command:
    service, now_ms = report.service, report.now_ms or 0
    complete = "1" if len(report.entries) < MAX_ENTRIES_READ else "0"
    outbox = (keys.outbox,) if with_outbox else ()
    return ("EVAL", ENTRY_RECORD_SCRIPT, 4 + len(outbox), *keys.entry_monitor_keys(service),
            *outbox, *head, "1" if with_outbox else "0", service, str(now_ms), complete,
            *(entry_judgement(e, now_ms) for e in report.entries))


def record_entries(client: Any, keys: Keys, reports: list[EntriesReport], *, monitor_id: str,
                   incidents_len: int = DEFAULT_INCIDENTS_LEN,
                   ttl_ms: int = Settings().incidents_ttl_ms) -> list[EntryRecorded]:
    """Record each service's entries (one judgement each); return what was recorded.

    A report the store could not give is skipped. Raises on a store error: the monitor
    logs it and tries again at the next round. On a Redis Cluster the outbox is in another
    slot: the notifications are added after the record, as for services.
    """
    judged = [r for r in reports if r.error is None and r.now_ms]
    head = (str(incidents_len), str(ttl_ms), str(OUTBOX_LEN), monitor_id)
    cluster = is_cluster_client(client)
    calls = [_call(keys, r, head, not cluster) for r in judged]
    out: list[EntryRecorded] = []
    for start in range(0, len(calls), CALLS_PER_ROUND_TRIP):
        replies = execute_many(client, calls[start:start + CALLS_PER_ROUND_TRIP])
        for report, reply in zip(judged[start:start + CALLS_PER_ROUND_TRIP], replies,
                                 strict=True):
            if isinstance(reply, BaseException):
                raise reply
            for entry, (state, incident, note) in zip(report.entries, reply, strict=True):
                text = as_text(note)
                out.append(EntryRecorded(report.service, entry.name, as_text(state),
                                         as_text(incident), json.loads(text) if text else None))
    if cluster:
        notes: list[Command] = [
            ("XADD", keys.outbox, "MAXLEN", "~", OUTBOX_LEN, "*", "event",
             json.dumps(r.notification)) for r in out if r.notification is not None]
        for reply in execute_many(client, notes) if notes else []:
            if isinstance(reply, BaseException):
                raise reply
    return out


class EntryRounds:
    """The entries' part of the monitor's rounds: which services, within a time budget.

    Reading a service's entries is one round trip; a fleet with more services with entries
    than one round's budget allows is read in turns, each round going on where the last
    stopped, so every service is judged within a few rounds and no round overruns.

    Which services have entries is asked (``EXISTS``) each round of the services known to
    have them and of those this monitor has not asked yet, and of the rest one slice in
    ``EXISTS_SLICES`` a round: a service whose app starts watching its entries is found
    within that many rounds, and 100,000 services without entries cost 10,000 ``EXISTS`` a
    round, not 100,000.
    """

    def __init__(self, client: Any, keys: Keys, *, monitor_id: str, incidents_len: int,
                 ttl_ms: int) -> None:
        self.client, self.keys, self.monitor_id = client, keys, monitor_id
        self.incidents_len, self.ttl_ms = incidents_len, ttl_ms
        self._next = 0
        self._behind = False
        self._asked: set[str] = set()  #: services asked at least once
        self._with: set[str] = set()  #: services found with entries at their last asking
        self._turn = 0

    def watched(self, services: list[str]) -> list[str]:
        """The services among ``services`` with entries, asked as the class says."""
        turn = self._turn % EXISTS_SLICES
        self._turn += 1
        asked, with_entries = self._asked, self._with
        ask = [s for s in services if s not in asked or s in with_entries
               or summary_shard(s) % EXISTS_SLICES == turn]
        found = set(services_with_entries(self.client, self.keys, ask))
        asked.update(ask)
        with_entries.difference_update(ask)
        with_entries.update(found)
        if len(asked) > len(services) + len(services) // 2:  # forget services gone
            asked.intersection_update(services)
            with_entries.intersection_update(services)
        return [s for s in services if s in with_entries]

    def judge(self, services: list[str], budget_s: float) -> list[EntryRecorded]:
        """Read and record the entries of the services that have any, within ``budget_s``
        of reading (the services not reached come first next round). Raises on a store
        error."""
        watched = self.watched(services)
        if not watched:
            return []
        start = self._next % len(watched)
        order = watched[start:] + watched[:start]
        deadline = time.monotonic() + budget_s
        reports: list[EntriesReport] = []
        for service in order:
            report = read_entries(self.client, service, keys=self.keys)
            if report.error is not None:
                raise ConnectionError(report.error)
            reports.append(report)
            if time.monotonic() > deadline:
                break
        self._next = start + len(reports)
        behind = len(reports) < len(order)
        if behind and not self._behind:
            log.warning("monitor: the entries of %d services take longer than a round to "
                        "read; they are judged in turns", len(order))
        self._behind = behind
        return record_entries(self.client, self.keys, reports, monitor_id=self.monitor_id,
                              incidents_len=self.incidents_len, ttl_ms=self.ttl_ms)
