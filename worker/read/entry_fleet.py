"""The beat entries of many services, read in chunks: ``status --all --entries``.

Each service is read with ``read_entries``'s own commands and judged by its own
``entries_from_replies``, so every rule stays in one place; the commands of
``ENTRY_CHUNK_SERVICES`` services go in one round trip. A service's ``HGETALL`` holds
at most ``MAX_ENTRIES_READ`` records of at most 16 KiB each, so a chunk's reply stays
bounded whatever the fleet's size, and no other client of Redis waits on one long
command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.core.names import Keys
from worker.core.redis_io import execute_many
from worker.read.entries import EntriesReport, entries_commands, entries_from_replies

ENTRY_CHUNK_SERVICES = 25
"""Services whose entries are read in one round trip (five commands each)."""


def read_entries_of(client: Any, services: Sequence[str], *, keys: Keys | None = None,
                    chunk: int = ENTRY_CHUNK_SERVICES) -> list[EntriesReport]:
    """Each service's ``EntriesReport``, in order; never raises (a failed chunk is an error
    report for each of its services)."""
    keys = keys or Keys()
    out: list[EntriesReport] = []
    for start in range(0, len(services), chunk):
        part = list(services[start:start + chunk])
        gathered = [entries_commands(service, keys) for service in part]
        try:
            replies = execute_many(client, [c for commands in gathered for c in commands])
        except Exception as exc:  # unreachable, refused: every service of the chunk says so
            error = f"{type(exc).__name__}: {exc}"[:200]
            out.extend(EntriesReport(s, None, (), error) for s in part)
            continue
        at = 0
        for service, commands in zip(part, gathered, strict=True):
            own = replies[at:at + len(commands)]
            at += len(commands)
            out.append(entries_from_replies(service, own))
    return out
