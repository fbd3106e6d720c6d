"""The monitor loop: judge every indexed service each period, record what changed.

Judging runs on this thread and never waits for a webhook: each webhook has its own
delivery thread (``worker.observe.delivery``). Several monitors may run at once for high
availability; ``record.lua`` makes each transition one entry and one notification however
many of them saw it. Each round also judges the beat entries of every indexed service that
has any (``worker.observe.entry_record``), recorded and notified once the same way.

A round reads the fleet from the compact summaries (``worker.read.fleet``: only services
not fresh are read in full) and sends to ``record.lua`` only what may change the record:
every service whose judgement (state and diagnosis) differs from what this monitor last
saw recorded and notified, and a rotating slice of the rest (one in ``REFRESH_SLICES`` a
round), so that each record is confirmed, and its TTL renewed, every ``REFRESH_SLICES``
rounds. A service that stays as it was costs a monitor nothing else: 100,000 services are
a fleet read and about 1,000 records a round, not 100,000. A restarted monitor knows
nothing yet and sends every service once; a record held back by a silence is sent every
round until it is notified. Monitors add the transitions they record to a shared counter
(``Keys.transitions``): one that finds it moved by another sends every service that
round, so a transition another monitor recorded (and a recovery after it) is never left
to a slice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from worker.core.names import summary_shard
from worker.core.settings import Settings
from worker.observe.delivery import Delivery
from worker.observe.entry_record import EntryRecorded, EntryRounds
from worker.observe.record import Recorded, record
from worker.read.fleet import read_fleet

log = logging.getLogger("petsage_heartbeat.monitor")


ENTRIES_BUDGET = 0.5
"""The share of a round the entries' reads may take; the rest is read in turns."""

REFRESH_SLICES = 100
"""A steady fresh service is sent to the record once in this many rounds (its slice)."""


def monitor_id() -> str:
    """Who recorded a transition: host and process, as in an incident entry's ``monitor``."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}"


class Monitor:
    """Judges the fleet every ``every_s`` seconds and records transitions."""

    def __init__(self, settings: Settings, client: Any, *, every_s: float,
                 owner: str | None = None, **delivery_options: Any) -> None:
        self.settings = settings
        self.client = client
        self.every_s = every_s
        self.owner = owner or monitor_id()
        self.stopping = threading.Event()
        self.rounds = 0
        self._problem: str | None = None
        #: Service -> (state, diagnosis) this monitor last sent and saw recorded and
        #: notified as such: sent again only when its judgement differs (or in its slice).
        self._settled: dict[str, tuple[str, str]] = {}
        self._version: int | None = None  #: the transitions counter as this monitor left it
        self.entry_rounds = EntryRounds(client, settings.keys, monitor_id=self.owner,
                                        incidents_len=settings.incidents_len,
                                        ttl_ms=settings.incidents_ttl_ms)
        self.entries_recorded: list[EntryRecorded] = []  #: the last round's entries
        self.deliveries = [
            Delivery(client, settings.keys, hook, owner=self.owner,
                     fmt=settings.webhook_format, dashboard_url=settings.dashboard_url,
                     **delivery_options)
            for hook in settings.webhooks]

    def judge_once(self) -> list[Recorded]:
        """One round: read the fleet, record it, log what this round recorded."""
        fleet = read_fleet(self.client, self.settings.keys)
        if fleet.store_problem is None:
            try:
                version = self._others_changed()
                due = self._due(fleet.reports)
                recorded = record(self.client, self.settings.keys, due,
                                  monitor_id=self.owner,
                                  incidents_len=self.settings.incidents_len,
                                  ttl_ms=self.settings.incidents_ttl_ms)
                self._count(version, sum(1 for r in recorded if r.incident))
            except Exception as exc:  # a store error between the read and the record
                self._say_problem(f"Redis refused the record: {exc}")
                return []
        else:
            self._say_problem(fleet.store_problem)
            return []
        self._remember(due, recorded)
        try:
            entries = self.entry_rounds.judge([r.service for r in fleet.reports],
                                              ENTRIES_BUDGET * self.every_s)
        except Exception as exc:  # the services are recorded; the entries next round
            self._say_problem(f"Redis refused the entries' record: {exc}")
            return recorded
        if self._problem is not None:
            log.warning("monitor: the store answers again")
            self._problem = None
        self.rounds += 1
        self.entries_recorded = entries
        for each in recorded:
            note = each.notification
            if each.incident:
                log.info("monitor: %s is %s (incident %s)%s", each.service, each.state,
                         each.incident, "" if note else ", not notified")
            elif note is not None:
                log.info("monitor: %s is %s, notified", each.service, each.state)
        for entry in entries:
            note = entry.notification
            if entry.incident:
                log.info("monitor: %s entry %r is %s (incident %s)%s", entry.service,
                         entry.entry, entry.state, entry.incident,
                         "" if note else ", not notified")
            elif note is not None:
                log.info("monitor: %s entry %r is %s, notified", entry.service, entry.entry,
                         entry.state)
        return recorded

    def _others_changed(self) -> int:
        """The transitions counter; if another monitor (or anyone) moved it since this one
        last did, forget what was settled: the record may hold what this monitor did not
        see, so every service goes to the record this round."""
        version = int(self.client.get(self.settings.keys.transitions) or 0)
        if version != self._version:
            self._settled.clear()
        return version

    def _count(self, version: int, transitions: int) -> None:
        """Add this round's recorded transitions to the counter, and note where it stands."""
        if not transitions:
            self._version = version
            return
        now = int(self.client.incrby(self.settings.keys.transitions, transitions))
        self._version = now if now == version + transitions else None  # another's too

    def _due(self, reports: list[Any]) -> list[Any]:
        """The reports that may change the record: see the module's docstring."""
        settled = self._settled
        if not settled:
            return reports
        turn = self.rounds % REFRESH_SLICES
        due = [r for r in reports
               if settled.get(r.service) != (r.state.value, r.diagnosis or "")
               or summary_shard(r.service) % REFRESH_SLICES == turn]
        if len(settled) > len(reports) // 2:  # forget services gone from the fleet
            names = {r.service for r in reports}
            for gone in [name for name in settled if name not in names]:
                del settled[gone]
        return due

    def _remember(self, sent: list[Any], recorded: list[Recorded]) -> None:
        """Note each service whose record now holds, notified, what this round judged."""
        settled = self._settled
        for report, each in zip(sent, recorded, strict=False):
            judged = report.state.value
            if each.service == report.service and each.settled and each.state == judged:
                settled[each.service] = (judged, report.diagnosis or "")
            else:
                settled.pop(each.service, None)

    def _say_problem(self, problem: str) -> None:
        from worker.core.urls import redact

        if self._problem is None:
            log.warning("monitor: cannot judge the fleet: %s; retrying every %g s",
                        redact(problem)[:200], self.every_s)
        self._problem = problem

    def run(self) -> None:
        """Judge on time until ``stop()``; webhooks are delivered meanwhile."""
        for delivery in self.deliveries:
            try:
                delivery.start_cursor()
            except Exception as exc:  # the store is down: the first step starts it later
                log.warning("monitor: webhook %s: cannot start its cursor yet: %s",
                            delivery.webhook.shown, str(exc)[:200])
            delivery.start()
        next_round = time.monotonic()
        try:
            while not self.stopping.is_set():
                self.judge_once()
                next_round = max(next_round + self.every_s, time.monotonic())
                self.stopping.wait(max(next_round - time.monotonic(), 0.0))
        finally:
            for delivery in self.deliveries:
                delivery.stop()
            for delivery in self.deliveries:
                delivery.join(timeout=2 * self.every_s + 6)

    def stop(self) -> None:
        """Stop after the current round."""
        self.stopping.set()
