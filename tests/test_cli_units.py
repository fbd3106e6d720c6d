"""The operator commands in-process (``silence``, ``unsilence``, ``forget``, ``status``, the
dispatch of ``main``) on fakeredis: what they print, their exit codes, and what they write
(the silence's end on the Redis clock and its expiry). The same commands as real processes
against a real redis-server are in tests/test_monitor_e2e.py and tests/test_check.py."""

from __future__ import annotations

import gc
import json
from typing import Any

import fakeredis
import pytest

from tests.support.publishing import backdate, publish
from worker.cli import silence as admin
from worker.cli import status as status_cmd
from worker.cli.main import main as cli_main
from worker.core.errors import ConfigError
from worker.core.names import Keys
from worker.core.redis_io import redis_time_ms

KEYS = Keys()
URL = "redis://fake.invalid:6379/0"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """The fake store every command here is given, whatever URL it was told."""
    for name in ("HEARTBEAT_REDIS_URL", "HEARTBEAT_KEY_PREFIX", "HEARTBEAT_SERVICE",
                 "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    fake = fakeredis.FakeRedis()
    monkeypatch.setattr(admin, "make_client", lambda url, **_: fake)
    monkeypatch.setattr(status_cmd, "reader_client", lambda url, timeout_s: fake)
    return fake


class _Broken:
    def __getattr__(self, name: str) -> Any:
        def refuse(*_: Any, **__: Any) -> Any:
            raise ConnectionError("Error 111 connecting to redis://:s3cret@db:6379")
        return refuse


def _silence(**options: Any) -> int:
    return admin.run_silence(**{"service": "petsage", "duration": "90s", "reason": "upgrade db",
                                "redis_url": URL, "prefix": None, **options})


def test_silence_ends_on_the_redis_clock_and_expires_then(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage")
    before = redis_time_ms(client.time())
    assert _silence() == 0
    after = redis_time_ms(client.time())
    stored = json.loads(client.get(KEYS.silence("petsage")) or b"{}")
    assert before <= stored["since_ms"] <= after
    assert stored["until_ms"] == stored["since_ms"] + 90_000
    assert stored["reason"] == "upgrade db"
    assert 88_000 < client.pttl(KEYS.silence("petsage")) <= 90_000
    out = capsys.readouterr().out
    assert out == (f"petsage silenced until {admin._iso(stored['until_ms'])} (90 s): upgrade db;"
                   " notifications are held back and the alert rules quiet until then; check "
                   "still says the true state\n")


def test_silence_keeps_300_characters_of_reason_and_says_none_when_none(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage")
    assert _silence(reason="r" * 400, duration="1h30m") == 0
    stored = json.loads(client.get(KEYS.silence("petsage")) or b"{}")
    assert stored["reason"] == "r" * 300 and stored["until_ms"] - stored["since_ms"] == 5_400_000
    assert "(5400 s): " + "r" * 300 + ";" in capsys.readouterr().out
    assert _silence(reason="") == 0
    assert "(90 s); notifications" in capsys.readouterr().out


def test_silence_refuses_an_unknown_service_a_bad_duration_or_name_in_one_line(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    assert _silence() == 2
    err = capsys.readouterr().err
    assert err.startswith("petsage-heartbeat: service 'petsage' is not known to the store")
    assert err.count("\n") == 1 and client.get(KEYS.silence("petsage")) is None
    client.zadd(KEYS.index, {"petsage": 1})  # known by the index alone
    assert _silence() == 0
    client.delete(KEYS.index)
    client.xadd(KEYS.incidents("petsage"), {"from": "fresh", "to": "stale"})  # or one key
    assert _silence() == 0
    capsys.readouterr()
    assert _silence(duration="0") == 2
    assert "--for '0' is out of range" in capsys.readouterr().err
    assert _silence(service="a b") == 2
    assert "accepted: 1-64 characters" in capsys.readouterr().err


def test_a_store_error_is_one_redacted_line_and_exit_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(admin, "make_client", lambda url, **_: _Broken())
    for code in (_silence(), admin.run_unsilence(service="petsage", redis_url=URL, prefix=None),
                 admin.run_forget(service="petsage", yes=True, redis_url=URL, prefix=None)):
        assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all("Redis could not be asked: Error 111" in x for x in lines)
    assert all("s3cret" not in x for x in lines)


def test_unsilence_says_what_it_did(client: fakeredis.FakeRedis,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage")
    assert admin.run_unsilence(service="petsage", redis_url=URL, prefix=None) == 0
    assert capsys.readouterr().out == "petsage was not silenced\n"
    _silence()
    capsys.readouterr()
    assert admin.run_unsilence(service="petsage", redis_url=URL, prefix=None) == 0
    assert capsys.readouterr().out == ("petsage unsilenced; a transition held back is notified "
                                       "at the monitor's next round\n")
    assert client.get(KEYS.silence("petsage")) is None
    assert admin.run_unsilence(service="nobody", redis_url=URL, prefix=None) == 2


def test_forget_asks_for_yes_while_fresh_or_late_and_deletes_every_key(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage", interval_s=10)
    publish(client, "billing", interval_s=10)
    _silence()
    capsys.readouterr()
    assert admin.run_forget(service="petsage", yes=False, redis_url=URL, prefix=None) == 1
    err = capsys.readouterr().err
    assert "petsage is still fresh (last heartbeat 0." in err and "add --yes" in err
    backdate(client, "petsage", 20)  # late (after 15 s): still refused
    assert admin.run_forget(service="petsage", yes=False, redis_url=URL, prefix=None) == 1
    assert "petsage is still late (last heartbeat 20." in capsys.readouterr().err
    backdate(client, "petsage", 60)  # stale: no --yes needed
    keys_before = sum(1 for k in client.scan_iter("*") if b"{petsage}" in k)
    assert admin.run_forget(service="petsage", yes=False, redis_url=URL, prefix=None) == 0
    assert capsys.readouterr().out == (f"petsage forgotten: {keys_before} keys deleted and "
                                       "removed from the fleet index\n")
    assert [k for k in client.scan_iter("*") if b"{petsage}" in k] == []
    assert client.zscore(KEYS.index, "petsage") is None
    assert client.zscore(KEYS.index, "billing") is not None
    assert admin.run_forget(service="billing", yes=True, redis_url=URL, prefix=None) == 0
    assert not client.exists(KEYS.latest("billing"))


@pytest.mark.parametrize(("text", "seconds"), [
    ("1", 1), ("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86_400),
    ("1h30m", 5400), ("1d2h3m4s", 93_784), (" 2H ", 7200), ("365d", 365 * 86_400),
    ("31536000", 31_536_000)])
def test_durations(text: str, seconds: int) -> None:
    assert admin.parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "why"), [
    ("", "invalid"), ("  ", "invalid"), ("0", "out of range"), ("0s", "out of range"),
    ("365d1s", "out of range"), ("31536001", "out of range"), ("1x", "invalid"),
    ("m", "invalid"), ("1m1h", "invalid"), ("-1", "invalid")])
def test_bad_durations(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        admin.parse_duration(text, source="HEARTBEAT_X")
    assert str(caught.value) == (
        f"HEARTBEAT_X {text[:20]!r} is {why}; accepted: a duration such as 90s, 15m, 2h, 1d "
        "or 1h30m (seconds if no unit), from 1 s to 365 d")


def test_iso_times_are_utc_to_the_second() -> None:
    assert admin._iso(1_700_000_000_999) == "2023-11-14T22:13:20+00:00"


def _status(**options: Any) -> int:
    return status_cmd.run_status(**{"redis_url": URL, "service": "petsage",
                                    "all_services": False, "prefix": None, "timeout_s": 2.0,
                                    "as_json": False, **options})


def test_status_prints_the_table_and_the_record_and_exits_with_the_state(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage", interval_s=10)
    assert _status() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["SERVICE", "STATE"] and lines[1].split()[:2] == [
        "petsage", "fresh"]
    backdate(client, "petsage", 60)
    assert _status() == 2
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["petsage", "stale"]
    assert _status(service="nobody") == 2
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["nobody", "missing"]


def test_status_json_of_one_service_carries_its_incidents(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage", interval_s=10)
    client.hset(KEYS.observed("petsage"), mapping={"state": "fresh", "first_ms": 1,
                                                   "at_ms": 1})
    assert _status(as_json=True) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["service"] == "petsage" and row["state"] == "fresh"
    assert row["incidents"]["monitored"] is True and row["incidents"]["state"] == "fresh"


def test_status_of_the_fleet_is_worst_first_and_json_lists_them_all(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(all_services=True) == 2
    assert capsys.readouterr().out == "no service has published a heartbeat under this prefix\n"
    for name in ("a", "b", "c"):
        publish(client, name, interval_s=10)
    backdate(client, "b", 60)
    assert _status(all_services=True) == 2
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["b", "stale"], ["a", "fresh"], ["c", "fresh"]]
    assert _status(all_services=True, as_json=True) == 2
    listed = json.loads(capsys.readouterr().out)
    assert [(r["service"], r["state"]) for r in listed] == [
        ("b", "stale"), ("a", "fresh"), ("c", "fresh")]


def test_status_json_streams_a_long_fleet_in_pieces(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.read.reader import unreachable

    reports = [unreachable(f"s{i}", "why") for i in range(2001)]
    status_cmd._write_json(reports)
    listed = json.loads(capsys.readouterr().out)
    assert [r["service"] for r in listed] == [f"s{i}" for i in range(2001)]


def test_status_of_a_store_that_cannot_be_asked_is_one_unknown_row(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(status_cmd, "reader_client", lambda url, timeout_s: _Broken())
    assert _status(all_services=True) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:2] == ["*", "unreachable"] and "s3cret" not in "".join(out)
    assert _status(timeout_s=0) == 3
    assert "--timeout" in capsys.readouterr().out


def test_main_dispatches_the_admin_commands_and_refuses_unknown_ones(
        client: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    publish(client, "petsage")
    assert cli_main(["silence", "petsage", "--for", "2m", "--reason", "x",
                          "--redis", URL]) == 0
    assert "petsage silenced until" in capsys.readouterr().out
    assert json.loads(client.get(KEYS.silence("petsage")) or b"{}")["reason"] == "x"
    assert cli_main(["unsilence", "petsage", "--redis", URL]) == 0
    assert "petsage unsilenced" in capsys.readouterr().out
    assert cli_main(["forget", "petsage", "--yes", "--redis", URL]) == 0
    assert "petsage forgotten" in capsys.readouterr().out
    publish(client, "petsage")
    try:
        assert cli_main(["status", "--service", "petsage", "--redis", URL]) == 0
    finally:
        gc.enable()  # status turns the cyclic GC off for its short-lived process
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["petsage", "fresh"]
    assert cli_main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "see 'petsage-heartbeat --help'" in err
    assert cli_main(["silence", "petsage", "--for", "1m", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
