"""An entry's silence as readers see it (``worker.read.entry_silence``), in process on
fakeredis and a fixed Redis clock: the bounded read's exact command, one entry's silence
and every entry's, a silence that ended on the Redis clock to the millisecond, the names
and values the bounded read leaves unread, and a store error raised.
tests/test_silence_cmd_units.py writes the silences through ``silence --entry``;
tests/test_entries_read_units.py reads them beside the entries."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from worker.core.names import Keys
from worker.core.redis_io import execute_many
from worker.read.entry_silence import (
    ENTRY_SILENCES_SCRIPT,
    entry_silences_command,
    read_entry_silence,
    read_entry_silences,
    silences_from_reply,
)
from worker.read.incidents import Silence

NOW_MS = 1_800_000_000_000
ACME = Keys("acme")
DEFAULT = Keys()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """fakeredis on a fixed Redis clock."""
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    return fakeredis.FakeRedis()


def _stored(until_ms: int, reason: str = "deploy", since_ms: int = NOW_MS - 1000) -> str:
    return json.dumps({"until_ms": until_ms, "reason": reason, "since_ms": since_ms})


class Counting:
    """A client that counts its round trips and what it sent, answered by fakeredis."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent: list[list[tuple[Any, ...]]] = []

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.sent.append(list(commands))
        return execute_many(self.client, commands)


def test_the_bounded_read_s_command() -> None:
    """The hash, at most 2,000 fields, names of at most 4 x 200 bytes (an entry name's 200
    characters in UTF-8), values of at most 4,096 bytes; and the one entry when asked."""
    assert entry_silences_command(ACME, "billing") == (
        "EVAL", ENTRY_SILENCES_SCRIPT, 1, "acme:{billing}:entry_silence", 2000, 800, 4096)
    assert entry_silences_command(ACME, "billing", "nightly export") == (
        "EVAL", ENTRY_SILENCES_SCRIPT, 1, "acme:{billing}:entry_silence", 2000, 800, 4096,
        "nightly export")
    assert entry_silences_command(ACME, "billing", "")[-1] == ""  # a name, though empty


def test_one_entry_s_silence_while_it_lasts_on_the_redis_clock(
        fake: fakeredis.FakeRedis) -> None:
    key = ACME.entry_silence("billing")
    fake.hset(key, mapping={"nightly": _stored(NOW_MS + 1, "migration"),
                            "ended": _stored(NOW_MS), "other": _stored(NOW_MS + 60_000)})
    counting = Counting(fake)
    assert read_entry_silence(counting, "billing", "nightly", keys=ACME) == Silence(
        NOW_MS + 1, "migration", NOW_MS - 1000)
    assert counting.sent == [[("TIME",), entry_silences_command(ACME, "billing", "nightly")]]
    assert read_entry_silence(fake, "billing", "ended", keys=ACME) is None  # ended now
    assert read_entry_silence(fake, "billing", "absent", keys=ACME) is None
    assert read_entry_silence(fake, "billing", "nightly") is None  # another prefix


def test_every_entry_silenced_now(fake: fakeredis.FakeRedis) -> None:
    fake.hset(DEFAULT.entry_silence("petsage"), mapping={
        "a": _stored(NOW_MS + 5000, "deploy"), "b\nc": _stored(NOW_MS + 1, ""),
        "ended": _stored(NOW_MS - 1), "junk": "not json", "empty": ""})
    counting = Counting(fake)
    assert read_entry_silences(counting, "petsage") == {
        "a": Silence(NOW_MS + 5000, "deploy", NOW_MS - 1000),
        "b\nc": Silence(NOW_MS + 1, "", NOW_MS - 1000)}
    assert counting.sent == [[("TIME",), entry_silences_command(DEFAULT, "petsage")]]
    assert read_entry_silences(fake, "petsage", keys=ACME) == {}
    assert read_entry_silences(fake, "nobody") == {}


def test_names_and_values_past_the_bounds_are_never_read(fake: fakeredis.FakeRedis) -> None:
    """A name over 800 bytes or a value over 4,096 bytes is left unread: no silence."""
    key = DEFAULT.entry_silence("petsage")
    until = NOW_MS + 60_000
    longest = _stored(until, "")
    longest = longest.replace('"reason": ""', '"reason": "' + "r" * 10 + '"' + " " * (
        4096 - len(longest) - 10))
    assert len(longest) == 4096
    fake.hset(key, mapping={"n" * 800: _stored(until), "n" * 801: _stored(until),
                            "v": longest, "w": longest + " "})
    assert set(read_entry_silences(fake, "petsage")) == {"n" * 800, "v"}
    assert read_entry_silence(fake, "petsage", "n" * 801) is None
    assert read_entry_silence(fake, "petsage", "w") is None
    assert read_entry_silence(fake, "petsage", "v") == Silence(until, "r" * 10, NOW_MS - 1000)


def test_a_hash_of_more_fields_than_any_app_has_entries_is_no_silence(
        fake: fakeredis.FakeRedis) -> None:
    key = DEFAULT.entry_silence("petsage")
    fake.hset(key, mapping={f"e{i}": _stored(NOW_MS + 60_000) for i in range(2000)})
    assert len(read_entry_silences(fake, "petsage")) == 2000
    fake.hset(key, "one more", _stored(NOW_MS + 60_000))
    assert read_entry_silences(fake, "petsage") == {}
    # The one entry asked for is read whatever the hash holds.
    assert read_entry_silence(fake, "petsage", "e7") is not None


def test_a_store_error_is_raised(fake: fakeredis.FakeRedis) -> None:
    fake.set(DEFAULT.entry_silence("petsage"), "not a hash")
    with pytest.raises(Exception, match="WRONGTYPE"):
        read_entry_silences(fake, "petsage")
    with pytest.raises(Exception, match="WRONGTYPE"):
        read_entry_silence(fake, "petsage", "e")

    class TimeRefused:
        def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
            return [PermissionError("NOPERM time"), [b"e", _stored(NOW_MS + 1).encode()]]

    with pytest.raises(PermissionError, match=r"^NOPERM time$"):
        read_entry_silences(TimeRefused(), "petsage")
    with pytest.raises(PermissionError, match=r"^NOPERM time$"):
        read_entry_silence(TimeRefused(), "petsage", "e")


def test_silences_from_a_flat_list_a_dict_or_anything_else() -> None:
    lasting, ended = _stored(NOW_MS + 1).encode(), _stored(NOW_MS).encode()
    silence = Silence(NOW_MS + 1, "deploy", NOW_MS - 1000)
    assert silences_from_reply([b"a", lasting, b"b", ended, b"odd"], NOW_MS) == {"a": silence}
    assert silences_from_reply({b"a": lasting, "b": ended, b"c": None}, NOW_MS) == {
        "a": silence}
    assert silences_from_reply({"\xe9t\xe9".encode("latin-1"): lasting}, NOW_MS) == {
        "\ufffdt\ufffd": silence}
    assert silences_from_reply(b"a", NOW_MS) == {}
    assert silences_from_reply(None, NOW_MS) == {}
    assert silences_from_reply((b"a", lasting), NOW_MS) == {}


def test_a_reply_is_read_at_most_4000_names_deep() -> None:
    """Whatever a caller hands in, the work stays bounded: twice the fields a hash may hold."""
    lasting = _stored(NOW_MS + 1)
    pairs = {f"e{i:04d}": lasting for i in range(4001)}
    read = silences_from_reply(pairs, NOW_MS)
    assert len(read) == 4000 and "e4000" not in read and "e0000" in read
