"""User checks, in process: the registry and its refusals, ``HEARTBEAT_CHECKS`` loading with
its one-line errors, what each kind of return value or exception reads as (to the field),
the timeout and the hung check that is not started again, and the error's cut.

The checks' clock (``time`` of the module) is a stand-in where latencies are pinned.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from worker.core.errors import ConfigError
from worker.core.settings import CheckSpec
from worker.publish import health_checks
from worker.publish.health_checks import (
    _HUNG,
    _Running,
    check,
    cut_error,
    load_check_specs,
    register_check,
    registered_checks,
    run_checks,
    run_user_checks,
    unregister_check,
)


class _Perf:
    """Stands in for ``time`` in the module: ``perf_counter`` counts up ``step`` s a call."""

    def __init__(self, start: float = 100.0, step: float = 0.0) -> None:
        self.now = start - step
        self.step = step

    def perf_counter(self) -> float:
        self.now += self.step
        return self.now


class _Scripted:
    """Stands in for ``time`` in the module: ``perf_counter`` gives the listed values."""

    def __init__(self, values: list[float]) -> None:
        self._values = iter(values)

    def perf_counter(self) -> float:
        return next(self._values)


@pytest.fixture(autouse=True)
def _no_hung_left() -> Iterator[None]:
    """A hung run a test leaves in the module's table would be "still running" in the next."""
    before = dict(_HUNG)
    yield
    for name in [n for n in _HUNG if n not in before]:
        del _HUNG[name]


def _finished(fn: Any, timeout_s: float = 2.0) -> dict[str, Any]:
    """The result of one check run to its end, its latency 1.235 ms on the stand-in clock."""
    run = _Running(fn)
    run.thread.start()
    run.thread.join(10)
    return dict(run.result(timeout_s))


class _EqualsAll:
    """A value equal to every status (as ``mock.ANY`` is): still not a status."""

    def __eq__(self, other: object) -> bool:
        return other in ("ok", "degraded", "error")

    def __hash__(self) -> int:
        return 0


NOT_A_STATUS = "not a bool or one of ok, degraded, error"


@pytest.mark.parametrize(("value", "expected"), [
    (None, {"status": "ok"}),
    (True, {"status": "ok"}),
    (False, {"status": "error"}),
    ("ok", {"status": "ok"}),
    ("degraded", {"status": "degraded"}),
    ("error", {"status": "error"}),
    ("bad", {"status": "degraded",
             "error": f"check returned a str of 3 characters, {NOT_A_STATUS}"}),
    ("", {"status": "degraded",
          "error": f"check returned a str of 0 characters, {NOT_A_STATUS}"}),
    (1, {"status": "degraded", "error": f"check returned int, {NOT_A_STATUS}"}),
    (0, {"status": "degraded", "error": f"check returned int, {NOT_A_STATUS}"}),
    ([], {"status": "degraded", "error": f"check returned list, {NOT_A_STATUS}"}),
    (_EqualsAll(), {"status": "degraded"}),  # equal to "degraded": that is its own word
])
def test_what_a_check_returns_reads_as_a_status(
        value: Any, expected: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_checks, "time", _Scripted([8.0, 8.00123456]))
    result = _finished(lambda: value)
    assert result == {"latency_ms": 1.235, **expected}
    assert type(result["status"]) is str  # a status of the three, never the value itself


@pytest.mark.parametrize(("exc", "error"), [
    (ValueError("boom"), "ValueError: boom"),
    (SystemExit(3), "SystemExit: 3"),  # not "ok": a check that exits did not pass
    (RuntimeError("redis://u:S3cret@db:6379/0 down"), "RuntimeError: redis://u:***@db:6379/0 down"),
    (RuntimeError("x" * 1000), "RuntimeError: " + "x" * 286),
])
def test_a_check_that_raises_is_degraded_with_its_error_on_one_cut_line(
        exc: BaseException, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_checks, "time", _Scripted([8.0, 8.00123456]))

    def raises() -> None:
        raise exc

    assert _finished(raises) == {"status": "degraded", "latency_ms": 1.235, "error": error}


def test_a_check_runs_in_a_named_daemon_thread_and_times_out_as_degraded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_checks, "time", _Scripted([8.0, 8.00123456, 8.5]))
    release = threading.Event()
    run = _Running(lambda: release.wait(30))
    assert (run.thread.name, run.thread.daemon) == ("heartbeat-check", True)
    run.thread.start()
    try:
        assert run.result(0.25) == {"status": "degraded", "latency_ms": 1.235,
                                    "error": "timed out after 0.25s"}
        assert run.result(2.0)["error"] == "timed out after 2s"
    finally:
        release.set()
        run.thread.join(30)


def test_cut_error_hides_passwords_and_keeps_300_characters() -> None:
    assert cut_error("short") == "short"
    assert cut_error("e redis://:pw@h/0") == "e redis://:***@h/0"
    assert cut_error("y" * 299 + "z") == "y" * 299 + "z"
    assert cut_error("y" * 300 + "z") == "y" * 300
    assert cut_error("y" * 100_000) == "y" * 300


def test_register_check_refuses_bad_names_and_the_reserved_one() -> None:
    with pytest.raises(ConfigError) as bad:
        register_check("bad name", print)
    assert str(bad.value) == ("check name 'bad name' is invalid; accepted: 1-64 characters "
                              "of A-Z a-z 0-9 . _ -")
    with pytest.raises(ConfigError) as reserved:
        register_check("redis", print)
    assert str(reserved.value) == "check name 'redis' is reserved for the built-in store check"
    assert "bad name" not in registered_checks() and "redis" not in registered_checks()


def test_the_registry_keeps_order_replaces_by_name_and_hands_out_a_copy() -> None:
    def first() -> bool:
        return True

    def second() -> bool:
        return False

    assert check("units-a")(first) is first
    register_check("units-b", second)
    register_check("units-a", second)  # replaced, in its place
    checks = registered_checks()
    assert [n for n in checks if n.startswith("units-")] == ["units-a", "units-b"]
    assert checks["units-a"] is second and checks["units-b"] is second
    checks.clear()
    assert "units-a" in registered_checks()
    unregister_check("units-a")
    unregister_check("units-a")  # already gone: no error
    assert "units-a" not in registered_checks() and "units-b" in registered_checks()


def test_heartbeat_checks_are_imported_and_registered_under_their_names() -> None:
    load_check_specs((CheckSpec("db", "tests.plugins.sample_checks", "ping_db"),
                      CheckSpec("big", "tests.plugins.sample_checks", "raise_300_kb")))
    from tests.plugins import sample_checks

    checks = registered_checks()
    assert checks["db"] is sample_checks.ping_db and checks["big"] is sample_checks.raise_300_kb


@pytest.mark.parametrize(("spec", "message"), [
    (CheckSpec("c", "nope_mod_units", "f"),
     "HEARTBEAT_CHECKS: cannot load nope_mod_units:f (No module named 'nope_mod_units'); "
     "accepted: an importable module:function"),
    (CheckSpec("c", "tests.plugins.sample_checks", "nope"),
     "HEARTBEAT_CHECKS: cannot load tests.plugins.sample_checks:nope (module "
     "'tests.plugins.sample_checks' has no attribute 'nope'); "
     "accepted: an importable module:function"),
    (CheckSpec("c", "worker.publish.health_checks", "ERROR_CHARS"),
     "HEARTBEAT_CHECKS: worker.publish.health_checks:ERROR_CHARS is not callable"),
])
def test_an_unloadable_check_is_one_line(spec: CheckSpec, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_check_specs((spec,))
    assert str(info.value) == message
    assert info.value.__cause__ is None
    assert "c" not in registered_checks()


def test_checks_run_in_parallel_and_come_back_in_their_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_checks, "time", _Perf())
    results = run_checks({"b": lambda: True, "a": lambda: "error", "c": lambda: None}, 5.0)
    assert results == {"b": {"status": "ok", "latency_ms": 0.0},
                       "a": {"status": "error", "latency_ms": 0.0},
                       "c": {"status": "ok", "latency_ms": 0.0}}
    assert list(results) == ["b", "a", "c"]
    assert run_checks({}, 1.0) == {}


class _FakeThread:
    """A thread that is never started for real: records the timeout of each join."""

    joins: list[float]

    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True

    def join(self, timeout: float | None = None) -> None:
        self.joins.append(timeout if timeout is not None else -1.0)

    def is_alive(self) -> bool:
        return False


def test_all_checks_share_one_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started at 100 and 101, deadline 102 + 2.5 s: the first join waits what is left
    (1.5 s at 103), the second nothing (0, not -0.5, at 105)."""
    joins: list[float] = []

    class Run(_Running):
        def __init__(self, fn: Any) -> None:
            super().__init__(fn)
            self.thread = _FakeThread()  # type: ignore[assignment]
            self.thread.joins = joins  # type: ignore[attr-defined]

    monkeypatch.setattr(health_checks, "_Running", Run)
    monkeypatch.setattr(health_checks, "time", _Perf(100.0, 1.0))
    results = run_checks({"a": print, "b": print}, 2.5)
    assert joins == [1.5, 0]
    assert results == {"a": {"status": "ok", "latency_ms": 4000.0},
                       "b": {"status": "ok", "latency_ms": 5000.0}}


def test_a_check_that_overruns_is_degraded_and_not_started_again_while_it_hangs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_checks, "time", _Perf())
    release = threading.Event()
    calls: list[str] = []

    def stuck() -> None:
        calls.append("stuck")
        release.wait(30)

    def quick() -> bool:
        calls.append("quick")
        return True

    try:
        first = run_checks({"stuck": stuck, "quick": quick}, 0)
        assert first["stuck"] == {"status": "degraded", "latency_ms": 0.0,
                                  "error": "timed out after 0s"}
        hung = _HUNG["stuck"]
        assert hung.thread.is_alive() and "quick" not in _HUNG
        second = run_checks({"stuck": stuck, "quick": quick}, 0)
        assert list(second) == ["stuck", "quick"]
        assert second["stuck"] == {"status": "degraded", "latency_ms": 0.0,
                                   "error": "still running since an earlier heartbeat (hung)"}
        assert _HUNG["stuck"] is hung
    finally:
        release.set()
        _HUNG["stuck"].thread.join(30)
    assert calls.count("stuck") == 1 and calls.count("quick") == 2
    # Its thread has ended: the check is run again, and forgotten as hung.
    assert run_checks({"stuck": lambda: True}, 5.0) == {"stuck": {"status": "ok",
                                                                  "latency_ms": 0.0}}
    assert "stuck" not in _HUNG


def test_a_check_whose_thread_cannot_start_is_degraded_and_the_others_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class NoThread:
        def start(self) -> None:
            raise RuntimeError("can't start new thread " + "y" * 400)

    class Run(_Running):
        def __init__(self, fn: Any) -> None:
            super().__init__(fn)
            if fn is print:
                self.thread = NoThread()  # type: ignore[assignment]

    monkeypatch.setattr(health_checks, "_Running", Run)
    monkeypatch.setattr(health_checks, "time", _Perf())
    results = run_checks({"first": lambda: True, "nothread": print, "last": lambda: False},
                         5.0)
    assert list(results) == ["first", "nothread", "last"]
    error = "could not start: can't start new thread " + "y" * 400
    assert results == {"first": {"status": "ok", "latency_ms": 0.0},
                       "nothread": {"status": "degraded", "latency_ms": 0.0,
                                    "error": error[:300]},
                       "last": {"status": "error", "latency_ms": 0.0}}
    assert len(results["nothread"]["error"]) == 300


def test_run_user_checks_runs_every_registered_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_checks, "time", _Perf())
    before = set(registered_checks())
    register_check("units-up", lambda: True)
    register_check("units-down", lambda: False)
    results = run_user_checks(5.0)
    assert {n: r for n, r in results.items() if n not in before} == {
        "units-up": {"status": "ok", "latency_ms": 0.0},
        "units-down": {"status": "error", "latency_ms": 0.0}}
