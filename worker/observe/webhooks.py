"""The bodies posted to webhooks: the JSON event, or one line for chat (Slack format).

Every outbox entry is checked before it is posted (``event_problem``): the monitors'
scripts write the outbox, but anyone who can write to the store can too, and a webhook
carries its receiver's trust. In the chat line, every field that comes from the store
(service and entry names, states, diagnoses, the reason with its check names and beat's
publish error) is escaped (``slack_escape``): Slack's ``& < >``, so ``<!channel>`` or
``<https://evil.example|click>`` arrive as text; ``@`` and Markdown's ``](`` broken by a
zero-width space, so Mattermost, Rocket.Chat and Discord neither mention nor link; control
characters as ``\\n``, so a line stays one line.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from worker.core.entries import EntryState, entry_name_problem
from worker.core.names import SERVICE_PATTERN
from worker.core.states import Diagnosis, State
from worker.read.entry_judge import DIAGNOSES
from worker.read.render import escape

SERVICE_STATES = frozenset(s.value for s in State)
"""A service notification's ``new_state``; ``old_state`` may also be ``unknown``."""

ENTRY_STATES = frozenset(s.value for s in EntryState)
"""An entry notification's ``new_state``; ``old_state`` may also be ``unknown``."""

SERVICE_DIAGNOSES = frozenset(d.value for d in Diagnosis)
"""A service notification's ``diagnosis`` and ``old_diagnosis`` (or empty)."""

ENTRY_DIAGNOSES = DIAGNOSES
"""An entry notification's ``diagnosis`` (or empty): ``worker.read.entry_judge``'s."""

REASON_MAX = 300
"""The longest reason the monitors record (``record.py``, ``entry_record.py``)."""

EVENT_MAX_BYTES = 8192
"""The longest outbox entry taken: a reason of 300 escaped characters fits many times."""

_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,12})?")
_MENTION_OR_LINK = re.compile(r"@|\]\(")


def _shown(value: Any) -> str:
    if not isinstance(value, str):
        return repr(value)[:40]
    return repr(value[:40] + ("..." if len(value) > 40 else ""))


def event_problem(event: dict[str, Any]) -> str | None:
    """Why the outbox entry ``event`` can't be posted, or None when every field is one the
    monitors write: the service name pattern, a known state and diagnosis, a valid entry
    name, a reason within 300 characters, numbers and ids where numbers and ids go. The
    problem is one line, its values escaped and cut to 40 characters."""
    service = event.get("service")
    if not isinstance(service, str) or not SERVICE_PATTERN.fullmatch(service):
        return f"service {escape(_shown(service))} is not a service name"
    kind = event.get("kind", "transition")
    if kind not in ("transition", "diagnosis"):
        return f"kind {escape(_shown(kind))} is unknown"
    entry = event.get("entry")
    if "entry" in event and (problem := entry_name_problem(entry)) is not None:
        return f"entry {escape(_shown(entry))}: {problem}"
    states, diagnoses = (ENTRY_STATES, ENTRY_DIAGNOSES) if "entry" in event else (
        SERVICE_STATES, SERVICE_DIAGNOSES)
    if event.get("new_state") not in states:
        return f"new_state {escape(_shown(event.get('new_state')))} is not a state"
    if event.get("old_state") not in states | {"unknown"}:
        return f"old_state {escape(_shown(event.get('old_state')))} is not a state"
    for field in ("diagnosis", "old_diagnosis"):
        value = event.get(field)
        if value not in (None, "") and value not in diagnoses:
            return f"{field} {escape(_shown(value))} is not a diagnosis"
    reason = event.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_MAX):
        return f"reason is not text of at most {REASON_MAX} characters"
    for field in ("age_s", "seq", "since_ms", "seen_ms"):
        value = event.get(field)
        # JSON has no NaN or Infinity (``json.loads`` takes them): a body holding one is
        # not JSON to its receiver.
        if value in (None, "") or (type(value) is float and field != "seq"
                                   and math.isfinite(value)):
            continue
        if type(value) is int or (isinstance(value, str) and _NUMBER.fullmatch(value)):
            continue
        return f"{field} {escape(_shown(value))} is not a number"
    incident = event.get("incident")
    if incident not in (None, "") and not (isinstance(incident, str)
                                           and _ID.fullmatch(incident)):
        return f"incident {escape(_shown(incident))} is not a stream id"
    return None


def slack_escape(value: Any) -> str:
    """``value`` as text safe in a chat line: controls escaped, Slack's ``& < >`` as
    entities, ``@`` and ``](`` broken by a zero-width space (no mention, no Markdown link)."""
    text = escape("" if value is None else value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION_OR_LINK.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], text)


def _iso(ms: Any) -> str | None:
    """``ms`` as an ISO time, or None when it is not a time of the calendar (a number
    past the year 9999 is one ``event_problem`` passes: its body has no ``since``)."""
    if not isinstance(ms, int | float) or ms <= 0:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return None


def event_body(notification_id: str, event: dict[str, Any],
               dashboard_url: str | None) -> dict[str, Any]:
    """The JSON body: one transition, or one diagnosis amended, as the monitors recorded it.

    A beat entry's transition has ``entry`` (its name) and entry states; a service's has
    no ``entry``.

    ``kind`` is ``transition`` (a state change) or ``diagnosis`` (the same state, its hop
    now known: ``old_diagnosis`` is the one notified before); notifications queued before
    kinds existed are transitions.
    """
    age: Any = event.get("age_s")
    try:
        age_s: float | None = float(age)
    except (TypeError, ValueError):  # absent, empty or not a number
        age_s = None
    seq = event.get("seq")
    kind = "diagnosis" if event.get("kind") == "diagnosis" else "transition"
    body: dict[str, Any] = {
        "id": notification_id,
        "kind": kind,
        "service": event.get("service"),
        "old_state": event.get("old_state"),
        "new_state": event.get("new_state"),
        "diagnosis": event.get("diagnosis") or None,
        "reason": event.get("reason"),
        "age_s": age_s,
        "seq": int(seq) if isinstance(seq, str) and seq.isdigit() else None,
        "since": _iso(event.get("since_ms")),
        "since_ms": event.get("since_ms"),
        "incident": event.get("incident") or None,
        "dashboard_url": dashboard_url,
    }
    if kind == "diagnosis":
        body["old_diagnosis"] = event.get("old_diagnosis") or None
    if isinstance(event.get("entry"), str):
        # A beat entry's transition: its name (the states are entry states then).
        body["entry"] = event["entry"]
    return body


def text_line(body: dict[str, Any]) -> str:
    """One human line for chat: service, old -> new, diagnosis and why; every field from
    the store escaped (``slack_escape``), the operator's dashboard link not."""
    f = {key: slack_escape(value) for key, value in body.items()}
    if body.get("kind") == "diagnosis":
        line = (f"PetSage heartbeat: {f['service']} still {f['new_state']}, diagnosis "
                f"{slack_escape(body.get('old_diagnosis') or 'unknown')} -> "
                f"{f['diagnosis']}: {f['reason']}")
    elif isinstance(body.get("entry"), str):
        diagnosis = f" ({f['diagnosis']})" if body.get("diagnosis") else ""
        line = (f"PetSage heartbeat: {f['service']} entry {slack_escape(repr(body['entry']))} "
                f"{f['old_state']} -> {f['new_state']}{diagnosis}: {f['reason']}")
    else:
        diagnosis = f" ({f['diagnosis']})" if body.get("diagnosis") else ""
        line = (f"PetSage heartbeat: {f['service']} {f['old_state']} -> "
                f"{f['new_state']}{diagnosis}: {f['reason']}")
    if body.get("dashboard_url"):
        line += f" <{body['dashboard_url']}|dashboard>"
    return line


def render(fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body to post in ``fmt``."""
    return {"text": text_line(body)} if fmt == "slack" else body
