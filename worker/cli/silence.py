"""``silence``, ``unsilence`` and ``forget``: an operator's hands on one service's record.

A silence holds notifications back and quiets the shipped alert rules until it ends (its
key expires on the Redis clock); probes still say the true state, with a note. ``forget``
retires a service: its keys and its place in the index go.

``--entry NAME`` silences one beat entry of the service's app instead: a field of the
service's ``entry_silence`` hash, its end on the Redis clock (``entry_silence.lua``); the
monitors hold that entry's notifications back and record its transitions.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from worker.core.entries import validate_entry_name
from worker.core.errors import ConfigError
from worker.core.exits import fail
from worker.core.names import Keys, validate_service
from worker.core.redis_clients import make_client
from worker.core.redis_io import lua_script
from worker.core.settings import Settings
from worker.core.states import State
from worker.core.urls import redact

MAX_SILENCE_S = 365 * 86_400
"""The longest silence: a year (a service silenced for longer should be forgotten)."""

_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,7})h)?(?:(\d{1,9})m)?(?:(\d{1,10})s?)?")

SILENCE_SCRIPT = lua_script(__package__, "silence.lua")
ENTRY_SILENCE_SCRIPT = lua_script(__package__, "entry_silence.lua")


def parse_duration(text: str, *, source: str = "--for") -> int:
    """Seconds of ``90``, ``90s``, ``15m``, ``2h``, ``1d`` or ``1h30m``; one line if not."""
    match = _DURATION.fullmatch(text.strip().lower())
    accepted = ("accepted: a duration such as 90s, 15m, 2h, 1d or 1h30m (seconds if no "
                "unit), from 1 s to 365 d")
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"{source} {text[:20]!r} is invalid; {accepted}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = days * 86_400 + hours * 3600 + minutes * 60 + seconds
    if not 1 <= total <= MAX_SILENCE_S:
        raise ConfigError(f"{source} {text[:20]!r} is out of range; {accepted}")
    return total


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _known(client: Any, keys: Keys, service: str) -> bool:
    """Whether the store knows ``service``: in the index, or any of its keys exists."""
    return client.zscore(keys.index, service) is not None or bool(
        client.exists(*keys.service_keys(service)))


def _entry_known(client: Any, keys: Keys, service: str, entry: str) -> bool:
    """Whether ``entry`` is watched for ``service`` (in its entries), or silenced."""
    return bool(client.hexists(keys.entries(service), entry)) or bool(
        client.hexists(keys.entry_silence(service), entry))


def _unknown_entry(command: str, service: str, entry: str) -> int:
    return fail(command, f"entry {entry!r} of {service!r} is not watched (not in its beat "
                         "entries); accepted: an entry 'petsage-heartbeat status --entries' "
                         "lists")


def _setup(command: str, redis_url: str | None, prefix: str | None,
           service: str, entry: str | None = None) -> tuple[Settings, Any] | int:
    try:
        validate_service(service, source="service")
        if entry is not None:
            validate_entry_name(entry, source="--entry")
        settings = Settings.from_env(None, redis_url=redis_url, prefix=prefix)
    except ConfigError as exc:
        return fail(command, str(exc))
    return settings, make_client(settings.redis_url, timeout_s=settings.redis_timeout_s)


def _unknown(command: str, service: str) -> int:
    return fail(command, f"service {service!r} is not known to the store (not in the fleet "
                         "index, no keys); accepted: a service 'petsage-heartbeat status "
                         "--all' lists")


def run_silence(*, service: str, duration: str, reason: str, redis_url: str | None,
                prefix: str | None, entry: str | None = None) -> int:
    """Silence ``service`` (or its beat entry ``entry``) for ``duration``; print until when."""
    try:
        seconds = parse_duration(duration)
    except ConfigError as exc:
        return fail("silence", str(exc))
    setup = _setup("silence", redis_url, prefix, service, entry)
    if isinstance(setup, int):
        return setup
    settings, client = setup
    if entry is not None:
        return _silence_entry(client, settings.keys, service, entry, seconds=seconds,
                              reason=reason)
    try:
        if not _known(client, settings.keys, service):
            return _unknown("silence", service)
        until_ms = int(client.eval(SILENCE_SCRIPT, 1, settings.keys.silence(service),
                                   seconds * 1000, reason[:300]))
    except Exception as exc:
        return fail("silence", f"Redis could not be asked: {redact(str(exc))[:200]}",
                    runtime=True)
    why = f": {reason[:300]}" if reason else ""
    print(f"{service} silenced until {_iso(until_ms)} ({seconds} s){why}; notifications are "
          f"held back and the alert rules quiet until then; check still says the true state")
    return 0


def _silence_entry(client: Any, keys: Keys, service: str, entry: str, *, seconds: int,
                   reason: str) -> int:
    try:
        if not _known(client, keys, service):
            return _unknown("silence", service)
        if not _entry_known(client, keys, service, entry):
            return _unknown_entry("silence", service, entry)
        until_ms = int(client.eval(ENTRY_SILENCE_SCRIPT, 1, keys.entry_silence(service),
                                   seconds * 1000, reason[:300], entry))
    except Exception as exc:
        return fail("silence", f"Redis could not be asked: {redact(str(exc))[:200]}",
                    runtime=True)
    why = f": {reason[:300]}" if reason else ""
    print(f"{service} entry {entry!r} silenced until {_iso(until_ms)} ({seconds} s){why}; its "
          "notifications are held back until then; its transitions are still recorded")
    return 0


def run_unsilence(*, service: str, redis_url: str | None, prefix: str | None,
                  entry: str | None = None) -> int:
    """End ``service``'s silence (or its beat entry ``entry``'s) now."""
    setup = _setup("unsilence", redis_url, prefix, service, entry)
    if isinstance(setup, int):
        return setup
    settings, client = setup
    if entry is not None:
        return _unsilence_entry(client, settings.keys, service, entry)
    try:
        if not _known(client, settings.keys, service):
            return _unknown("unsilence", service)
        removed = client.delete(settings.keys.silence(service))
    except Exception as exc:
        return fail("unsilence", f"Redis could not be asked: {redact(str(exc))[:200]}",
                    runtime=True)
    print(f"{service} unsilenced; a transition held back is notified at the monitor's next "
          "round" if removed else f"{service} was not silenced")
    return 0


def _unsilence_entry(client: Any, keys: Keys, service: str, entry: str) -> int:
    try:
        if not _known(client, keys, service):
            return _unknown("unsilence", service)
        if not _entry_known(client, keys, service, entry):
            return _unknown_entry("unsilence", service, entry)
        removed = client.hdel(keys.entry_silence(service), entry)
    except Exception as exc:
        return fail("unsilence", f"Redis could not be asked: {redact(str(exc))[:200]}",
                    runtime=True)
    print(f"{service} entry {entry!r} unsilenced; a transition held back is notified at the "
          "monitor's next round" if removed else f"{service} entry {entry!r} was not silenced")
    return 0


def run_forget(*, service: str, yes: bool, redis_url: str | None, prefix: str | None) -> int:
    """Delete ``service``'s keys and its index entry; a fresh service needs ``yes``."""
    setup = _setup("forget", redis_url, prefix, service)
    if isinstance(setup, int):
        return setup
    settings, client = setup
    from worker.read.reader import read_heartbeat

    keys = settings.keys
    try:
        if not _known(client, keys, service):
            return _unknown("forget", service)
        report = read_heartbeat(client, service, keys=keys)
        if report.state is State.UNREACHABLE:
            return fail("forget", report.reason, runtime=True)
        if report.state in (State.FRESH, State.LATE) and not yes:
            return fail("forget", f"{service} is still {report.state.value} (last heartbeat "
                                  f"{report.age_s or 0:.1f} s ago): its beat would bring it "
                                  "back; stop its beat and workers first, or add --yes",
                        runtime=True)
        deleted = client.delete(*keys.service_keys(service))
        client.zrem(keys.index, service)
        client.hdel(keys.summary_of(service), service)
    except Exception as exc:
        return fail("forget", f"Redis could not be asked: {redact(str(exc))[:200]}",
                    runtime=True)
    print(f"{service} forgotten: {deleted} keys deleted and removed from the fleet index")
    return 0
