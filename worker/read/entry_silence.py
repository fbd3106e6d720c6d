"""The silence of one beat entry (``silence SERVICE --entry NAME``), on the Redis clock.

Each entry's silence is a field of the service's ``entry_silence`` hash (entry names are
the user's text: hash fields, never key names) holding ``until_ms``, ``since_ms`` and
``reason``. A field whose ``until_ms`` has passed on the Redis clock is no silence, even
before the next ``silence`` drops it; the hash itself expires when its last silence ends.

The hash is read bounded (``entry_silences.lua``): a field is read only when its name is an
entry name's length at most and its value at most ``MAX_SILENCE_BYTES`` (``HSTRLEN`` before
``HGET``), and a hash of more than ``MAX_ENTRY_SILENCES`` fields is read as no silence. A
value ``silence`` could not have written costs the reader nothing and is no silence.
"""

from __future__ import annotations

from typing import Any

from worker.core.entries import ENTRY_NAME_MAX
from worker.core.names import Keys
from worker.core.redis_io import Command, as_text, execute_many, lua_script, redis_time_ms
from worker.read.silence import MAX_SILENCE_BYTES, Silence, parse_silence

MAX_ENTRY_SILENCES = 2000
"""A service's entry silences read at most: as many as the entries a reader reads (beat
watches at most 1,000). A hash with more fields than this is no silence at all."""

ENTRY_SILENCES_SCRIPT = lua_script(__package__, "entry_silences.lua")


def entry_silences_command(keys: Keys, service: str, entry: str | None = None) -> Command:
    """The read of ``service``'s entry silences (or ``entry``'s only), bounded: its reply is
    a flat list of names and values for ``silences_from_reply``."""
    return ("EVAL", ENTRY_SILENCES_SCRIPT, 1, keys.entry_silence(service), MAX_ENTRY_SILENCES,
            4 * ENTRY_NAME_MAX, MAX_SILENCE_BYTES, *(() if entry is None else (entry,)))


def _raise(reply: Any) -> Any:
    if isinstance(reply, BaseException):
        raise reply
    return reply


def read_entry_silence(client: Any, service: str, entry: str, *,
                       keys: Keys | None = None) -> Silence | None:
    """The silence of ``entry`` of ``service`` while it lasts, else None. One round trip
    (``TIME`` and the bounded read of the one field); raises on a store error."""
    keys = keys or Keys()
    time_reply, raw = execute_many(client, [("TIME",),
                                            entry_silences_command(keys, service, entry)])
    now_ms = redis_time_ms(_raise(time_reply))
    return silences_from_reply(_raise(raw), now_ms).get(entry)


def read_entry_silences(client: Any, service: str, *,
                        keys: Keys | None = None) -> dict[str, Silence]:
    """Every entry of ``service`` silenced now: name -> its silence. One round trip; raises
    on a store error."""
    keys = keys or Keys()
    time_reply, raw = execute_many(client, [("TIME",), entry_silences_command(keys, service)])
    now_ms = redis_time_ms(_raise(time_reply))
    return silences_from_reply(_raise(raw), now_ms)


def silences_from_reply(pairs: Any, now_ms: int) -> dict[str, Silence]:
    """The silences that hold at ``now_ms`` in a reply of ``entry_silences_command`` (or an
    ``HGETALL`` of the ``entry_silence`` hash: a dict or a flat list); a field that is not a
    silence is none. Never raises."""
    if isinstance(pairs, dict):
        items: Any = pairs.items()
    elif isinstance(pairs, list):
        items = zip(pairs[0::2], pairs[1::2], strict=False)
    else:
        return {}
    out: dict[str, Silence] = {}
    for name, value in list(items)[:2 * MAX_ENTRY_SILENCES]:
        silence = parse_silence(value)
        if silence is not None and silence.until_ms > now_ms:
            out[as_text(name)] = silence
    return out
