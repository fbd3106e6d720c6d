"""Recent entries of services' history streams, for charts (one pipelined round trip)."""

from __future__ import annotations

import math
import re
from typing import Any

from worker.core.names import Keys
from worker.core.redis_io import as_text, execute_many

INT_FIELDS = ("ts_ms", "seq", "queue_depth")
"""Counts and epoch milliseconds: the store writes them as integers, readers get integers."""

FLOAT_FIELDS = ("lag_ms", "duration_ms")
"""Measured times, written with decimals."""

NUMERIC_FIELDS = INT_FIELDS + FLOAT_FIELDS

_INTEGER = re.compile(r"[0-9]{1,18}")
"""What an integer field may hold: counts and epoch ms, in plain digits, within 64 bits."""



def _finite(text: str) -> float | None:
    """``text`` as a float; None (unknown) unless finite: NaN and infinities are not JSON."""
    if len(text) > 64:  # no number we write is this long
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _entry(fields: Any) -> dict[str, Any]:
    pairs = fields.items() if isinstance(fields, dict) else zip(fields[0::2], fields[1::2],
                                                                strict=False)
    out: dict[str, Any] = {}
    for key, value in pairs:
        name, text = as_text(key), as_text(value)
        if name in INT_FIELDS:
            out[name] = int(text) if _INTEGER.fullmatch(text) else None
        elif name in FLOAT_FIELDS:
            out[name] = _finite(text)
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
