"""``silence``, ``unsilence`` and ``forget`` in process (``worker.cli.silence``), on fakeredis
and a fixed Redis clock: each whole line they print, the silence stored with its end and
expiry to the millisecond, an entry's silence, each refusal's whole line reported as its own
command's, and a store error cut and redacted. tests/test_cli_units.py and
tests/test_entry_incidents.py have the first cases; tests/test_monitor_e2e.py runs the
commands as real processes."""

from __future__ import annotations

import json
import types
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from tests.support.publishing import backdate, publish
from worker.cli import silence as admin
from worker.core.exits import fail
from worker.core.names import Keys
from worker.read import reader
from worker.read.reader import unreachable

NOW_MS = 1_800_000_000_000
UNTIL_90S = "2027-01-15T08:01:30+00:00"
"""``NOW_MS`` + 90 s, as the commands print it."""

URL = "redis://admin.invalid:6379/0"
ACME = Keys("acme")


class Made:
    """Every client the commands made (URL and timeout) and every failure they reported."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.clients: list[tuple[str, float]] = []
        self.failed: list[tuple[str | None, str, bool]] = []

    def make_client(self, url: str, *, timeout_s: float) -> Any:
        self.clients.append((url, timeout_s))
        return self.client

    def fail(self, command: str | None, message: str, *, runtime: bool = False) -> int:
        self.failed.append((command, message, runtime))
        return fail(command, message, runtime=runtime)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """fakeredis on a fixed Redis clock."""
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    return fakeredis.FakeRedis()


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch, fake: fakeredis.FakeRedis) -> Made:
    """The fake store behind ``make_client``; decoy settings the flags must override."""
    monkeypatch.setenv("HEARTBEAT_REDIS_URL", "redis://decoy.invalid:6379/0")
    monkeypatch.setenv("HEARTBEAT_KEY_PREFIX", "decoy")
    monkeypatch.setenv("HEARTBEAT_REDIS_TIMEOUT_S", "7.5")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    record = Made(fake)
    monkeypatch.setattr(admin, "make_client", record.make_client)
    monkeypatch.setattr(admin, "fail", record.fail)
    return record


def _silence(**options: Any) -> int:
    return admin.run_silence(**{"service": "petsage", "duration": "90s", "reason": "upgrade db",
                                "redis_url": URL, "prefix": "acme", **options})


def _unsilence(**options: Any) -> int:
    return admin.run_unsilence(**{"service": "petsage", "redis_url": URL, "prefix": "acme",
                                  **options})


def _forget(**options: Any) -> int:
    return admin.run_forget(**{"service": "petsage", "yes": False, "redis_url": URL,
                               "prefix": "acme", **options})


def _known(fake: fakeredis.FakeRedis, *entries: str) -> None:
    publish(fake, "petsage", keys=ACME)
    for entry in entries:
        fake.hset(ACME.entries("petsage"), entry, "{}")


def test_silence_stores_its_end_on_the_redis_clock_under_the_flags_prefix(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    """The client is made for ``--redis`` with the store timeout setting."""
    _known(fake)
    assert _silence() == 0
    assert capsys.readouterr().out == (
        f"petsage silenced until {UNTIL_90S} (90 s): upgrade db; notifications are held back "
        "and the alert rules quiet until then; check still says the true state\n")
    assert json.loads(fake.get(ACME.silence("petsage")) or b"{}") == {
        "until_ms": NOW_MS + 90_000, "since_ms": NOW_MS, "reason": "upgrade db"}
    assert 89_000 < fake.pttl(ACME.silence("petsage")) <= 90_000
    assert made.clients == [(URL, 7.5)] and made.failed == []


def test_silence_keeps_300_characters_of_its_reason(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake)
    reason = "".join(chr(ord("a") + i % 26) for i in range(400))
    assert _silence(reason=reason, duration="2m") == 0
    assert capsys.readouterr().out == (
        f"petsage silenced until 2027-01-15T08:02:00+00:00 (120 s): {reason[:300]}; "
        "notifications are held back and the alert rules quiet until then; check still says "
        "the true state\n")
    assert json.loads(fake.get(ACME.silence("petsage")) or b"{}")["reason"] == reason[:300]


def test_an_entry_s_silence_is_a_field_of_the_service_s_entry_silences(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake, "nightly")
    reason = "".join(chr(ord("a") + i % 26) for i in range(400))
    assert _silence(entry="nightly", reason=reason) == 0
    assert capsys.readouterr().out == (
        f"petsage entry 'nightly' silenced until {UNTIL_90S} (90 s): {reason[:300]}; its "
        "notifications are held back until then; its transitions are still recorded\n")
    assert json.loads(fake.hget(ACME.entry_silence("petsage"), "nightly") or b"{}") == {
        "until_ms": NOW_MS + 90_000, "since_ms": NOW_MS, "reason": reason[:300]}
    assert 89_000 < fake.pttl(ACME.entry_silence("petsage")) <= 90_000
    assert not fake.exists(ACME.silence("petsage"))
    assert _silence(entry="nightly", reason="") == 0
    assert capsys.readouterr().out == (
        f"petsage entry 'nightly' silenced until {UNTIL_90S} (90 s); its notifications are "
        "held back until then; its transitions are still recorded\n")
    assert made.failed == []


def test_an_entry_silenced_but_no_longer_watched_can_still_be_unsilenced(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake, "nightly")
    assert _silence(entry="nightly") == 0
    fake.delete(ACME.entries("petsage"))
    assert _silence(entry="nightly", duration="1m") == 0
    capsys.readouterr()
    assert _unsilence(entry="nightly") == 0
    assert capsys.readouterr().out == ("petsage entry 'nightly' unsilenced; a transition held "
                                       "back is notified at the monitor's next round\n")
    assert not fake.exists(ACME.entry_silence("petsage"))


def test_unsilence_says_whether_there_was_a_silence(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake, "nightly")
    assert _unsilence() == 0
    assert _unsilence(entry="nightly") == 0
    assert capsys.readouterr().out == ("petsage was not silenced\n"
                                       "petsage entry 'nightly' was not silenced\n")
    assert _silence() == 0
    capsys.readouterr()
    assert _unsilence() == 0
    assert capsys.readouterr().out == ("petsage unsilenced; a transition held back is notified "
                                       "at the monitor's next round\n")
    assert not fake.exists(ACME.silence("petsage")) and made.failed == []


UNKNOWN = ("service 'petsage' is not known to the store (not in the fleet index, no keys); "
           "accepted: a service 'petsage-heartbeat status --all' lists")
UNWATCHED = ("entry 'nightly' of 'petsage' is not watched (not in its beat entries); accepted: "
             "an entry 'petsage-heartbeat status --entries' lists")


def test_each_command_refuses_a_service_or_entry_the_store_does_not_know_as_its_own(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 with one whole line on standard error; nothing is written."""
    for run in (_silence, _unsilence, _forget):
        assert run() == 2
    assert _silence(entry="nightly") == 2
    assert _unsilence(entry="nightly") == 2
    publish(fake, "other", keys=ACME)
    publish(fake, "petsage")  # under another prefix: not this store's service
    assert _silence() == 2
    _known(fake)
    assert _silence(entry="nightly") == 2
    assert _unsilence(entry="nightly") == 2
    assert made.failed == [
        ("silence", UNKNOWN, False), ("unsilence", UNKNOWN, False), ("forget", UNKNOWN, False),
        ("silence", UNKNOWN, False), ("unsilence", UNKNOWN, False), ("silence", UNKNOWN, False),
        ("silence", UNWATCHED, False), ("unsilence", UNWATCHED, False)]
    assert capsys.readouterr().err == "".join(
        f"petsage-heartbeat: {message}\n" for _, message, _ in made.failed)
    assert not fake.exists(ACME.silence("petsage"), ACME.entry_silence("petsage"))


def test_bad_arguments_are_refused_before_any_client_is_made(
        made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    assert _silence(duration="soon") == 2
    assert _silence(service="a b") == 2
    assert _unsilence(service="a b") == 2
    assert _forget(service="a b") == 2
    assert _silence(entry="") == 2
    assert _unsilence(entry="a\nb") == 2
    assert _silence(prefix="a b") == 2
    service = "service 'a b' is invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ -"
    assert [(command, runtime) for command, _, runtime in made.failed] == [
        ("silence", False), ("silence", False), ("unsilence", False), ("forget", False),
        ("silence", False), ("unsilence", False), ("silence", False)]
    messages = [message for _, message, _ in made.failed]
    assert messages[:4] == [
        "--for 'soon' is invalid; accepted: a duration such as 90s, 15m, 2h, 1d or 1h30m "
        "(seconds if no unit), from 1 s to 365 d", service, service, service]
    assert messages[4].startswith("--entry '' refused: ")
    assert messages[5].startswith("--entry 'a\\nb' refused: ")
    assert messages[6].startswith("--prefix 'a b' is invalid; ")
    assert made.clients == []
    capsys.readouterr()


class _Broken:
    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ConnectionError("Error 111 connecting to redis://:s3cret@db:6379 " + "z" * 300)
        return refuse


def test_a_store_error_is_one_redacted_line_of_200_characters_and_exit_1(
        made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    made.client = _Broken()
    why = ("Redis could not be asked: "
           + ("Error 111 connecting to redis://:***@db:6379 " + "z" * 300)[:200])
    for run, options in ((_silence, {}), (_silence, {"entry": "nightly"}), (_unsilence, {}),
                         (_unsilence, {"entry": "nightly"}), (_forget, {"yes": True})):
        assert run(**options) == 1
    assert made.failed == [("silence", why, True), ("silence", why, True),
                           ("unsilence", why, True), ("unsilence", why, True),
                           ("forget", why, True)]
    assert capsys.readouterr().err == f"petsage-heartbeat: {why}\n" * 5


def test_forget_refuses_a_live_service_without_yes_saying_its_age(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake)
    backdate(fake, "petsage", 3, keys=ACME)
    assert _forget() == 1
    backdate(fake, "petsage", 20, keys=ACME)
    assert _forget() == 1
    assert [message for _, message, _ in made.failed] == [
        f"petsage is still {state} (last heartbeat {age} s ago): its beat would bring it back; "
        "stop its beat and workers first, or add --yes"
        for state, age in (("fresh", "3.0"), ("late", "20.0"))]
    assert [(command, runtime) for command, _, runtime in made.failed] == [("forget", True)] * 2
    capsys.readouterr()
    keys = [k for k in fake.scan_iter("*") if b"{petsage}" in k]
    assert _forget(yes=True) == 0
    assert capsys.readouterr().out == (f"petsage forgotten: {len(keys)} keys deleted and "
                                       "removed from the fleet index\n")
    assert fake.zscore(ACME.index, "petsage") is None
    assert [k for k in fake.scan_iter("*") if b"{petsage}" in k] == []


def test_forget_needs_no_yes_for_a_stale_or_missing_service(
        made: Made, fake: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake)
    backdate(fake, "petsage", 60, keys=ACME)
    assert _forget() == 0
    fake.zadd(ACME.index, {"petsage": 1})  # indexed, no heartbeat: missing
    assert _forget() == 0
    assert capsys.readouterr().out == (
        "petsage forgotten: 2 keys deleted and removed from the fleet index\n"
        "petsage forgotten: 0 keys deleted and removed from the fleet index\n")
    assert not fake.exists(ACME.index)


def test_forget_refuses_when_the_heartbeat_cannot_be_read(
        made: Made, fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _known(fake)
    asked: list[tuple[Any, ...]] = []

    def down(client: Any, service: str, **options: Any) -> Any:
        asked.append((client, service, options))
        return unreachable(service, "Redis could not be asked (timeout after 2.0s)")

    monkeypatch.setattr(reader, "read_heartbeat", down)
    assert _forget(yes=True) == 1
    assert made.failed == [("forget", "Redis could not be asked (timeout after 2.0s)", True)]
    assert asked == [(fake, "petsage", {"keys": ACME})]
    assert fake.exists(ACME.latest("petsage"))
    capsys.readouterr()


def test_durations_of_each_unit_sum_exactly() -> None:
    assert [admin.parse_duration(text) for text in ("1d", "1h", "1m", "1s", "1", "1d1h1m1s")] == [
        86_400, 3600, 60, 1, 1, 90_061]
    assert admin.parse_duration("365d") == 31_536_000


@pytest.mark.parametrize(("text", "why"), [
    ("x" * 30, "invalid"), ("999999d9999999h999999999m", "out of range")])
def test_a_long_duration_is_shown_cut_at_20_characters(text: str, why: str) -> None:
    with pytest.raises(admin.ConfigError) as caught:
        admin.parse_duration(text)
    assert str(caught.value) == (
        f"--for {text[:20]!r} is {why}; accepted: a duration such as 90s, 15m, 2h, 1d or 1h30m "
        "(seconds if no unit), from 1 s to 365 d")
