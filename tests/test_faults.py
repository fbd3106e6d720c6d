"""Faults the heartbeat must survive and name: checks, secrets, refused publishes, bounds."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from worker.core.errors import ConfigError
from worker.core.names import HEALTH_TASK, NODE_TASK
from worker.core.settings import Settings
from worker.core.urls import validate_url
from worker.publish.beat_guard import PublishGuard, publish_error
from worker.publish.health_checks import ERROR_CHARS, run_checks


class RefusedError(Exception):
    pass


def _apply(fail: list[bool]) -> Any:
    def apply_async(entry: Any, producer: Any = None, advance: bool = True) -> Any:
        if fail[0]:
            try:
                raise ConnectionRefusedError("Error 111 connecting to redis://:pw@broker:6379")
            except ConnectionRefusedError as exc:
                raise RefusedError(f"Couldn't apply scheduled task {entry.name}: {exc}") from exc
        return SimpleNamespace(id="task-id")

    return apply_async


def test_a_refused_heartbeat_publish_is_one_line_and_a_marker_note(
        caplog: pytest.LogCaptureFixture) -> None:
    noted: list[str] = []
    fail = [True]
    guarded = PublishGuard(noted.append).wrap(_apply(fail))
    health = SimpleNamespace(task=HEALTH_TASK, name="petsage-heartbeat")
    node = SimpleNamespace(task=NODE_TASK, name="petsage-heartbeat-nodes")
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert guarded(health, producer=None, advance=False) is None
            assert guarded(node, producer=None, advance=False) is None
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2 and all(r.exc_info is None for r in errors)  # one per task
        assert len(noted) == 5 and noted[0].startswith("ConnectionRefusedError: Error 111")
        assert "pw" not in noted[0] and ":***@broker" in noted[0]
        fail[0] = False
        assert guarded(health).id == "task-id"
        assert guarded(health).id == "task-id"
    assert sum("publishes" in r.message and "again" in r.message
               for r in caplog.records) == 1


def test_the_users_own_entries_fail_as_celery_makes_them() -> None:
    guarded = PublishGuard(lambda _: None).wrap(_apply([True]))
    with pytest.raises(RefusedError):
        guarded(SimpleNamespace(task="myapp.tasks.report", name="report"))


def test_a_publish_error_is_short_and_on_one_line() -> None:
    exc = RuntimeError("line one\n" + "x" * 10_000)
    assert publish_error(exc) == ("RuntimeError: line one " + "x" * 200)[:200]


def test_a_check_returning_a_huge_string_says_why_it_is_degraded() -> None:
    results = run_checks({"big": lambda: "y" * 10_000_000, "odd": lambda: 42,
                          "fine": lambda: "degraded"}, timeout_s=5)
    big = results["big"]
    assert big["status"] == "degraded" and len(big.get("error", "")) <= ERROR_CHARS
    assert "a str of 10000000 characters" in big.get("error", "")
    assert "int" in results["odd"].get("error", "")
    assert "error" not in results["fine"]  # the check said degraded itself


def test_a_check_raising_a_huge_message_is_cut_short() -> None:
    def boom() -> None:
        raise RuntimeError("x" * 300_000)

    result = run_checks({"boom": boom}, timeout_s=5)["boom"]
    assert result["status"] == "degraded"
    assert result.get("error", "").startswith("RuntimeError: xxx")
    assert len(result.get("error", "")) == ERROR_CHARS


@pytest.mark.parametrize("url", [
    "redis://:Secr3t?x@127.0.0.1:6390/0",
    "redis://user:Secr3t/x@127.0.0.1:6390/0",
    "redis://:Secr3t#x@127.0.0.1:6390/0",
])
def test_no_piece_of_a_password_in_a_bad_url_message(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_url(url, source="--redis")
    message = str(caught.value)
    assert "Secr3t" not in message and "\n" not in message
    assert "percent-encoded" in message


@pytest.mark.parametrize(("env", "needle"), [
    ({"HEARTBEAT_INTERVAL_S": "1e300"}, "HEARTBEAT_INTERVAL_S"),
    ({"HEARTBEAT_STALE_AFTER_S": "1e12"}, "HEARTBEAT_STALE_AFTER_S"),
    ({"HEARTBEAT_RETENTION_S": "9" * 400}, "HEARTBEAT_RETENTION_S"),
    ({"HEARTBEAT_HISTORY_LEN": "10000000000"}, "HEARTBEAT_HISTORY_LEN"),
    ({"HEARTBEAT_REDIS_TIMEOUT_S": "1e15"}, "HEARTBEAT_REDIS_TIMEOUT_S"),
    ({"HEARTBEAT_NODE_RETENTION_S": "1e20"}, "HEARTBEAT_NODE_RETENTION_S"),
    ({"CELERY_BROKER_URL": "redis://127.0.0.1:6390/0?socket_timeout=abc"}, "socket_timeout"),
    ({"CELERY_BROKER_URL": "redis://127.0.0.1:6390/0?socket_connect_timeout=1e300"},
     "socket_connect_timeout"),
    ({"CELERY_BROKER_URL": f"redis://{'h' * 300}:6379/0"}, "bad host"),
    ({"HEARTBEAT_REDIS_URL": f"redis://{'a' * 64}.example:6379/0"}, "bad host"),
])
def test_every_setting_has_an_upper_bound_and_one_line(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert needle in message and "\n" not in message and len(message) < 400


def test_sane_hosts_stay_accepted() -> None:
    for host in ("127.0.0.1", "redis", "redis_1", "redis-master.prod.svc.cluster.local",
                 "[::1]", "[fe80::1%eth0]"):
        assert Settings.from_env({"CELERY_BROKER_URL": f"redis://{host}:6379/0"})
        assert Settings.from_env({"CELERY_BROKER_URL": f"redis://{host}/0"})


@pytest.mark.parametrize(("argv", "code"), [
    (["check", "--timeout", "1e15"], 3),
    (["status", "--timeout", "1e15"], 3),
    (["check", "--stale-after", "1e300"], 3),
    (["check", "--late-after", "inf"], 3),
    (["watch", "--poll", "1e15"], 2),
    (["watch", "--timeout", "1e15"], 2),
    (["serve", "--host", "h" * 100_000], 2),
    (["check", "--redis", "redis://:Secr3t?x@127.0.0.1:6390/0"], 3),
])
def test_every_flag_has_an_upper_bound_and_one_line(argv: list[str], code: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli.main import main

    assert main(argv) == code
    out, err = capsys.readouterr()
    said = (out + err).strip()
    assert "\n" not in said and len(said) < 400 and "Traceback" not in said
    assert "Secr3t" not in said


def test_a_long_broker_outage_is_not_one_error_line_per_retry() -> None:
    from worker.publish.consumer import RepeatedConnectErrors

    quiet = RepeatedConnectErrors()

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("celery.worker.consumer.consumer", logging.ERROR, "f", 1, msg,
                                 None, None)

    said = [quiet.filter(record("consumer: Cannot connect to %s: %s.\n%s\n"))
            for _ in range(40)]
    assert said[0] and not any(said[1:])  # once, then quiet for 30 s
    assert quiet.filter(record("consumer: Connection to broker lost"))  # others untouched
