"""A service's silence as the readers see it: read bounded, parsed, never raising.

``silence`` writes it (``worker/cli/silence.py``); the monitors hold notifications back
while it lasts; ``check`` and ``status`` say it beside the true state. Apart from the
incident streams (``worker.read.incidents``), so that ``check``, which reads only the
silence, imports only this.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from worker.core.names import Keys
from worker.core.redis_io import Command

MAX_SILENCE_BYTES = 4096
"""The longest silence value read. ``silence`` writes at most 300 characters of reason in a
small JSON object (under 2 KiB however escaped); a longer value is no silence, never read."""


class Silence(NamedTuple):
    """An operator's silence: notifications held back and alert rules quiet until then."""

    until_ms: int
    reason: str
    since_ms: int


def parse_silence(raw: Any) -> Silence | None:
    """A stored silence, or None (absent, or not what ``silence`` writes)."""
    if raw is None or len(raw) > MAX_SILENCE_BYTES:
        return None
    try:
        data = json.loads(raw)
        return Silence(int(data["until_ms"]), str(data.get("reason", ""))[:300],
                       int(data.get("since_ms", 0)))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
        return None


def silence_commands(keys: Keys, service: str) -> list[Command]:
    """The commands that read ``service``'s silence, bounded: its length and its first
    ``MAX_SILENCE_BYTES`` bytes (``silence_from_replies`` makes a silence of their replies)."""
    key = keys.silence(service)
    return [("STRLEN", key), ("GETRANGE", key, 0, MAX_SILENCE_BYTES - 1)]


def silence_from_replies(length: Any, value: Any) -> Silence | None:
    """The silence in the replies to ``silence_commands``: None when absent, unreadable, or
    longer than ``MAX_SILENCE_BYTES`` (not what ``silence`` writes). Never raises."""
    if isinstance(length, BaseException) or isinstance(value, BaseException):
        return None
    if not isinstance(length, int) or not 0 < length <= MAX_SILENCE_BYTES:
        return None
    return parse_silence(value)
