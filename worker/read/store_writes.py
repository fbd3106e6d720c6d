"""Ask the store whether it refuses writes: the hop that breaks with every process alive.

A Redis at its memory limit under ``noeviction``, or a read-only replica given as the store,
answers every read, so the reader finds it reachable, yet beat's marker and the heartbeat
can't be written: from the keys alone it looks like beat died. A reader that finds a
heartbeat stale or missing asks ``INFO`` once (one round trip, only then) and names the
real hop, ``store_refuses_writes``.

An ``INFO`` the reader's ACL denies, or an unreadable reply, says nothing: the diagnosis
from the keys stands. A store that refuses only some writers (an ACL denying the worker's
user) can't be seen from the reader's connection; the worker logs ``NOPERM`` then.
"""

from __future__ import annotations

import re
from typing import Any

from worker.core.redis_io import as_text, execute_many

FULL_RATIO = 0.98
"""Memory use at or above this share of ``maxmemory`` counts as full: a heartbeat write
needs little, and used memory moves with client buffers between two readings."""

REFUSING_RATIO = 0.9
"""Memory use at or above this share of ``maxmemory`` counts as full when the store has
also refused writes for memory (``errorstat_OOM`` in ``INFO``): a store that is also the
broker swings about its limit as queued messages come and go, taking one write and
refusing the next, and a reading may fall in a dip."""

_COUNT = re.compile(r"count'?\s*[=:]\s*(\d+)")


def parse_info(reply: Any) -> dict[str, str]:
    """``INFO`` as field -> value (redis-py's parsed dict, or the raw text of the probe)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    fields: dict[str, str] = {}
    for line in as_text(reply).splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            fields[name] = value.strip()
    return fields


def refusal(info: dict[str, str]) -> str | None:
    """Why this store refuses writes, in one clause; None when ``info`` shows no reason."""
    if info.get("role") in ("slave", "replica"):
        master = f"{info.get('master_host', '?')}:{info.get('master_port', '?')}"
        return (f"the store is a read-only replica (of {master}): point beat and the "
                "workers at the primary")
    try:
        limit = int(info.get("maxmemory", "0"))
        used = int(info.get("used_memory", "0")) - int(info.get("mem_not_counted_for_evict",
                                                                 "0"))
    except ValueError:
        return None
    if limit <= 0 or info.get("maxmemory_policy") != "noeviction":
        return None
    if used >= limit * FULL_RATIO:
        return (f"the store is at its memory limit ({used} of maxmemory {limit} bytes, "
                "policy noeviction): free memory or raise maxmemory")
    refused = oom_refusals(info)
    if refused and used >= limit * REFUSING_RATIO:
        return (f"the store is at its memory limit ({used} of maxmemory {limit} bytes, "
                f"policy noeviction) and has refused {refused} write(s) for memory since it "
                "started: free memory or raise maxmemory")
    return None


def oom_refusals(info: dict[str, str]) -> int:
    """How many commands the store refused for memory (``errorstat_OOM``), 0 if unknown."""
    found = _COUNT.search(info.get("errorstat_OOM", ""))
    return int(found.group(1)) if found else 0


def ask_refusal(client: Any) -> str | None:
    """Ask the store (one ``INFO``) whether it refuses writes; None if it can't tell."""
    try:
        (reply,) = execute_many(client, [("INFO",)])
    except Exception:  # a store that fails now is diagnosed by the next read, not here
        return None
    if isinstance(reply, BaseException):
        return None
    return refusal(parse_info(reply))
