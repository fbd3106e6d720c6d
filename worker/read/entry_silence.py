"""The silence of one beat entry (``silence SERVICE --entry NAME``), on the Redis clock.

Each entry's silence is a field of the service's ``entry_silence`` hash (entry names are
the user's text: hash fields, never key names) holding ``until_ms``, ``since_ms`` and
``reason``. A field whose ``until_ms`` has passed on the Redis clock is no silence, even
before the next ``silence`` drops it; the hash itself expires when its last silence ends.
"""

from __future__ import annotations

from typing import Any

from worker.core.names import Keys
from worker.core.redis_io import as_text, execute_many, redis_time_ms
from worker.read.incidents import Silence, parse_silence


def _raise(reply: Any) -> Any:
    if isinstance(reply, BaseException):
        raise reply
    return reply


def read_entry_silence(client: Any, service: str, entry: str, *,
                       keys: Keys | None = None) -> Silence | None:
    """The silence of ``entry`` of ``service`` while it lasts, else None. One round trip
    (``TIME`` and ``HGET``); raises on a store error."""
    keys = keys or Keys()
    time_reply, raw = execute_many(client, [("TIME",), ("HGET", keys.entry_silence(service),
                                                         entry)])
    now_ms = redis_time_ms(_raise(time_reply))
    silence = parse_silence(_raise(raw))
    return silence if silence is not None and silence.until_ms > now_ms else None


def read_entry_silences(client: Any, service: str, *,
                        keys: Keys | None = None) -> dict[str, Silence]:
    """Every entry of ``service`` silenced now: name -> its silence. One round trip; raises
    on a store error."""
    keys = keys or Keys()
    time_reply, raw = execute_many(client, [("TIME",), ("HGETALL", keys.entry_silence(service))])
    now_ms = redis_time_ms(_raise(time_reply))
    return silences_from_reply(_raise(raw), now_ms)


def silences_from_reply(pairs: Any, now_ms: int) -> dict[str, Silence]:
    """The silences that hold at ``now_ms`` in an ``HGETALL`` reply of the ``entry_silence``
    hash (a dict or a flat list); a field that is not a silence is none. Never raises."""
    if isinstance(pairs, dict):
        items: Any = pairs.items()
    elif isinstance(pairs, list):
        items = zip(pairs[0::2], pairs[1::2], strict=False)
    else:
        return {}
    out: dict[str, Silence] = {}
    for name, value in items:
        silence = parse_silence(value)
        if silence is not None and silence.until_ms > now_ms:
            out[as_text(name)] = silence
    return out
