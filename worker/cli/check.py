"""``petsage-heartbeat check``: a probe with Nagios exit codes and a hard deadline.

Imports neither Celery, kombu nor redis-py: it runs as a fresh process on every
Kubernetes probe or cron tick, where import time is most of the cost. For the same reason
the component probes' modules (``--node``, ``--beat``: ``liveness``, ``absence``) are
imported only by those probes, and the monitors' incident streams never
(tests/test_check_imports.py).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from worker.core.errors import ConfigError, StoreUnreachableError
from worker.core.exits import fail
from worker.core.names import validate_node
from worker.core.redis_io import execute_many
from worker.core.settings import MAX_STALE_AFTER_S, Settings
from worker.core.states import State
from worker.core.urls import redact
from worker.read.connect import reader_client
from worker.read.diagnosis import beat_seen_ms
from worker.read.nodes import PROBE_NODES_LIMIT, matches
from worker.read.reader import HeartbeatReport, read_heartbeat, unreachable
from worker.read.render import (
    NAGIOS_LABELS,
    nagios_line,
    silence_json,
    silence_note,
    summary,
)
from worker.read.silence import Silence, silence_commands, silence_from_replies
from worker.read.store_writes import parse_info

if TYPE_CHECKING:
    from worker.read.absence import Absence
    from worker.read.liveness import StoreEvidence, Verdict

T = TypeVar("T")


MAX_WAIT_S = 3600.0
"""The longest ``--timeout`` or ``--poll``: a probe or a poll must end within the hour."""

def positive_seconds(flag: str, value: float | None,
                     maximum: float = MAX_WAIT_S) -> float | None:
    """Validate an optional seconds flag: finite, above zero and at most ``maximum``."""
    if value is not None and (not math.isfinite(value) or not 0 < value <= maximum):
        raise ConfigError(f"{flag} {value!r} is out of range; accepted: seconds > 0 and "
                          f"<= {maximum:g}")
    return value


def within(deadline_s: float, work: Callable[[], T]) -> T | None:
    """Run ``work`` in a daemon thread; None if it is not done by the deadline.

    A thread, not socket timeouts alone: name resolution has no timeout of its own, and a
    probe must answer inside Kubernetes' ``timeoutSeconds`` whatever hangs.
    """
    box: list[T | BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except Exception as exc:  # reported by the caller as one line, never a traceback
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="heartbeat-check")
    thread.start()
    thread.join(deadline_s)
    if box and isinstance(box[0], BaseException):
        raise StoreUnreachableError(redact(f"{type(box[0]).__name__}: {box[0]}")) from None
    return box[0] if box else None  # type: ignore[return-value]


def run_check(*, redis_url: str | None, service: str | None, prefix: str | None,
              late_after_s: float | None, stale_after_s: float | None, timeout_s: float,
              as_json: bool, unreachable_ok: bool, node: str | None = None,
              beat: bool = False, liveness: bool = False) -> int:
    """Print one line (or one JSON object) and return the Nagios exit code.

    Without ``node`` or ``beat`` it judges the service heartbeat; with one of them, that
    component (``worker.read.liveness``), and with ``liveness`` fails only for its own faults.
    """
    try:
        positive_seconds("--timeout", timeout_s)
        positive_seconds("--late-after", late_after_s, MAX_STALE_AFTER_S)
        positive_seconds("--stale-after", stale_after_s, MAX_STALE_AFTER_S)
        if node is not None:
            validate_node(node, source="--node")
        if liveness and node is None and not beat:
            raise ConfigError("--liveness needs the component it probes; accepted: "
                              "--liveness --node NODE (a worker) or --liveness --beat")
        settings = Settings.from_env(None, redis_url=redis_url, service=service, prefix=prefix)
    except ConfigError as exc:
        return fail("check", str(exc))

    silences: list[Silence | None] = []
    evidence: list[StoreEvidence] = []

    def probe() -> HeartbeatReport:
        client = reader_client(settings.redis_url, timeout_s)
        try:
            report = read_heartbeat(client, settings.service, keys=settings.keys,
                                    late_after_s=late_after_s, stale_after_s=stale_after_s,
                                    nodes_limit=PROBE_NODES_LIMIT)
            if report.state is not State.UNREACHABLE and node is None and not beat:
                # A silence is said beside the true state, never instead of it.
                # Bounded: a value longer than any silence is no silence, never read.
                length, raw = execute_many(client, silence_commands(settings.keys,
                                                                    settings.service))
                silences.append(silence_from_replies(length, raw))
            if report.state is not State.UNREACHABLE and liveness:
                evidence.append(_ask_store(client, settings.keys.index))
            return report
        finally:
            client.close()

    try:
        report = within(timeout_s + 0.05, probe) or unreachable(
            settings.service, f"timed out after {timeout_s:g}s")
    except StoreUnreachableError as exc:
        report = unreachable(settings.service, f"Redis could not be asked: {exc}"[:300])
    if node is not None or beat:
        from worker.read.liveness import beat_verdict, node_verdict  # component probes only

        store = evidence[0] if evidence else None
        absence = None
        if liveness and report.state is not State.UNREACHABLE:
            absence = _absence(report, settings.redis_url, settings.keys.prefix, node, store)
        verdict = (node_verdict(report, node, liveness=liveness, late_after_s=late_after_s,
                                stale_after_s=stale_after_s, store=store, absence=absence)
                   if node is not None else
                   beat_verdict(report, liveness=liveness, late_after_s=late_after_s,
                                stale_after_s=stale_after_s, store=store, absence=absence))
        return _print_verdict(report, verdict, as_json=as_json, node=node, liveness=liveness)
    code = report.exit_code
    if unreachable_ok and report.state is State.UNREACHABLE:
        code = 0
    silence = silences[0] if silences else None
    now_ms = report.now_ms or 0
    if silence is not None and silence.until_ms <= now_ms:
        silence = None
    if as_json:
        print(json.dumps({**summary(report), "exit_code": code,
                          "silence": silence_json(silence, now_ms)}))
    else:
        line = nagios_line(report, None if silence is None else silence_note(silence, now_ms))
        print(line if code == report.exit_code else "OK - (unreachable tolerated) " + line)
    return code


def _ask_store(client: object, index_key: str) -> StoreEvidence:
    """The store's evidence about itself: ``INFO`` and the fleet index's size, one round trip.

    A denied or failed ``INFO`` says nothing (the evidence is empty), never an error.
    """
    from worker.read.liveness import StoreEvidence, store_evidence  # liveness probes only

    try:
        info, size = execute_many(client, [("INFO",), ("ZCARD", index_key)])
    except Exception:  # the read just worked: a failure now is the next probe's to see
        return StoreEvidence()
    fields = {} if isinstance(info, BaseException) else parse_info(info)
    return store_evidence(fields, None if isinstance(size, BaseException) else int(size))


def _absence(report: HeartbeatReport, redis_url: str, prefix: str, node: str | None,
             store: StoreEvidence | None) -> Absence | None:
    """This probe's absence clock for its component's record (``worker.read.absence``).

    Counted only while the store takes writes; the record there, or a store that can't
    take writes, removes the state file.
    """
    from worker.read.absence import absent_for, present, state_path  # liveness probes only

    component = "beat" if node is None else f"node:{node}"
    path = state_path(redis_url, prefix, report.service, component)
    if node is None:
        absent = beat_seen_ms(report.beat) is None
    else:
        absent = not any(matches(n.node, node) for n in report.nodes)
    if not absent or (store is not None and store.cannot_write is not None):
        present(path)
        return None
    return absent_for(path, "" if store is None else store.run_id)


def _print_verdict(report: HeartbeatReport, verdict: Verdict, *, as_json: bool,
                   node: str | None, liveness: bool) -> int:
    if as_json:
        print(json.dumps({"service": report.service, "component": "beat" if node is None
                          else "node", "liveness": liveness, **verdict.fields,
                          "exit_code": verdict.exit_code}))
    else:
        print(f"{NAGIOS_LABELS[verdict.exit_code]} - {verdict.text}")
    return verdict.exit_code
