"""``petsage-heartbeat``'s dispatch: each command line reaches its command with every flag
as given (or its documented default), and a malformed one is one line with the exit code of
its command, never argparse's usage dump."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest

import worker.cli.check
import worker.cli.entries
import worker.cli.monitor
import worker.cli.run
import worker.cli.serve
import worker.cli.silence
import worker.cli.status
import worker.cli.watch
from worker.cli.main import main


class _Called:
    """Stands for a command's function: records its keyword arguments, returns 7."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append((args, kwargs))
        return 7


@pytest.fixture
def logging_config(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    configured: list[dict[str, Any]] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: configured.append(kw))
    return configured


def _stub(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> _Called:
    called = _Called()
    monkeypatch.setattr(module, name, called)
    return called


def test_check_gets_every_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    called = _stub(monkeypatch, worker.cli.check, "run_check")
    assert main(["check"]) == 7
    assert called.calls[-1] == ((), {
        "redis_url": None, "service": None, "prefix": None, "late_after_s": None,
        "stale_after_s": None, "timeout_s": 2.0, "as_json": False, "unreachable_ok": False,
        "node": None, "beat": False, "liveness": False})
    assert main(["check", "--service", "s", "--redis", "redis://h/1", "--prefix", "p:q",
                 "--late-after", "1.5", "--stale-after", "9", "--timeout", "0.5", "--json",
                 "--unreachable-ok", "--node", "n@h", "--liveness"]) == 7
    assert called.calls[-1] == ((), {
        "redis_url": "redis://h/1", "service": "s", "prefix": "p:q", "late_after_s": 1.5,
        "stale_after_s": 9.0, "timeout_s": 0.5, "as_json": True, "unreachable_ok": True,
        "node": "n@h", "beat": False, "liveness": True})
    assert main(["check", "--beat"]) == 7 and called.calls[-1][1]["beat"] is True


def test_check_of_an_entry_gets_its_flags_and_refuses_the_heartbeats(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    called = _stub(monkeypatch, worker.cli.entries, "run_check_entry")
    assert main(["check", "--entry", "nightly export", "--service", "s", "--redis", "r",
                 "--prefix", "p", "--timeout", "3", "--json", "--unreachable-ok"]) == 7
    assert called.calls == [((), {"name": "nightly export", "redis_url": "r", "service": "s",
                                  "prefix": "p", "timeout_s": 3.0, "as_json": True,
                                  "unreachable_ok": True})]
    assert main(["check", "--entry", "e", "--late-after", "1", "--stale-after", "2",
                 "--liveness"]) == 3
    assert capsys.readouterr().out == (
        "UNKNOWN - petsage-heartbeat: --late-after, --stale-after, --liveness can't be used "
        "with --entry: an entry is judged on its own schedule and tolerances "
        "(options.heartbeat: grace_s, max_runtime_s); see docs/entries.md\n")
    assert main(["check", "--entry", "e", "--stale-after", "2"]) == 3
    assert capsys.readouterr().out.startswith(
        "UNKNOWN - petsage-heartbeat: --stale-after can't be used with --entry: ")
    assert main(["check", "--entry", "e", "--liveness"]) == 3
    assert capsys.readouterr().out.startswith(
        "UNKNOWN - petsage-heartbeat: --liveness can't be used with --entry: ")
    assert len(called.calls) == 1


@pytest.mark.parametrize("entries", [False, True])
def test_status_gets_every_flag_and_leaves_the_gc_off(
        monkeypatch: pytest.MonkeyPatch, entries: bool) -> None:
    target = (worker.cli.entries, "run_status_entries") if entries else \
        (worker.cli.status, "run_status")
    called = _stub(monkeypatch, *target)
    more = ["--entries"] if entries else []
    try:
        assert main(["status", *more]) == 7
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert called.calls[-1] == ((), {"redis_url": None, "service": None, "all_services": False,
                                     "prefix": None, "timeout_s": 5.0, "as_json": False})
    try:
        assert main(["status", *more, "--all", "--redis", "r", "--prefix", "p",
                     "--timeout", "1", "--json"]) == 7
    finally:
        gc.enable()
    assert called.calls[-1] == ((), {"redis_url": "r", "service": None, "all_services": True,
                                     "prefix": "p", "timeout_s": 1.0, "as_json": True})


def test_the_admin_commands_get_their_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    silence = _stub(monkeypatch, worker.cli.silence, "run_silence")
    unsilence = _stub(monkeypatch, worker.cli.silence, "run_unsilence")
    forget = _stub(monkeypatch, worker.cli.silence, "run_forget")
    common = {"service": "b", "redis_url": "r", "prefix": "p"}
    assert main(["silence", "b", "--for", "2h", "--reason", "why", "--entry", "e",
                 "--redis", "r", "--prefix", "p"]) == 7
    assert silence.calls == [((), {"duration": "2h", "reason": "why", "entry": "e", **common})]
    assert main(["silence", "b", "--for", "1m"]) == 7
    assert silence.calls[-1] == ((), {"duration": "1m", "reason": "", "entry": None,
                                      "service": "b", "redis_url": None, "prefix": None})
    assert main(["unsilence", "b", "--entry", "e", "--redis", "r", "--prefix", "p"]) == 7
    assert unsilence.calls == [((), {"entry": "e", **common})]
    assert main(["forget", "b", "--redis", "r", "--prefix", "p"]) == 7
    assert main(["forget", "b", "--yes", "--redis", "r", "--prefix", "p"]) == 7
    assert forget.calls == [((), {"yes": False, **common}), ((), {"yes": True, **common})]


def _watch_settings(called: _Called) -> tuple[Any, dict[str, Any]]:
    (settings,), kwargs = called.calls[-1]
    return settings, kwargs


@pytest.mark.parametrize("entries", [False, True])
def test_watch_gets_its_settings_and_flags_and_logs_warnings(
        monkeypatch: pytest.MonkeyPatch, logging_config: list[dict[str, Any]],
        entries: bool) -> None:
    monkeypatch.delenv("HEARTBEAT_SERVICE", raising=False)
    target = (worker.cli.entries, "run_watch_entries") if entries else \
        (worker.cli.watch, "run_watch")
    called = _stub(monkeypatch, *target)
    more = ["--entries"] if entries else []
    assert main(["watch", *more, "--redis", "redis://h:1/2"]) == 7
    settings, kwargs = _watch_settings(called)
    assert (settings.redis_url, settings.service, settings.keys.prefix) == (
        "redis://h:1/2", "petsage", "petsage:hb")
    assert kwargs == {"all_services": False, "exec_cmd": None, "as_json": False,
                      "timeout_s": 2.0, "poll_s": 0.5}
    assert main(["watch", *more, "--all", "--redis", "redis://h:1/2", "--prefix", "x:y",
                 "--exec", "true", "--json", "--timeout", "2", "--poll", "0.25"]) == 7
    settings, kwargs = _watch_settings(called)
    assert settings.keys.prefix == "x:y"
    assert kwargs == {"all_services": True, "exec_cmd": "true", "as_json": True,
                      "timeout_s": 2.0, "poll_s": 0.25}
    assert main(["watch", *more, "--service", "billing", "--redis", "redis://h:1/2"]) == 7
    assert _watch_settings(called)[0].service == "billing"
    assert [c["level"] for c in logging_config] == [logging.WARNING] * 3
    assert logging_config[0]["format"] == "%(asctime)s %(levelname)s %(message)s"


@pytest.mark.parametrize(("flags", "line"), [
    (["--poll", "0"], "petsage-heartbeat: --poll 0.0 is out of range; accepted: seconds > 0 "
                      "and <= 3600\n"),
    (["--timeout", "3601"], "petsage-heartbeat: --timeout 3601.0 is out of range; accepted: "
                            "seconds > 0 and <= 3600\n"),
    (["--prefix", "a b"], "petsage-heartbeat: --prefix 'a b' is invalid; accepted: up to 4 "
                          "parts joined by ':', each 1-32 characters of A-Z a-z 0-9 . _ - "
                          "(e.g. petsage:hb)\n"),
])
def test_watch_refuses_a_bad_flag_in_one_line_before_it_starts(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        logging_config: list[dict[str, Any]], flags: list[str], line: str) -> None:
    called = _stub(monkeypatch, worker.cli.watch, "run_watch")
    assert main(["watch", "--redis", "redis://h/0", *flags]) == 2
    assert capsys.readouterr().err == line and called.calls == []


def test_serve_monitor_and_run_get_their_flags_and_log_levels(
        monkeypatch: pytest.MonkeyPatch, logging_config: list[dict[str, Any]]) -> None:
    serve = _stub(monkeypatch, worker.cli.serve, "run_serve")
    monitor = _stub(monkeypatch, worker.cli.monitor, "run_monitor")
    run = _stub(monkeypatch, worker.cli.run, "run")
    assert main(["serve"]) == 7
    assert serve.calls[-1][1] == {"host": "127.0.0.1", "port": 9808, "redis_url": None,
                                  "prefix": None, "allowed_host": []}
    assert main(["serve", "--host", "0.0.0.0", "--port", "1234", "--redis", "r", "--prefix",
                 "p", "--allowed-host", "a.example", "--allowed-host", "b.example"]) == 7
    assert serve.calls[-1][1] == {"host": "0.0.0.0", "port": 1234, "redis_url": "r",
                                  "prefix": "p", "allowed_host": ["a.example", "b.example"]}
    assert main(["monitor"]) == 7
    assert monitor.calls[-1][1] == {"redis_url": None, "prefix": None, "every_s": None,
                                    "webhooks": [], "webhook_format": None}
    assert main(["monitor", "--loglevel", "DEBUG", "--redis", "r", "--prefix", "p",
                 "--every", "2.5", "--webhook", "https://a/1", "--webhook", "https://b/2",
                 "--webhook-format", "slack"]) == 7
    assert monitor.calls[-1][1] == {"redis_url": "r", "prefix": "p", "every_s": 2.5,
                                    "webhooks": ["https://a/1", "https://b/2"],
                                    "webhook_format": "slack"}
    assert main(["run"]) == 7 and run.calls[-1] == ((), {"loglevel": "WARNING"})
    assert main(["run", "--loglevel", "ERROR"]) == 7
    assert run.calls[-1] == ((), {"loglevel": "ERROR"})
    # monitor logs at its own level (INFO unless told); every other command at WARNING
    assert [c["level"] for c in logging_config] == [
        logging.WARNING, logging.WARNING, logging.INFO, logging.DEBUG, logging.WARNING,
        logging.WARNING]


@pytest.mark.parametrize(("argv", "stream", "line", "code"), [
    ([], "err", "petsage-heartbeat: the following arguments are required: COMMAND; see "
                "'petsage-heartbeat --help'", 2),
    (["nonsense"], "err", "petsage-heartbeat: argument COMMAND: invalid choice: 'nonsense' "
                          "(choose from 'run', 'check', 'status', 'watch', 'serve', "
                          "'monitor', 'silence', 'unsilence', 'forget'); see "
                          "'petsage-heartbeat --help'", 2),
    (["check", "--timeout", "x"], "out", "UNKNOWN - petsage-heartbeat: check: argument "
                                         "--timeout: invalid float value: 'x'; see "
                                         "'petsage-heartbeat check --help'", 3),
    (["status", "--bogus"], "out", "UNKNOWN - petsage-heartbeat: status: unrecognized "
                                   "arguments: --bogus; see 'petsage-heartbeat status "
                                   "--help'", 3),
    (["forget"], "err", "petsage-heartbeat: forget: the following arguments are required: "
                        "SERVICE; see 'petsage-heartbeat forget --help'", 2),
    (["check", "--node", "n", "--beat"], "out",
     "UNKNOWN - petsage-heartbeat: check: argument --beat: not allowed with argument --node; "
     "see 'petsage-heartbeat check --help'", 3),
])
def test_a_malformed_command_line_is_one_line(
        capsys: pytest.CaptureFixture[str], argv: list[str], stream: str, line: str,
        code: int) -> None:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert getattr(captured, stream) == line + "\n"
    assert (captured.err if stream == "out" else captured.out) == ""
