"""Recent entries of services' history streams, for charts (one pipelined round trip)."""

from __future__ import annotations

from typing import Any

from worker.keys import Keys
from worker.reader import execute_many

NUMERIC_FIELDS = ("ts_ms", "seq", "lag_ms", "duration_ms", "queue_depth")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(fields: Any) -> dict[str, Any]:
    pairs = fields.items() if isinstance(fields, dict) else zip(fields[0::2], fields[1::2],
                                                                strict=False)
    out: dict[str, Any] = {}
    for key, value in pairs:
        name, text = _text(key), _text(value)
        if name in NUMERIC_FIELDS:
            try:
                out[name] = float(text) if text else None
            except ValueError:
                out[name] = None
        elif name == "status":
            out[name] = text[:16]
    return out


def read_histories(client: Any, keys: Keys, services: list[str],
                   count: int) -> dict[str, list[dict[str, Any]]]:
    """The last ``count`` history entries of each service, oldest first (never raises)."""
    if not services:
        return {}
    try:
        replies = execute_many(client, [("XREVRANGE", keys.history(s), "+", "-", "COUNT", count)
                                        for s in services])
    except Exception:  # a chart is decoration: no history is better than a failed page
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for service, reply in zip(services, replies, strict=True):
        if isinstance(reply, BaseException) or not reply:
            out[service] = []
            continue
        out[service] = [_entry(fields) for _, fields in reversed(reply)]
    return out
