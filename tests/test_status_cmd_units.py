"""``petsage-heartbeat status`` in process (``worker.cli.status``), on fakeredis and a fixed
Redis clock: the whole table with the monitors' record under it, the record that could not
be read, the JSON of one service and of the fleet byte for byte, a store that could not be
asked or did not answer in time (one row, ``*`` for the fleet), a refused flag, and a reader
that went away. tests/test_cli_units.py has the command's first lines; tests/test_check.py
runs it as a real process."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from tests.support.publishing import backdate, publish
from tests.support.streams import GoneReader as _GoneReader
from worker.cli import status as status_cmd
from worker.core.names import Keys
from worker.read.reader import unreachable

NOW_MS = 1_800_000_000_000
URL = "redis://status.invalid:6379/0"
KEYS = Keys()
HEADER = "SERVICE  STATE  DIAGNOSIS  AGE   SEQ  WORKER     NODES  LAG  STATUS  REASON"
FRESH_ROW = ("petsage  fresh  -          3.0s  1    test@host  -      3ms  ok      "
             "last heartbeat 3.0s ago")
NOT_MONITORED = ("uptime: unknown, no monitor has judged this service yet "
                 "(petsage-heartbeat monitor)")


class Store:
    """The fake store ``reader_client`` hands the command, each connection and close counted."""

    def __init__(self) -> None:
        self.fake = fakeredis.FakeRedis()
        self.asked: list[tuple[str, float]] = []
        self.closed = 0
        self.fake.close = self._close  # type: ignore[method-assign]

    def connect(self, url: str, timeout_s: float) -> fakeredis.FakeRedis:
        self.asked.append((url, timeout_s))
        return self.fake

    def _close(self) -> None:
        self.closed += 1


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    """A fixed Redis clock, and settings in the environment that the flags must override."""
    monkeypatch.setenv("HEARTBEAT_REDIS_URL", "redis://decoy.invalid:6379/0")
    monkeypatch.setenv("HEARTBEAT_SERVICE", "decoy")
    monkeypatch.delenv("HEARTBEAT_KEY_PREFIX", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    fake = Store()
    monkeypatch.setattr(status_cmd, "reader_client", fake.connect)
    return fake


def _status(**options: Any) -> int:
    return status_cmd.run_status(**{"redis_url": URL, "service": "petsage",
                                    "all_services": False, "prefix": None, "timeout_s": 2.0,
                                    "as_json": False, **options})


def _fresh(store: Store, service: str = "petsage", keys: Keys = KEYS) -> None:
    publish(store.fake, service, keys=keys)
    backdate(store.fake, service, 3, keys=keys)


def _monitored(store: Store) -> None:
    """A monitor's record (two days judged, fresh for the last hour) and a silence."""
    store.fake.hset(KEYS.observed("petsage"), mapping={
        "state": "fresh", "first_ms": NOW_MS - 48 * 3_600_000, "at_ms": NOW_MS - 3_600_000})
    store.fake.set(KEYS.silence("petsage"), json.dumps(
        {"until_ms": NOW_MS + 600_000, "reason": "db", "since_ms": NOW_MS}))


def test_one_service_is_its_row_and_the_monitors_record_read_with_the_flags(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """``--redis`` and ``--service`` win over the environment; one client, closed once."""
    _fresh(store)
    assert _status(timeout_s=1.5) == 0
    assert capsys.readouterr().out == f"{HEADER}\n{FRESH_ROW}\n{NOT_MONITORED}\n"
    assert store.asked == [(URL, 1.5)] and store.closed == 1
    _monitored(store)
    assert _status() == 0
    assert capsys.readouterr().out == (
        f"{HEADER}\n{FRESH_ROW}\n"
        "silenced for 10m 0s: db (notifications held back, alert rules quiet)\n"
        "uptime: 24h 100.000% (0 outages); 7d 100.000% (0 outages); 30d 100.000% (0 outages); "
        "monitored for 2d 0h of 30d\n")


def test_the_prefix_flag_wins_over_the_environment(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEARTBEAT_KEY_PREFIX", "decoy")
    _fresh(store, keys=Keys("acme"))
    _fresh(store, "billing", keys=Keys("acme"))
    backdate(store.fake, "billing", 60, keys=Keys("acme"))
    assert _status(prefix="acme") == 0
    assert capsys.readouterr().out.splitlines()[1] == FRESH_ROW
    assert _status(prefix="acme", all_services=True) == 2
    rows = capsys.readouterr().out.splitlines()
    assert [row.split()[:2] for row in rows[1:]] == [["billing", "stale"], ["petsage", "fresh"]]


def test_a_record_that_cannot_be_read_is_one_line_under_the_state(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The record is extra: its failure is said (redacted, 200 characters), the state and the
    exit code stay."""
    _fresh(store)
    asked: list[tuple[Any, ...]] = []

    def denied(*args: Any) -> Any:
        asked.append(args)
        raise RuntimeError("NOPERM redis://:s3cret@db:6379 " + "y" * 300)

    monkeypatch.setattr(status_cmd, "read_incidents", denied)
    assert _status() == 0
    why = ("NOPERM redis://:***@db:6379 " + "y" * 300)[:200]
    assert capsys.readouterr().out == (f"{HEADER}\n{FRESH_ROW}\n"
                                       f"uptime: the monitors' record could not be read: {why}\n")
    assert asked == [(store.fake, KEYS, ["petsage"])]
    assert _status(as_json=True) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert "incidents" not in row and row["state"] == "fresh"


def test_the_json_of_one_service_carries_its_record(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _fresh(store)
    _monitored(store)
    assert _status(as_json=True) == 0
    out = capsys.readouterr().out
    assert out.endswith("}]\n") and out.count("\n") == 1
    (row,) = json.loads(out)
    assert (row["service"], row["state"], row["exit_code"], row["age_s"]) == (
        "petsage", "fresh", 0, 3.0)
    incidents = row["incidents"]
    assert (incidents["monitored"], incidents["state"], incidents["first_ms"]) == (
        True, "fresh", NOW_MS - 48 * 3_600_000)
    assert incidents["silence"] == {"until_ms": NOW_MS + 600_000, "reason": "db",
                                    "remaining_s": 600.0}


def test_the_fleet_json_is_written_whole_and_in_pieces_of_1000(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``[`` then the summaries joined by ``,`` (between pieces too), then ``]`` and a newline."""
    status_cmd._write_json([])
    assert capsys.readouterr().out == "[]\n"
    one = unreachable("a", "why")
    status_cmd._write_json([one])
    first = capsys.readouterr().out
    assert first.startswith('[{"service":"a","state":"unreachable",') and first.endswith("}]\n")
    for count in (1000, 1001, 2000, 2001):
        reports = [unreachable(f"s{i}", "why") for i in range(count)]
        status_cmd._write_json(reports)
        out = capsys.readouterr().out
        assert [r["service"] for r in json.loads(out)] == [f"s{i}" for i in range(count)]
        assert out.count("},{") == count - 1 and out.endswith("}]\n")


def test_the_fleet_as_json(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(all_services=True, as_json=True) == 2
    assert capsys.readouterr().out == "[]\n"
    _fresh(store)
    assert _status(all_services=True, as_json=True) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["service"], r["state"]) for r in listed] == [("petsage", "fresh")]
    assert "incidents" not in listed[0]


def test_an_empty_fleet_says_so_and_exits_2(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(all_services=True) == 2
    assert capsys.readouterr().out == "no service has published a heartbeat under this prefix\n"


def test_a_store_that_cannot_be_asked_is_one_row_named_for_the_service_or_the_fleet(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The reason is redacted and cut at 300 characters; exit 3 (unknown)."""
    def refuse(url: str, timeout_s: float) -> Any:
        raise OSError("redis://:s3cret@db:6379 " + "x" * 400)

    monkeypatch.setattr(status_cmd, "reader_client", refuse)
    reason = ("Redis could not be asked: OSError: redis://:***@db:6379 " + "x" * 400)[:300]
    assert _status() == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:3] == ["petsage", "unreachable",
                                                       "store_unreachable"]
    assert lines[1].endswith(reason)
    assert _status(all_services=True) == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:2] == ["*", "unreachable"]
    assert lines[1].endswith(reason)
    assert _status(as_json=True) == 3
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["service"], row["reason"]) == ("petsage", reason)


def test_an_unreachable_service_reads_no_record(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Redis down: the row says so, and no record line follows."""
    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Error 111 connecting to redis://:s3cret@db:6379")

    monkeypatch.setattr(store.fake, "execute_command", down)
    monkeypatch.setattr(store.fake, "pipeline", down)
    assert _status() == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:2] == ["petsage", "unreachable"]
    assert "s3cret" not in lines[1]


def test_a_store_past_its_deadline_is_one_row_and_the_deadline_is_twice_the_timeout(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two round trips (the index, then the script), each within ``--timeout``, plus 50 ms."""
    asked: list[float] = []

    def never(deadline_s: float, work: Callable[[], Any]) -> None:
        asked.append(deadline_s)

    monkeypatch.setattr(status_cmd, "within", never)
    assert _status(timeout_s=2.5) == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:2] == ["petsage", "unreachable"]
    assert lines[1].endswith("  timed out after 2.5s")
    assert asked == [5.05]
    assert _status(all_services=True, timeout_s=0.5) == 3
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["*", "unreachable"]


def test_a_refused_timeout_is_one_unknown_line(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    for value, shown in ((0.0, "0.0"), (3600.5, "3600.5")):
        assert _status(timeout_s=value) == 3
        assert capsys.readouterr().out == (f"UNKNOWN - petsage-heartbeat: --timeout {shown} is "
                                           "out of range; accepted: seconds > 0 and <= 3600\n")
    assert store.asked == []
    assert _status(service="a b") == 3
    assert capsys.readouterr().out == ("UNKNOWN - petsage-heartbeat: --service 'a b' is "
                                       "invalid; accepted: 1-64 characters of A-Z a-z 0-9 . _ "
                                       "-\n")


def test_a_reader_that_went_away_leaves_the_exit_code_and_later_output_goes_nowhere(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fresh(store)
    backdate(store.fake, "petsage", 60)
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr("sys.stdout", _GoneReader(fd))
        assert _status() == 2
        os.write(fd, b"later")  # now /dev/null
    finally:
        os.close(fd)
    assert out.read_bytes() == b""
