"""The beat entries of many services, read in chunks: ``status --all --entries``.

Each service is read by ``read_entries`` itself, so every rule stays in one place; its
commands are only gathered first and sent for ``ENTRY_CHUNK_SERVICES`` services in one
round trip. A service's ``HGETALL`` holds at most ``MAX_ENTRIES_READ`` records of at most
16 KiB each, so a chunk's reply stays bounded whatever the fleet's size, and no other
client of Redis waits on one long command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.core.names import Keys
from worker.core.redis_io import execute_many
from worker.read.entries import EntriesReport, read_entries

ENTRY_CHUNK_SERVICES = 25
"""Services whose entries are read in one round trip (four commands each)."""


class _GatheredError(Exception):
    """Raised by the recording client once it has the commands: nothing is sent."""


class _Recorder:
    """A client that records the commands ``read_entries`` would send, and sends none."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.commands = [tuple(c) for c in commands]
        raise _GatheredError


class _Replay:
    """A client that answers ``read_entries`` with the replies already fetched for it."""

    def __init__(self, commands: list[tuple[Any, ...]], replies: list[Any]) -> None:
        self._commands = commands
        self._replies = replies

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if [tuple(c) for c in commands] != self._commands:  # read_entries asks the same twice
            raise RuntimeError("the entries' read asked other commands than were fetched")
        return self._replies


def read_entries_of(client: Any, services: Sequence[str], *, keys: Keys | None = None,
                    chunk: int = ENTRY_CHUNK_SERVICES) -> list[EntriesReport]:
    """Each service's ``EntriesReport``, in order; never raises (a failed chunk is an error
    report for each of its services)."""
    keys = keys or Keys()
    out: list[EntriesReport] = []
    for start in range(0, len(services), chunk):
        part = list(services[start:start + chunk])
        gathered = []
        for service in part:
            recorder = _Recorder()
            read_entries(recorder, service, keys=keys)
            gathered.append(recorder.commands)
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
            out.append(read_entries(_Replay(commands, own), service, keys=keys))
    return out
