"""``monitor``'s command: where ``--webhook`` URLs come from (kept out of ``ps``), each bad
value in one line before anything starts, and a monitor that stops on SIGTERM with exit 0."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any, ClassVar

import pytest

import worker.cli.monitor as cmd
import worker.observe.monitor
from worker.core.errors import ConfigError


def test_a_url_is_taken_as_it_is() -> None:
    assert cmd.webhook_value("https://hooks.example/x") == ("https://hooks.example/x",
                                                            "--webhook")


def test_a_file_gives_its_urls(tmp_path: Path) -> None:
    path = tmp_path / "hooks"
    path.write_text("https://a/1\nhttps://b/2\n", encoding="utf-8")
    assert cmd.webhook_value(f"@{path}") == ("https://a/1\nhttps://b/2\n", f"--webhook @{path}")


def test_a_file_is_read_up_to_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "hooks"
    path.write_text("h" * 65_537, encoding="utf-8")
    assert cmd.webhook_value(f"@{path}")[0] == "h" * 65_536


def test_a_file_that_cannot_be_read_or_is_empty_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    with pytest.raises(ConfigError) as refused:
        cmd.webhook_value(f"@{missing}")
    assert str(refused.value) == (
        f"--webhook @{str(missing)!r}: can't be read (No such file or directory)")
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError) as refused:
        cmd.webhook_value(f"@{binary}")
    assert str(refused.value) == f"--webhook @{str(binary)!r}: can't be read (UnicodeDecodeError)"
    empty = tmp_path / "empty"
    empty.write_text(" \n\t", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        cmd.webhook_value(f"@{empty}")
    assert str(refused.value) == f"--webhook @{str(empty)!r}: the file holds no URL"
    long = "/" + "d" * 300
    with pytest.raises(ConfigError) as refused:
        cmd.webhook_value(f"@{long}")
    assert str(refused.value).startswith(f"--webhook @{long[:200]!r}: can't be read (")


def test_a_variable_gives_its_urls_and_an_unset_or_empty_one_is_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKS_1", "https://a/1")
    assert cmd.webhook_value("HOOKS_1") == ("https://a/1", "--webhook HOOKS_1")
    monkeypatch.setenv("_H", "https://a/1")
    assert cmd.webhook_value("_H") == ("https://a/1", "--webhook _H")
    monkeypatch.setenv("EMPTY", "  ")
    monkeypatch.delenv("UNSET", raising=False)
    for name in ("EMPTY", "UNSET"):
        with pytest.raises(ConfigError) as refused:
            cmd.webhook_value(name)
        assert str(refused.value) == (
            f"--webhook {name}: no such environment variable, or it is empty; accepted: a "
            "URL, @/path/to/file or a variable's name")
    # not a variable's name: taken as a URL (and refused as one later)
    assert cmd.webhook_value("1ABC") == ("1ABC", "--webhook")
    assert cmd.webhook_value("A" * 129) == ("A" * 129, "--webhook")


class _StubMonitor:
    """Stands for the monitor: records how it was made and stops at once."""

    made: ClassVar[list[_StubMonitor]] = []

    def __init__(self, settings: Any, client: Any, every_s: float) -> None:
        self.settings, self.client, self.every_s = settings, client, every_s
        self.owner = "host:1:abcd"
        self.stopped = 0
        _StubMonitor.made.append(self)

    def stop(self) -> None:
        self.stopped += 1

    def run(self) -> None:
        raise KeyboardInterrupt  # Ctrl-C


@pytest.fixture
def stub_monitor(monkeypatch: pytest.MonkeyPatch) -> list[_StubMonitor]:
    _StubMonitor.made = []
    monkeypatch.setattr(worker.observe.monitor, "Monitor", _StubMonitor)
    monkeypatch.setattr(cmd, "make_client", lambda url, timeout_s: ("client", url, timeout_s))
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal", handlers.setdefault)
    monkeypatch.setattr(cmd, "_test_handlers", handlers, raising=False)
    for name in ("HEARTBEAT_WEBHOOK_URLS", "HEARTBEAT_WEBHOOK_FORMAT", "HEARTBEAT_INTERVAL_S",
                 "HEARTBEAT_KEY_PREFIX", "HEARTBEAT_REDIS_URL", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    return _StubMonitor.made


def test_the_monitor_runs_with_its_settings_and_says_so(
        stub_monitor: list[_StubMonitor], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HEARTBEAT_WEBHOOK_URLS", "https://a.example/1")
    monkeypatch.setenv("HOOKS", "https://b.example/2 https://a.example/1")
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.monitor")
    assert cmd.run_monitor(redis_url="redis://h:6379/3", prefix="p:q", every_s=2.5,
                           webhooks=["HOOKS", "https://c.example:8443/3"],
                           webhook_format="Slack") == 0
    (monitor,) = stub_monitor
    assert monitor.every_s == 2.5
    assert monitor.client == ("client", "redis://h:6379/3", monitor.settings.redis_timeout_s)
    assert [h.url for h in monitor.settings.webhooks] == [
        "https://a.example/1", "https://b.example/2", "https://c.example:8443/3"]
    assert monitor.settings.webhook_format == "slack"
    assert caplog.messages == [
        "monitor host:1:abcd: judging every service under p:q every 2.5 s; webhooks: "
        "https://a.example, https://b.example, https://c.example:8443 (slack)"]
    assert capsys.readouterr().err == "petsage-heartbeat monitor: stopped\n"
    # SIGTERM stops the monitor the way Ctrl-C does
    handler = cmd._test_handlers[signal.SIGTERM]  # type: ignore[attr-defined]
    handler(signal.SIGTERM, None)
    assert monitor.stopped == 1


def test_without_every_the_monitor_judges_at_the_interval(
        stub_monitor: list[_StubMonitor], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HEARTBEAT_INTERVAL_S", "7")
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.monitor")
    assert cmd.run_monitor(redis_url="redis://h/0", prefix=None, every_s=None, webhooks=[],
                           webhook_format=None) == 0
    assert stub_monitor[0].every_s == 7.0
    assert stub_monitor[0].settings.webhook_format == "json"
    assert caplog.messages[0].endswith("under petsage:hb every 7 s; webhooks: none (json)")


@pytest.mark.parametrize(("kwargs", "line"), [
    ({"every_s": 0.0}, "petsage-heartbeat: --every 0.0 is out of range; accepted: seconds > 0 "
                       "and <= 86400\n"),
    ({"every_s": 86400.5}, "petsage-heartbeat: --every 86400.5 is out of range; accepted: "
                           "seconds > 0 and <= 86400\n"),
    ({"webhooks": ["ftp://x"]}, "petsage-heartbeat: --webhook has an invalid scheme 'ftp'; "
                                "accepted: http:// or https:// URLs with a host, separated by "
                                "commas or spaces\n"),
    ({"webhook_format": "teams"}, "petsage-heartbeat: --webhook-format 'teams' is invalid; "
                                  "accepted: json, slack\n"),
    ({"prefix": "a b"}, "petsage-heartbeat: --prefix 'a b' is invalid; accepted: up to 4 "
                        "parts joined by ':', each 1-32 characters of A-Z a-z 0-9 . _ - "
                        "(e.g. petsage:hb)\n"),
])
def test_a_bad_flag_is_one_line_and_exit_2_before_any_monitor_starts(
        stub_monitor: list[_StubMonitor], capsys: pytest.CaptureFixture[str],
        kwargs: dict[str, Any], line: str) -> None:
    given: dict[str, Any] = {"redis_url": "redis://h/0", "prefix": None, "every_s": None,
                             "webhooks": [], "webhook_format": None, **kwargs}
    assert cmd.run_monitor(**given) == 2
    assert capsys.readouterr().err == line and stub_monitor == []


def test_a_long_path_is_shown_cut_at_200_characters(tmp_path: Path) -> None:
    deep = tmp_path
    while len(str(deep)) <= 220:
        deep = deep / ("d" * 40)
    deep.mkdir(parents=True)
    empty, full = deep / "empty", deep / "hooks"
    empty.write_text("", encoding="utf-8")
    full.write_text("https://a/1", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        cmd.webhook_value(f"@{empty}")
    assert str(refused.value) == f"--webhook @{str(empty)[:200]!r}: the file holds no URL"
    assert cmd.webhook_value(f"@{full}") == ("https://a/1", f"--webhook @{str(full)[:200]}")
