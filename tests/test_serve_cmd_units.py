"""``petsage-heartbeat serve`` in process: the bind address, the allowed ``Host`` list and
the token as read from flags, environment and file, each refusal's whole line and exit
code, and what reaches the app and uvicorn (stubbed: no port is opened).

The same command as a real process, with real requests, is in tests/test_serve_limits.py.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.streams import Stream
from worker.cli import serve as serve_cmd
from worker.core.errors import ConfigError
from worker.http.guard import GuardOptions

ROUTER = importlib.import_module("worker.http.router")  # the package's ``router`` is the app's
SERVER = importlib.import_module("worker.http.server")

TOKEN = "0123456789abcdef-token"
"""A usable token: 16 printable characters or more, no blanks."""

ACCEPTED_HOST = ("is invalid; accepted: a host name or IP address of 1-253 characters, "
                 "e.g. 127.0.0.1 or 0.0.0.0")
ACCEPTED_ALLOWED = ("is invalid; accepted: host names or IP addresses without a port, e.g. "
                    "heartbeat.internal,10.0.0.5, or * for any")
ACCEPTED_TOKEN = ("is not a usable token; accepted: at least 16 printable characters without "
                  "blanks, e.g. the output of `openssl rand -hex 32`")


class Served:
    """What ``run_serve`` handed on: logging's setup, the router's settings, the app, uvicorn."""

    def __init__(self) -> None:
        self.logging: list[dict[str, Any]] = []
        self.configured: list[dict[str, Any]] = []
        self.apps: list[dict[str, Any]] = []
        self.runs: list[tuple[Any, dict[str, Any]]] = []
        self.out = Stream()
        self.err = Stream()

    @property
    def guard(self) -> GuardOptions:
        guard = self.apps[-1]["guard"]
        assert isinstance(guard, GuardOptions)
        return guard


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    """``serve`` with its environment emptied and nothing really served."""
    for name in ("HEARTBEAT_HTTP_TOKEN", "HEARTBEAT_HTTP_TOKEN_FILE",
                 "HEARTBEAT_HTTP_ALLOWED_HOSTS", "HEARTBEAT_REDIS_URL", "CELERY_BROKER_URL",
                 "HEARTBEAT_KEY_PREFIX", "HEARTBEAT_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    record = Served()
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: record.logging.append(kw))
    monkeypatch.setattr(ROUTER, "configure",
                        lambda **kw: record.configured.append(kw))

    def create_app(**kwargs: Any) -> str:
        record.apps.append(kwargs)
        return f"app-{len(record.apps)}"

    monkeypatch.setattr(ROUTER, "create_app", create_app)
    monkeypatch.setattr(SERVER, "run",
                        lambda app, **kw: record.runs.append((app, kw)))
    return record


def _serve(served: Served, host: str = "127.0.0.1", port: int = 9808,
           redis_url: str | None = "redis://store.invalid:6379/0", prefix: str | None = None,
           allowed_host: tuple[str, ...] | None = None) -> int:
    """``run_serve`` with its streams recorded (set here: pytest's capture resets them
    between a test's fixtures and its body)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", served.out)
        patch.setattr(sys, "stderr", served.err)
        if allowed_host is None:  # the keyword's default, as the CLI leaves it
            return serve_cmd.run_serve(host=host, port=port, redis_url=redis_url,
                                       prefix=prefix)
        return serve_cmd.run_serve(host=host, port=port, redis_url=redis_url, prefix=prefix,
                                   allowed_host=allowed_host)


# --- the bind address -----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "fe80::1%eth0",
                                  "heartbeat.internal", "a" * 253])
def test_a_bind_address_is_returned_as_given(host: str) -> None:
    assert serve_cmd.validate_host(host) == host


@pytest.mark.parametrize(("host", "shown"), [
    ("", "''"),
    ("a" * 254, repr("a" * 40 + "...")),
    ("bad host", "'bad host'"),
    ("/" * 40, repr("/" * 40)),  # 40 characters are shown whole
    ("/" * 41, repr("/" * 40 + "...")),  # one more is cut at 40
])
def test_a_bad_bind_address_is_one_error_that_shows_at_most_40_characters(
        host: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        serve_cmd.validate_host(host)
    assert str(caught.value) == f"--host {shown} {ACCEPTED_HOST}"


# --- the allowed Host list ------------------------------------------------------------------

def test_allowed_hosts_from_the_flags_lower_case_without_port_or_blanks() -> None:
    env = {"HEARTBEAT_HTTP_ALLOWED_HOSTS": "ignored.example"}  # the flags win
    assert serve_cmd.allowed_hosts("0.0.0.0", [" Heartbeat.Internal ", "10.0.0.5", "[::1]"],
                                   env) == frozenset({"heartbeat.internal", "10.0.0.5", "::1"})


def test_allowed_hosts_from_the_variable_comma_separated_blanks_dropped() -> None:
    env = {"HEARTBEAT_HTTP_ALLOWED_HOSTS": " a.example, B.example,, ,"}
    assert serve_cmd.allowed_hosts("0.0.0.0", [], env) == frozenset({"a.example", "b.example"})
    assert serve_cmd.allowed_hosts("127.0.0.1", (), env) == frozenset({"a.example",
                                                                      "b.example"})


def test_allowed_hosts_default_to_the_loopback_names_on_loopback_else_any() -> None:
    loopback = frozenset({"localhost", "127.0.0.1", "::1"})
    assert serve_cmd.allowed_hosts("127.0.0.1", [], {}) == loopback
    assert serve_cmd.allowed_hosts("127.0.0.2", [], {}) == loopback | {"127.0.0.2"}
    assert serve_cmd.allowed_hosts("localhost", [], {}) == loopback
    assert serve_cmd.allowed_hosts("0.0.0.0", [], {}) is None
    assert serve_cmd.allowed_hosts("10.0.0.5", [], {"HEARTBEAT_HTTP_ALLOWED_HOSTS": " , "}) \
        is None


def test_a_star_alone_is_any_host() -> None:
    assert serve_cmd.allowed_hosts("127.0.0.1", ["*"], {}) is None
    assert serve_cmd.allowed_hosts("127.0.0.1", [" * "], {}) is None
    assert serve_cmd.allowed_hosts("127.0.0.1", [],
                                   {"HEARTBEAT_HTTP_ALLOWED_HOSTS": "*"}) is None


@pytest.mark.parametrize(("given", "env", "message"), [
    (["a.example", "*"], "", f"--allowed-host '*' {ACCEPTED_ALLOWED}"),
    (["a.example:8080/x"], "", f"--allowed-host 'a.example:8080/x' {ACCEPTED_ALLOWED}"),
    ([], "a.example,b example", f"HEARTBEAT_HTTP_ALLOWED_HOSTS 'b example' {ACCEPTED_ALLOWED}"),
    (["/" * 40], "", f"--allowed-host {'/' * 40!r} {ACCEPTED_ALLOWED}"),
    (["/" * 41], "", f"--allowed-host {'/' * 40 + '...'!r} {ACCEPTED_ALLOWED}"),
])
def test_a_bad_allowed_host_names_its_source_and_at_most_40_characters(
        given: list[str], env: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        serve_cmd.allowed_hosts("127.0.0.1", given, {"HEARTBEAT_HTTP_ALLOWED_HOSTS": env})
    assert str(caught.value) == message


# --- the token ------------------------------------------------------------------------------

def test_no_token_set_or_an_empty_one_is_none() -> None:
    assert serve_cmd.read_token({}) is None
    assert serve_cmd.read_token({"HEARTBEAT_HTTP_TOKEN": "", "HEARTBEAT_HTTP_TOKEN_FILE": ""}) \
        is None


def test_the_token_from_the_variable_stripped() -> None:
    assert serve_cmd.read_token({"HEARTBEAT_HTTP_TOKEN": f" {TOKEN}\n"}) == TOKEN


def test_the_token_from_the_file_stripped_up_to_4096_bytes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    assert serve_cmd.read_token({"HEARTBEAT_HTTP_TOKEN_FILE": str(path)}) == TOKEN
    # An empty variable beside the file is not "both set".
    assert serve_cmd.read_token({"HEARTBEAT_HTTP_TOKEN": "",
                                 "HEARTBEAT_HTTP_TOKEN_FILE": str(path)}) == TOKEN
    path.write_bytes(b"a" * 4096)
    assert serve_cmd.read_token({"HEARTBEAT_HTTP_TOKEN_FILE": str(path)}) == "a" * 4096
    # Bytes that are not UTF-8 are replaced, not an error of their own.
    path.write_bytes(b"\xff" + TOKEN.encode())
    assert serve_cmd.read_token({"HEARTBEAT_HTTP_TOKEN_FILE": str(path)}) == "\ufffd" + TOKEN


def test_each_token_refusal_is_one_line_that_never_quotes_the_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "token"
    cases: list[tuple[dict[str, str], str]] = [
        ({"HEARTBEAT_HTTP_TOKEN": TOKEN, "HEARTBEAT_HTTP_TOKEN_FILE": str(path)},
         "HEARTBEAT_HTTP_TOKEN and HEARTBEAT_HTTP_TOKEN_FILE are both set; accepted: one of "
         "them"),
        ({"HEARTBEAT_HTTP_TOKEN": "short secret"}, f"HEARTBEAT_HTTP_TOKEN {ACCEPTED_TOKEN}"),
        ({"HEARTBEAT_HTTP_TOKEN_FILE": str(tmp_path / "none")},
         f"HEARTBEAT_HTTP_TOKEN_FILE {str(tmp_path / 'none')!r} can't be read: No such file "
         "or directory"),
    ]
    for env, message in cases:
        with pytest.raises(ConfigError) as caught:
            serve_cmd.read_token(env)
        assert str(caught.value) == message
    env = {"HEARTBEAT_HTTP_TOKEN_FILE": str(path)}
    path.write_text("short secret\n")
    with pytest.raises(ConfigError) as caught:
        serve_cmd.read_token(env)
    assert str(caught.value) == f"HEARTBEAT_HTTP_TOKEN_FILE's content {ACCEPTED_TOKEN}"
    path.write_bytes(b"a" * 4097)
    with pytest.raises(ConfigError) as caught:
        serve_cmd.read_token(env)
    assert str(caught.value) == (f"HEARTBEAT_HTTP_TOKEN_FILE {str(path)!r} is larger than "
                                 "4096 bytes; accepted: the token alone")

    def unreadable(*_: Any, **__: Any) -> Any:
        raise OSError("no reason given")  # an OSError without strerror: its type is said

    monkeypatch.setattr(Path, "open", unreadable)
    with pytest.raises(ConfigError) as caught:
        serve_cmd.read_token(env)
    assert str(caught.value) == f"HEARTBEAT_HTTP_TOKEN_FILE {str(path)!r} can't be read: OSError"


# --- run_serve ------------------------------------------------------------------------------

LOOPBACK_LINES = (
    "petsage-heartbeat: serving http://127.0.0.1:9808/ (store redis://store.invalid:6379/0)\n"
    "petsage-heartbeat: Host header: 127.0.0.1, ::1, localhost\n"
    "petsage-heartbeat: no token: every client that reaches the port reads the fleet (set "
    "HEARTBEAT_HTTP_TOKEN to require one)\n")


def test_serve_on_loopback_prints_three_lines_then_runs_the_app(served: Served) -> None:
    assert _serve(served) == 0
    assert served.out.text == LOOPBACK_LINES
    assert served.out.flushed_at == served.out.line_ends()  # each line as it is printed
    assert served.err.text == ""
    assert served.logging == [{"level": logging.WARNING,
                               "format": "petsage-heartbeat: %(message)s"}]
    [configured] = served.configured
    assert list(configured) == ["settings"]
    assert configured["settings"].redis_url == "redis://store.invalid:6379/0"
    assert configured["settings"].key_prefix == "petsage:hb"
    assert served.apps == [{"cache_s": ROUTER.CACHE_S, "guard": served.guard}]
    assert served.guard.allowed_hosts == frozenset({"localhost", "127.0.0.1", "::1"})
    assert served.guard.token is None
    assert served.runs == [("app-1", {"host": "127.0.0.1", "port": 9808})]


def test_serve_beyond_loopback_with_a_token_a_prefix_and_a_password(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTBEAT_HTTP_TOKEN", TOKEN)
    assert _serve(served, "0.0.0.0", 65535, "redis://:s3cret@store.invalid:6379/2", "other") == 0
    assert served.out.text == (
        "petsage-heartbeat: serving http://0.0.0.0:65535/ (store "
        "redis://:***@store.invalid:6379/2)\n"
        "petsage-heartbeat: Host header: any accepted (bound beyond loopback with no "
        "--allowed-host list)\n"
        "petsage-heartbeat: token required for all but /system/health\n")
    assert served.out.flushed_at == served.out.line_ends()
    assert served.configured[0]["settings"].key_prefix == "other"
    assert served.configured[0]["settings"].redis_url == "redis://:s3cret@store.invalid:6379/2"
    assert served.guard.allowed_hosts is None
    assert served.guard.token is not None and served.guard.token.matches(TOKEN)
    assert not served.guard.token.matches(TOKEN + "x")
    assert served.runs == [("app-1", {"host": "0.0.0.0", "port": 65535})]


def test_serve_with_allowed_hosts_from_flags_or_the_variable(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _serve(served, "0.0.0.0", 1, allowed_host=("B.example", "a.example")) == 0
    assert served.out.text.splitlines()[1] == "petsage-heartbeat: Host header: a.example, " \
                                              "b.example"
    assert served.guard.allowed_hosts == frozenset({"a.example", "b.example"})
    assert served.runs[-1] == ("app-1", {"host": "0.0.0.0", "port": 1})
    monkeypatch.setenv("HEARTBEAT_HTTP_ALLOWED_HOSTS", "c.example")
    assert _serve(served, "0.0.0.0", 2) == 0
    assert served.guard.allowed_hosts == frozenset({"c.example"})


@pytest.mark.parametrize(("kwargs", "env", "line"), [
    ({"port": 0}, {}, "--port 0 is out of range; accepted: 1-65535"),
    ({"port": 65536}, {}, "--port 65536 is out of range; accepted: 1-65535"),
    ({"port": -1}, {}, "--port -1 is out of range; accepted: 1-65535"),
    ({"host": ""}, {}, f"--host '' {ACCEPTED_HOST}"),
    ({"redis_url": "http://store.invalid/"}, {}, "--redis"),
    ({"prefix": "bad prefix"}, {}, "--prefix 'bad prefix' is invalid"),
    ({"allowed_host": ("a b",)}, {}, f"--allowed-host 'a b' {ACCEPTED_ALLOWED}"),
    ({}, {"HEARTBEAT_HTTP_ALLOWED_HOSTS": "a b"},
     f"HEARTBEAT_HTTP_ALLOWED_HOSTS 'a b' {ACCEPTED_ALLOWED}"),
    ({}, {"HEARTBEAT_HTTP_TOKEN": "short"}, f"HEARTBEAT_HTTP_TOKEN {ACCEPTED_TOKEN}"),
])
def test_each_bad_setting_is_one_line_on_stderr_exit_2_and_nothing_served(
        served: Served, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any],
        env: dict[str, str], line: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _serve(served, **kwargs) == 2
    assert served.out.text == ""
    assert served.err.text.startswith(f"petsage-heartbeat: {line}")
    assert served.err.text.count("\n") == 1 and served.err.text.endswith("\n")
    if line.endswith(("65535", "0.0.0.0", "for any", "32`")):
        assert served.err.text == f"petsage-heartbeat: {line}\n"
    assert (served.configured, served.apps, served.runs) == ([], [], [])


def test_without_the_http_extra_serve_says_what_to_install(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # ``import uvicorn`` fails
    assert _serve(served) == 2
    assert served.err.text == ("petsage-heartbeat: serve needs the http extra (uvicorn is "
                               "missing); pip install 'petsage-heartbeat[http]'\n")
    assert (served.out.text, served.runs) == ("", [])
