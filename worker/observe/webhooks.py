"""The bodies posted to webhooks: the JSON event, or one line for chat (Slack format)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _iso(ms: Any) -> str | None:
    if not isinstance(ms, int | float) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def event_body(notification_id: str, event: dict[str, Any],
               dashboard_url: str | None) -> dict[str, Any]:
    """The JSON body: one transition, or one diagnosis amended, as the monitors recorded it.

    A beat entry's transition has ``entry`` (its name) and entry states; a service's has
    no ``entry``.

    ``kind`` is ``transition`` (a state change) or ``diagnosis`` (the same state, its hop
    now known: ``old_diagnosis`` is the one notified before); notifications queued before
    kinds existed are transitions.
    """
    age = event.get("age_s")
    try:
        age_s = float(age) if age not in (None, "") else None
    except (TypeError, ValueError):
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
    """One human line for chat: service, old -> new, diagnosis and why."""
    if body.get("kind") == "diagnosis":
        line = (f"PetSage heartbeat: {body['service']} still {body['new_state']}, diagnosis "
                f"{body.get('old_diagnosis') or 'unknown'} -> {body['diagnosis']}: "
                f"{body['reason']}")
    elif isinstance(body.get("entry"), str):
        diagnosis = f" ({body['diagnosis']})" if body.get("diagnosis") else ""
        line = (f"PetSage heartbeat: {body['service']} entry {body['entry']!r} "
                f"{body['old_state']} -> {body['new_state']}{diagnosis}: {body['reason']}")
    else:
        diagnosis = f" ({body['diagnosis']})" if body.get("diagnosis") else ""
        line = (f"PetSage heartbeat: {body['service']} {body['old_state']} -> "
                f"{body['new_state']}{diagnosis}: {body['reason']}")
    if body.get("dashboard_url"):
        line += f" <{body['dashboard_url']}|dashboard>"
    return line


def render(fmt: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body to post in ``fmt``."""
    return {"text": text_line(body)} if fmt == "slack" else body
