"""Pluggable health checks: the built-in store round trip, plus any the user registers.

Register a check with the decorator::

    from worker import check

    @check("database")
    def ping_db() -> bool:
        return db.execute("SELECT 1") == 1

or name it in ``HEARTBEAT_CHECKS=database=myapp.health:ping_db``. A check returns ``True``/
``None`` (ok), ``False`` (error), or one of ``"ok"``, ``"degraded"``, ``"error"``. A check
that raises or overruns its timeout makes the payload degraded; it never kills the task.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from worker.core.errors import ConfigError
from worker.core.names import validate_service
from worker.core.payload import STATUSES, CheckResult, Status
from worker.core.settings import CheckSpec
from worker.core.urls import redact

CheckFn = Callable[[], Any]
F = TypeVar("F", bound=CheckFn)

DEFAULT_CHECK_TIMEOUT_S = 2.0
"""How long one user check may run before it counts as degraded (capped at the interval)."""

_REGISTRY: dict[str, CheckFn] = {}


def register_check(name: str, fn: CheckFn) -> None:
    """Add (or replace) a named check; ``name`` follows the service-name rules."""
    validate_service(name, source="check name")
    if name == "redis":
        raise ConfigError("check name 'redis' is reserved for the built-in store check")
    _REGISTRY[name] = fn


def check(name: str) -> Callable[[F], F]:
    """Decorator form of ``register_check``."""

    def decorate(fn: F) -> F:
        register_check(name, fn)
        return fn

    return decorate


def registered_checks() -> dict[str, CheckFn]:
    """A copy of the registry, in registration order."""
    return dict(_REGISTRY)


def unregister_check(name: str) -> None:
    """Remove a check (tests and plugins that reload)."""
    _REGISTRY.pop(name, None)


def load_check_specs(specs: tuple[CheckSpec, ...]) -> None:
    """Import and register the checks named in ``HEARTBEAT_CHECKS``; one-line error if one fails."""
    for spec in specs:
        try:
            fn = getattr(importlib.import_module(spec.module), spec.attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"HEARTBEAT_CHECKS: cannot load {spec.module}:{spec.attr} ({exc}); "
                "accepted: an importable module:function"
            ) from None
        if not callable(fn):
            raise ConfigError(f"HEARTBEAT_CHECKS: {spec.module}:{spec.attr} is not callable")
        register_check(spec.name, fn)


def _outcome(value: Any) -> Status:
    if value is None or value is True:
        return "ok"
    if value is False:
        return "error"
    if isinstance(value, str) and value in STATUSES:
        return value
    return "degraded"


class _Running:
    """A check's thread and what it produced; kept while the thread runs."""

    def __init__(self, fn: CheckFn) -> None:
        self.box: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self._run, args=(fn,), name="heartbeat-check",
                                       daemon=True)

    def _run(self, fn: CheckFn) -> None:
        try:
            self.box["value"] = fn()
        except BaseException as exc:  # SystemExit or a cancellation must not read as "ok"
            self.box["error"] = exc

    def result(self, timeout_s: float) -> CheckResult:
        latency_ms = round((time.perf_counter() - self.started) * 1000, 3)
        if self.thread.is_alive():
            return {"status": "degraded", "latency_ms": latency_ms,
                    "error": f"timed out after {timeout_s:g}s"}
        if "error" in self.box:
            exc = self.box["error"]
            return {"status": "degraded", "latency_ms": latency_ms,
                    "error": cut_error(f"{type(exc).__name__}: {exc}")}
        value = self.box.get("value")
        status = _outcome(value)
        result: CheckResult = {"status": status, "latency_ms": latency_ms}
        if status == "degraded" and value != "degraded":
            what = (f"a str of {len(value)} characters" if isinstance(value, str)
                    else type(value).__name__)
            result["error"] = cut_error(f"check returned {what}, not a bool or one of "
                                        f"{', '.join(STATUSES)}")
        return result


ERROR_CHARS = 300
"""A check's error is cut to this many characters in the payload."""


def cut_error(text: str) -> str:
    """``text`` cut short, passwords hidden: a huge message costs no more than a short one.

    Cut generously before redacting (a URL cut mid-password is then past the final cut),
    redact, then cut to ``ERROR_CHARS``.
    """
    return redact(text[:16 * ERROR_CHARS])[:ERROR_CHARS]


_HUNG: dict[str, _Running] = {}
"""Checks whose thread outlived its timeout: not started again until that thread ends, so a
check stuck forever costs one thread, not one per heartbeat."""


def run_checks(checks: dict[str, CheckFn], timeout_s: float) -> dict[str, CheckResult]:
    """Run ``checks`` in parallel, all within one ``timeout_s`` deadline; never raises."""
    results: dict[str, CheckResult] = {}
    running: dict[str, _Running] = {}
    for name, fn in checks.items():
        hung = _HUNG.get(name)
        if hung is not None and hung.thread.is_alive():
            results[name] = {"status": "degraded", "latency_ms": 0.0,
                             "error": "still running since an earlier heartbeat (hung)"}
            continue
        _HUNG.pop(name, None)
        run = _Running(fn)
        try:
            run.thread.start()
        except RuntimeError as exc:  # no thread can be started: report, don't fail the task
            results[name] = {"status": "degraded", "latency_ms": 0.0,
                             "error": f"could not start: {exc}"[:300]}
            continue
        running[name] = run
    deadline = time.perf_counter() + timeout_s
    for name, run in running.items():
        run.thread.join(max(deadline - time.perf_counter(), 0))
        results[name] = run.result(timeout_s)
        if run.thread.is_alive():
            _HUNG[name] = run
    return {name: results[name] for name in checks}


def run_user_checks(timeout_s: float) -> dict[str, CheckResult]:
    """Run every registered check in parallel, all within one ``timeout_s`` deadline."""
    return run_checks(registered_checks(), timeout_s)
