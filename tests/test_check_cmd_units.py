"""``petsage-heartbeat check`` in process (``worker.cli.check``), on fakeredis and a fixed
Redis clock: each refused flag's whole line, the service's line and JSON with and without a
silence (each side of its end), an unreachable store tolerated or not, the deadline, the
component probes (``--node``, ``--beat``) with ``--liveness``, the store's ``INFO`` and the
absence clock's state file. tests/test_check.py runs the same command as a real process
against a real redis-server."""

from __future__ import annotations

import json
import tempfile
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fakeredis.commands_mixins import server_mixin

from tests.support.publishing import backdate, publish
from worker.cli import check
from worker.core.errors import ConfigError, StoreUnreachableError
from worker.core.names import Keys
from worker.read import absence
from worker.read.absence import state_path
from worker.read.liveness import StoreEvidence

NOW_MS = 1_800_000_000_000
"""The Redis clock (``TIME``) and the absence clock of every test here."""

URL = "redis://probe.invalid:6379/0"
KEYS = Keys()
BROKEN = "Error 111 connecting to redis://:s3cret@db:6379"


class Store:
    """What ``reader_client`` hands the probe: fakeredis behind the probe client's
    ``execute_many`` (error replies as values), with ``INFO`` answered from ``info`` (which
    fakeredis lacks) and every connection and close counted."""

    def __init__(self) -> None:
        self.fake = fakeredis.FakeRedis()
        self.info: str | None = None
        self.asked: list[tuple[str, float]] = []
        self.closed = 0
        self.refuse: Exception | None = None

    def connect(self, url: str, timeout_s: float) -> Store:
        self.asked.append((url, timeout_s))
        return self

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if self.refuse is not None:
            raise self.refuse
        replies: list[Any] = []
        for command in commands:
            if str(command[0]).upper() == "INFO" and self.info is not None:
                replies.append(self.info.encode())
                continue
            try:
                replies.append(self.fake.execute_command(*command))  # type: ignore[no-untyped-call]
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Store:
    """The fake store on a fixed clock; decoy settings in the environment that a flag must
    override; the absence clock's state files under ``tmp_path``."""
    monkeypatch.setenv("HEARTBEAT_REDIS_URL", "redis://decoy.invalid:6379/0")
    monkeypatch.setenv("HEARTBEAT_SERVICE", "decoy")
    monkeypatch.delenv("HEARTBEAT_KEY_PREFIX", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setattr(server_mixin, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    monkeypatch.setattr(absence, "time", types.SimpleNamespace(time=lambda: NOW_MS / 1000))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fake = Store()
    monkeypatch.setattr(check, "reader_client", fake.connect)
    return fake


def _check(**options: Any) -> int:
    return check.run_check(**{"redis_url": URL, "service": "petsage", "prefix": None,
                              "late_after_s": None, "stale_after_s": None, "timeout_s": 2.0,
                              "as_json": False, "unreachable_ok": False, **options})


def _silence(store: Store, until_ms: int, reason: str = "db migration") -> None:
    store.fake.set(KEYS.silence("petsage"), json.dumps(
        {"until_ms": until_ms, "reason": reason, "since_ms": NOW_MS - 60_000}))


def _marker(store: Store, age_s: float, *, service: str = "petsage") -> None:
    """Beat's marker: published ``age_s`` ago, every 10 s, running for the last 60 s."""
    published = NOW_MS - int(age_s * 1000)
    store.fake.set(KEYS.beat(service), json.dumps(
        {"published_at_ms": published, "next_due_ms": published + 10_000, "seq": 7,
         "interval_s": 10, "since_ms": NOW_MS - 60_000}))


# --- flags ---------------------------------------------------------------------------------

def test_positive_seconds_takes_each_side_of_its_bounds() -> None:
    """Above zero and at most the maximum (an hour unless told): the value back, or one line
    naming the flag and the bound."""
    assert check.positive_seconds("--x", None) is None
    assert check.positive_seconds("--x", 1e-9) == 1e-9
    assert check.positive_seconds("--x", 3600.0) == 3600.0
    assert check.positive_seconds("--x", 7.0, 7.0) == 7.0
    for value, maximum in ((0.0, 3600.0), (-1.0, 3600.0), (3600.001, 3600.0), (7.5, 7.0),
                           (float("nan"), 3600.0), (float("inf"), 3600.0)):
        with pytest.raises(ConfigError) as caught:
            check.positive_seconds("--x", value, maximum)
        assert str(caught.value) == (f"--x {value!r} is out of range; accepted: seconds > 0 "
                                     f"and <= {maximum:g}")
    with pytest.raises(ConfigError, match=r"^--x 3600\.5 is out of range; accepted: "
                                          r"seconds > 0 and <= 3600$"):
        check.positive_seconds("--x", 3600.5)


@pytest.mark.parametrize(("options", "line"), [
    ({"timeout_s": 0}, "--timeout 0 is out of range; accepted: seconds > 0 and <= 3600"),
    ({"timeout_s": 3600.5}, "--timeout 3600.5 is out of range; accepted: seconds > 0 and "
                            "<= 3600"),
    ({"late_after_s": -1.0}, "--late-after -1.0 is out of range; accepted: seconds > 0 and "
                             "<= 864000"),
    ({"late_after_s": 864_001.0}, "--late-after 864001.0 is out of range; accepted: seconds "
                                  "> 0 and <= 864000"),
    ({"stale_after_s": 0.0}, "--stale-after 0.0 is out of range; accepted: seconds > 0 and "
                             "<= 864000"),
    ({"stale_after_s": 864_001.0}, "--stale-after 864001.0 is out of range; accepted: "
                                   "seconds > 0 and <= 864000"),
    ({"node": "a b"}, "--node 'a b' is invalid; accepted: a Celery node name (name@host) or "
                      "its host part, 1-255 characters of A-Z a-z 0-9 . _ - @"),
    ({"liveness": True}, "--liveness needs the component it probes; accepted: --liveness "
                         "--node NODE (a worker) or --liveness --beat"),
    ({"service": "a b"}, "--service 'a b' is invalid; accepted: 1-64 characters of A-Z a-z "
                         "0-9 . _ -"),
])
def test_a_refused_flag_is_one_unknown_line_and_exit_3_before_any_read(
        store: Store, capsys: pytest.CaptureFixture[str], options: dict[str, Any],
        line: str) -> None:
    """A probe speaks Nagios even for its own usage errors, and asks nothing of Redis."""
    assert _check(**options) == 3
    captured = capsys.readouterr()
    assert captured.out == f"UNKNOWN - petsage-heartbeat: {line}\n"
    assert captured.err == "" and store.asked == []


def test_the_largest_thresholds_and_timeout_are_accepted(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """``--late-after`` and ``--stale-after`` go up to 10 days, ``--timeout`` to an hour."""
    publish(store.fake, "petsage")
    assert _check(late_after_s=864_000.0, stale_after_s=864_000.0, timeout_s=3600.0) == 0
    assert capsys.readouterr().out.startswith("OK - petsage heartbeat 0.0s old, seq 1 | "
                                              "age=0.000s;864000;864000;0 ")
    assert store.asked == [(URL, 3600.0)]


# --- the service's heartbeat -----------------------------------------------------------------

def test_a_fresh_heartbeat_is_one_ok_line_read_with_the_flags_not_the_environment(
        store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--redis``, ``--service`` and ``--prefix`` win over the environment; the client is
    made for the flag's URL with the timeout, and closed once."""
    monkeypatch.setenv("HEARTBEAT_KEY_PREFIX", "decoy")
    publish(store.fake, "billing", keys=Keys("acme"))
    backdate(store.fake, "billing", 2, keys=Keys("acme"))
    assert _check(service="billing", prefix="acme", timeout_s=1.5) == 0
    assert capsys.readouterr().out == (
        "OK - billing heartbeat 2.0s old, seq 1 | age=2.000s;15;30;0 seq=1c lag=3ms;;;0 "
        "duration=1ms;;;0\n")
    assert store.asked == [(URL, 1.5)] and store.closed == 1


def test_late_after_and_stale_after_judge_the_heartbeat(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage")
    backdate(store.fake, "petsage", 20)
    assert _check() == 1
    assert capsys.readouterr().out == (
        "WARNING - petsage heartbeat late: last heartbeat 20.0s ago, over 15s; beat_down: beat "
        "has recorded no publish, seq 1 [beat_down] | age=20.000s;15;30;0 seq=1c lag=3ms;;;0 "
        "duration=1ms;;;0\n")
    assert _check(late_after_s=5.0, stale_after_s=19.0) == 2
    assert capsys.readouterr().out == (
        "CRITICAL - petsage heartbeat stale: last heartbeat 20.0s ago, over 19s; beat_down: "
        "beat has recorded no publish, seq 1 [beat_down] | age=20.000s;5;19;0 seq=1c "
        "lag=3ms;;;0 duration=1ms;;;0\n")


def test_a_missing_heartbeat_is_critical(store: Store,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert _check() == 2
    assert capsys.readouterr().out == (
        "CRITICAL - petsage heartbeat missing: no heartbeat stored for this service; "
        "never_seen: no heartbeat and no publish by beat were ever recorded [never_seen]\n")


LATE = ("WARNING - petsage heartbeat late: last heartbeat 20.0s ago, over 15s; beat_down: beat "
        "has recorded no publish, seq 1 [beat_down]{note} | age=20.000s;15;30;0 seq=1c "
        "lag=3ms;;;0 duration=1ms;;;0\n")


def test_a_silence_is_said_beside_the_true_state_until_its_end_on_the_redis_clock(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A silence ending 1 ms from now is said; one ending now is over."""
    publish(store.fake, "petsage")
    backdate(store.fake, "petsage", 20)
    _silence(store, NOW_MS + 600_000)
    assert _check() == 1
    assert capsys.readouterr().out == LATE.format(note=" (silenced for 10m 0s: db migration)")
    _silence(store, NOW_MS + 1, reason="")
    assert _check() == 1
    assert capsys.readouterr().out == LATE.format(note=" (silenced for 0s)")
    _silence(store, NOW_MS)
    assert _check() == 1
    assert capsys.readouterr().out == LATE.format(note="")


def test_json_carries_the_exit_code_and_the_silence(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage")
    backdate(store.fake, "petsage", 20)
    _silence(store, NOW_MS + 1500)
    assert _check(as_json=True) == 1
    out = capsys.readouterr().out
    assert out.endswith("}\n") and out.count("\n") == 1
    shown = json.loads(out)
    assert list(shown)[-1] == "silence"
    assert (shown["service"], shown["state"], shown["age_s"]) == ("petsage", "late", 20.0)
    assert shown["exit_code"] == 1
    assert shown["silence"] == {"until_ms": NOW_MS + 1500, "reason": "db migration",
                                "remaining_s": 1.5}
    _silence(store, NOW_MS)
    assert _check(as_json=True) == 1
    assert json.loads(capsys.readouterr().out)["silence"] is None


def test_component_probes_never_read_the_silence(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A node's or beat's line says nothing of the service's silence, and asks Redis nothing
    about it (a silence read would be a third command there)."""
    publish(store.fake, "petsage")
    _silence(store, NOW_MS + 600_000)
    _marker(store, 1)
    calls: list[int] = []
    real = store.execute_many

    def counted(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        calls.append(len(commands))
        return real(commands)

    store.execute_many = counted  # type: ignore[method-assign]
    assert _check(beat=True) == 0
    assert capsys.readouterr().out == "OK - petsage beat fresh: last published 1.0s ago\n"
    beat_calls = list(calls)
    calls.clear()
    assert _check() == 0
    assert "(silenced for 10m 0s: db migration)" in capsys.readouterr().out
    assert len(calls) == len(beat_calls) + 1


# --- an unreachable store and the deadline ----------------------------------------------------

UNREACHABLE = ("UNKNOWN - petsage heartbeat unreachable: Redis could not be asked "
               "(ConnectionError after 0.0s): Error 111 connecting to redis://:***@db:6379 "
               "[store_unreachable]")


def test_an_unreachable_store_is_unknown_unless_tolerated(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """``--unreachable-ok`` turns only an unreachable store into OK, saying so; a stale
    heartbeat stays critical. The password never shows, and no silence is asked."""
    store.refuse = ConnectionError(BROKEN)
    assert _check() == 3
    assert capsys.readouterr().out == UNREACHABLE + "\n"
    assert _check(unreachable_ok=True) == 0
    assert capsys.readouterr().out == "OK - (unreachable tolerated) " + UNREACHABLE + "\n"
    assert _check(unreachable_ok=True, as_json=True) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["exit_code"], shown["silence"]) == ("unreachable", 0, None)
    store.refuse = None
    publish(store.fake, "petsage")
    backdate(store.fake, "petsage", 60)
    assert _check(unreachable_ok=True) == 2
    assert capsys.readouterr().out.startswith("CRITICAL - petsage heartbeat stale: ")


def test_a_client_that_cannot_be_made_is_one_redacted_line_of_at_most_300_characters(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(url: str, timeout_s: float) -> Any:
        raise OSError("redis://:s3cret@db:6379 " + "x" * 400)

    monkeypatch.setattr(check, "reader_client", refuse)
    assert _check() == 3
    reason = ("Redis could not be asked: OSError: redis://:***@db:6379 " + "x" * 400)[:300]
    assert capsys.readouterr().out == (f"UNKNOWN - petsage heartbeat unreachable: {reason} "
                                       "[store_unreachable]\n")


def test_a_probe_past_its_deadline_is_unknown_and_waits_timeout_plus_50_ms(
        store: Store, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[float] = []

    def never(deadline_s: float, work: Callable[[], Any]) -> None:
        asked.append(deadline_s)

    monkeypatch.setattr(check, "within", never)
    assert _check(timeout_s=2.5) == 3
    assert capsys.readouterr().out == ("UNKNOWN - petsage heartbeat unreachable: timed out "
                                       "after 2.5s [store_unreachable]\n")
    assert asked == [2.55]


def test_within_hands_back_the_work_s_value_or_its_error_in_one_redacted_line() -> None:
    """The work runs in a daemon thread named ``heartbeat-check``."""
    seen: list[tuple[str, bool]] = []

    def work() -> str:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon))
        return "done"

    assert check.within(5.0, work) == "done"
    assert seen == [("heartbeat-check", True)]

    def fails() -> None:
        raise ValueError("bad redis://:s3cret@db:6379")

    with pytest.raises(StoreUnreachableError) as caught:
        check.within(5.0, fails)
    assert str(caught.value) == "ValueError: bad redis://:***@db:6379"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_within_gives_up_at_its_deadline_while_the_work_goes_on() -> None:
    release = threading.Event()
    finished = threading.Event()

    def stuck() -> str:
        release.wait(10)
        finished.set()
        return "late"

    try:
        assert check.within(0.05, stuck) is None
        assert not finished.is_set()
    finally:
        release.set()
    assert finished.wait(10)


# --- component probes ------------------------------------------------------------------------

def test_a_node_is_looked_for_among_its_1000_most_recent_nodes(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage")
    store.fake.zadd(KEYS.nodes("petsage"),
                    {f"w{i}@h": NOW_MS - 5_000 + i for i in range(1001)})
    assert _check(node="w1@h") == 0
    assert capsys.readouterr().out == "OK - petsage node w1@h (w1@h) fresh: last node heartbeat " \
                                      "5.0s ago\n"
    assert _check(node="w0@h") == 2
    assert capsys.readouterr().out == ("CRITICAL - petsage node w0@h missing: no node heartbeat "
                                       "recorded for it\n")


def test_a_node_s_line_and_json_with_its_thresholds(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage")
    store.fake.zadd(KEYS.nodes("petsage"), {"w1@h": NOW_MS - 20_000})
    assert _check(node="w1@h") == 1
    assert capsys.readouterr().out == ("WARNING - petsage node w1@h (w1@h) late: last node "
                                       "heartbeat 20.0s ago, over 15s\n")
    assert _check(node="w1@h", late_after_s=5.0, stale_after_s=10.0, as_json=True) == 2
    assert json.loads(capsys.readouterr().out) == {
        "service": "petsage", "component": "node", "liveness": False, "node": "w1@h",
        "nodes": [{"node": "w1@h", "state": "stale", "age_s": 20.0}], "age_s": 20.0,
        "late_after_s": 5.0, "stale_after_s": 10.0, "state": "stale",
        "reason": "petsage node w1@h (w1@h) stale: last node heartbeat 20.0s ago, over 10s",
        "exit_code": 2}


def test_beat_s_line_and_json_with_its_thresholds(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    _marker(store, 20)
    assert _check(beat=True) == 1
    assert capsys.readouterr().out == ("WARNING - petsage beat late: last published 20.0s ago, "
                                       "over 15s\n")
    assert _check(beat=True, late_after_s=5.0, stale_after_s=10.0, as_json=True) == 2
    assert json.loads(capsys.readouterr().out) == {
        "service": "petsage", "component": "beat", "liveness": False, "age_s": 20.0,
        "late_after_s": 5.0, "stale_after_s": 10.0, "second_beat": None, "seq": 7,
        "state": "stale", "reason": "petsage beat stale: last published 20.0s ago, over 10s",
        "exit_code": 2}


def test_an_unreachable_store_fails_a_component_probe_but_not_its_liveness(
        store: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store.refuse = ConnectionError(BROKEN)
    why = ("Redis could not be asked (ConnectionError after 0.0s): Error 111 connecting to "
           "redis://:***@db:6379")
    assert _check(node="w1@h") == 3
    assert capsys.readouterr().out == f"UNKNOWN - petsage node w1@h unreachable: {why}\n"
    assert _check(beat=True, liveness=True, as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == {
        "service": "petsage", "component": "beat", "liveness": True, "state": "unreachable",
        "reason": why, "exit_code": 0}
    assert list(tmp_path.iterdir()) == []


# --- liveness: the store's evidence and the absence clock -------------------------------------

INFO = ("# Server\r\nredis_version:7.2.4\r\nrun_id:{run_id}\r\nuptime_in_seconds:{uptime}\r\n"
        "# Persistence\r\nloading:{loading}\r\n# Replication\r\nrole:master\r\n")


def _info(store: Store, *, run_id: str = "r1", uptime: int = 3600, loading: int = 0) -> None:
    store.info = INFO.format(run_id=run_id, uptime=uptime, loading=loading)


def _state_file(component: str, prefix: str = "petsage:hb") -> Path:
    return state_path(URL, prefix, "petsage", component)


def _absent_since(path: Path, seconds_ago: float, run_id: str = "r1") -> None:
    path.write_text(json.dumps({"run_id": run_id, "absent_since": NOW_MS / 1000 - seconds_ago}),
                    encoding="utf-8")


def test_beat_absent_is_tolerated_until_the_absence_clock_passes_the_threshold(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """The first probe to find beat's marker absent starts the clock (a state file of this
    store, prefix, service and component, with the store's run id); later probes fail
    once it has run longer than the threshold on the same store."""
    publish(store.fake, "petsage")
    _info(store)
    path = _state_file("beat")
    assert _check(beat=True, liveness=True) == 0
    assert capsys.readouterr().out == (
        "OK - petsage beat missing: beat has recorded no publish; cannot tell yet: absent for "
        "0.0s since this probe first found it so, within the 30s threshold: tolerated by "
        "liveness\n")
    assert json.loads(path.read_text(encoding="utf-8")) == {"run_id": "r1",
                                                            "absent_since": NOW_MS / 1000}
    _absent_since(path, 30)
    assert _check(beat=True, liveness=True) == 0
    assert "absent for 30.0s since" in capsys.readouterr().out
    _absent_since(path, 31)
    assert _check(beat=True, liveness=True) == 2
    assert capsys.readouterr().out == "CRITICAL - petsage beat missing: beat has recorded no " \
                                      "publish\n"
    _info(store, run_id="r2")  # another store (restarted): the clock starts again
    assert _check(beat=True, liveness=True) == 0
    assert "absent for 0.0s since" in capsys.readouterr().out
    assert json.loads(path.read_text(encoding="utf-8"))["run_id"] == "r2"


def test_the_absence_clock_is_per_prefix_and_component(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage", keys=Keys("acme"))
    _marker(store, 1)  # under the default prefix only
    _info(store)
    assert _check(prefix="acme", beat=True, liveness=True) == 0
    assert _state_file("beat", "acme").exists()
    assert not _state_file("beat").exists()
    assert _check(prefix="acme", node="w1@h", liveness=True) == 0
    assert _state_file("node:w1@h", "acme").exists()
    capsys.readouterr()


def test_a_node_absent_longer_than_the_threshold_while_beat_publishes_fails_liveness(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage")
    _marker(store, 1)
    _info(store)
    path = _state_file("node:w1@h")
    assert _check(node="w1@h", liveness=True) == 0
    assert capsys.readouterr().out == (
        "OK - petsage node w1@h missing: no node heartbeat recorded for it; cannot tell yet: "
        "absent for 0.0s since this probe first found it so, within the 30s threshold: "
        "tolerated by liveness\n")
    _absent_since(path, 45)
    assert _check(node="w1@h", liveness=True, as_json=True) == 2
    reason = ("petsage node w1@h missing: no node heartbeat recorded for it; beat has "
              "published for 60.0s since, over 30s: this worker is stuck, dead or not "
              "consuming queue heartbeat.petsage")
    assert json.loads(capsys.readouterr().out) == {
        "service": "petsage", "component": "node", "liveness": True, "node": "w1@h",
        "nodes": [], "age_s": None, "late_after_s": 15.0, "stale_after_s": 30.0,
        "state": "missing", "reason": reason, "exit_code": 2}
    assert path.exists()


def test_a_record_found_again_ends_the_absence(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A node or beat present removes its state file, even when it is old."""
    publish(store.fake, "petsage")
    _info(store)
    _marker(store, 45)
    path = _state_file("beat")
    _absent_since(path, 100)
    assert _check(beat=True, liveness=True) == 2
    assert capsys.readouterr().out == ("CRITICAL - petsage beat stale: last published 45.0s "
                                       "ago, over 30s\n")
    assert not path.exists()
    _marker(store, 1)
    store.fake.zadd(KEYS.nodes("petsage"), {"w1@h": NOW_MS - 45_000})
    path = _state_file("node:w1@h")
    _absent_since(path, 100)
    assert _check(node="w1@h", liveness=True) == 2
    assert capsys.readouterr().out == (
        "CRITICAL - petsage node w1@h (w1@h) stale: last node heartbeat 45.0s ago, over 30s; "
        "beat has published for 45.0s since, over 30s: this worker is stuck, dead or not "
        "consuming queue heartbeat.petsage\n")
    assert not path.exists()


def test_without_liveness_no_absence_clock_is_kept(
        store: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    publish(store.fake, "petsage")
    _info(store)
    assert _check(beat=True) == 2
    assert _check(node="w1@h") == 2
    assert list(tmp_path.iterdir()) == []
    capsys.readouterr()


def test_a_store_that_cannot_take_writes_blames_no_component_and_stops_the_clock(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    publish(store.fake, "petsage")
    _info(store, loading=1)
    path = _state_file("beat")
    _absent_since(path, 100)
    assert _check(beat=True, liveness=True) == 0
    assert capsys.readouterr().out == (
        "OK - petsage beat missing: beat has recorded no publish; cannot tell: the store is "
        "loading its data set, so no component can write its record there: tolerated by "
        "liveness\n")
    assert not path.exists()
    _marker(store, 1)
    assert _check(node="w1@h", liveness=True) == 0
    assert capsys.readouterr().out == (
        "OK - petsage node w1@h missing: no node heartbeat recorded for it; cannot tell: the "
        "store is loading its data set, so no component can write its record there: tolerated "
        "by liveness\n")
    assert not _state_file("node:w1@h").exists()


def test_a_store_restarted_within_the_threshold_says_whether_it_is_empty(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """The fleet index's size (``ZCARD``) says empty; uptime comes from ``INFO``."""
    _info(store, uptime=5)
    assert _check(beat=True, liveness=True) == 0
    assert capsys.readouterr().out == (
        "OK - petsage beat missing: beat has recorded no publish; cannot tell yet: the store "
        "(re)started 5s ago, empty, within the 30s threshold: tolerated by liveness\n")
    publish(store.fake, "petsage")
    assert _check(beat=True, liveness=True) == 0
    assert capsys.readouterr().out == (
        "OK - petsage beat missing: beat has recorded no publish; cannot tell yet: the store "
        "(re)started 5s ago, within the 30s threshold: tolerated by liveness\n")


def test_a_store_without_info_says_nothing_of_itself(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """An ``INFO`` refused (an ACL) leaves the absence clock to decide; the index read
    failing too is no error."""
    assert _check(beat=True, liveness=True) == 0
    assert "cannot tell yet: absent (the store holds no heartbeat: restarted empty?) for " \
           "0.0s since" in capsys.readouterr().out
    publish(store.fake, "petsage")
    assert _check(beat=True, liveness=True) == 0
    assert "cannot tell yet: absent for 0.0s since" in capsys.readouterr().out

    assert check._ask_store(_Refusing(), "idx") == StoreEvidence()


class _Refusing:
    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        raise ConnectionError(BROKEN)
