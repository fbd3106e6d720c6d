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

from worker.errors import ConfigError
from worker.keys import validate_service
from worker.payload import STATUSES, CheckResult, Status
from worker.settings import CheckSpec
from worker.urls import redact

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


def run_check(fn: CheckFn, timeout_s: float) -> CheckResult:
    """Run one check in a daemon thread, bounded by ``timeout_s``; never raises."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:
            box["error"] = exc

    started = time.perf_counter()
    thread = threading.Thread(target=target, name="heartbeat-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    if thread.is_alive():
        return {"status": "degraded", "latency_ms": latency_ms,
                "error": f"timed out after {timeout_s:g}s"}
    if "error" in box:
        exc = box["error"]
        return {"status": "degraded", "latency_ms": latency_ms,
                "error": redact(f"{type(exc).__name__}: {exc}")[:300]}
    status = _outcome(box.get("value"))
    result: CheckResult = {"status": status, "latency_ms": latency_ms}
    if status == "degraded" and not isinstance(box.get("value"), str):
        result["error"] = f"check returned {type(box.get('value')).__name__}, not bool or status"
    return result


def run_user_checks(timeout_s: float) -> dict[str, CheckResult]:
    """Run every registered check, one after another, each within ``timeout_s``."""
    return {name: run_check(fn, timeout_s) for name, fn in registered_checks().items()}
