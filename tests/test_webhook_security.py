"""Hostile text and hostile receivers, in-process: Slack text escaped, outbox entries checked
before they are posted, no redirect followed, one deadline a POST, user text escaped in
lines for people, no notification for a name never seen fresh, ``--webhook`` from a file
or a variable, and ``watch --exec`` hooks debounced with a minimal environment."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from tests.support.hooks import HookProc as _Proc
from tests.support.publishing import backdate, publish
from worker.cli.monitor import webhook_value
from worker.cli.watch import Hooks, hook_env
from worker.core.errors import ConfigError
from worker.core.names import Keys
from worker.core.redis_io import as_text
from worker.core.webhook_urls import parse_webhooks
from worker.observe.delivery import LEASE_S, POST_TIMEOUT_S, Delivery, post
from worker.observe.record import record
from worker.observe.webhooks import event_body, event_problem, render, slack_escape, text_line
from worker.read.reader import read_heartbeat
from worker.read.render import escape, heartbeat_line, nagios_line, table_row, transition_line

KEYS = Keys()
EVIL = "<!channel> <http://evil.example|click>"


# -- Slack text ------------------------------------------------------------------------------


def test_slack_text_escapes_every_field_from_the_store() -> None:
    body = event_body("1-0", {"service": "billing", "old_state": "fresh",
                              "new_state": "stale", "diagnosis": "check_failed",
                              "reason": f"status error: check {EVIL} & @channel [x](http://e)\n"
                                        "\x1b[31m"}, "https://dash.example.com/")
    text = text_line(body)
    assert "<!channel>" not in text and "<http://evil" not in text
    assert "&lt;!channel&gt; &lt;http://evil.example|click&gt;" in text
    assert " &amp; @\u200bchannel [x]\u200b(http://e)\\n\\x1b[31m" in text
    assert text.endswith(" <https://dash.example.com/|dashboard>")  # the operator's link works
    assert "\n" not in text and "\x1b" not in text


def test_slack_text_of_an_entry_and_a_diagnosis_is_escaped_too() -> None:
    entry = text_line(event_body("1-0", {"service": "s", "entry": "<!here> & co",
                                         "old_state": "ok", "new_state": "failed",
                                         "reason": "<b>"}, None))
    assert "'&lt;!here&gt; &amp; co'" in entry and entry.endswith(": &lt;b&gt;")
    diagnosis = text_line(event_body("1-0", {"kind": "diagnosis", "service": "s",
                                             "old_state": "stale", "new_state": "stale",
                                             "old_diagnosis": "beat_or_broker",
                                             "diagnosis": "broker_down",
                                             "reason": "refused: <!everyone>"}, None))
    assert diagnosis.endswith("beat_or_broker -> broker_down: refused: &lt;!everyone&gt;")


def test_slack_escape_is_plain_for_plain_text() -> None:
    assert slack_escape("billing fresh -> stale") == "billing fresh -&gt; stale"
    assert slack_escape(None) == "" and slack_escape(42) == "42"


def test_the_json_body_is_not_escaped() -> None:
    body = render("json", event_body("1-0", {"service": "s", "old_state": "fresh",
                                              "new_state": "stale", "reason": EVIL}, None))
    assert body["reason"] == EVIL  # JSON receivers get the text as it is, JSON-quoted


# -- outbox entries checked ------------------------------------------------------------------


GOOD = {"kind": "transition", "service": "billing", "old_state": "unknown",
        "new_state": "stale", "diagnosis": "no_consumer", "reason": "why", "age_s": "31.500",
        "seq": "4711", "since_ms": 1795784701120, "seen_ms": 1795784701120, "incident": ""}


@pytest.mark.parametrize(("change", "problem"), [
    ({"service": "pay\nments"}, "service 'pay\\nments' is not a service name"),
    ({"service": "a" * 65}, "is not a service name"),
    ({"service": 5}, "service 5 is not a service name"),
    ({"kind": "page"}, "kind 'page' is unknown"),
    ({"new_state": "pwned"}, "new_state 'pwned' is not a state"),
    ({"new_state": "unknown"}, "new_state 'unknown' is not a state"),
    ({"old_state": "ok"}, "old_state 'ok' is not a state"),
    ({"diagnosis": "re-login"}, "diagnosis 're-login' is not a diagnosis"),
    ({"old_diagnosis": "x"}, "old_diagnosis 'x' is not a diagnosis"),
    ({"reason": "x" * 301}, "reason is not text of at most 300 characters"),
    ({"reason": ["x"]}, "reason is not text"),
    ({"seq": "1; rm"}, "seq '1; rm' is not a number"),
    ({"age_s": {}}, "age_s {} is not a number"),
    ({"incident": "x"}, "incident 'x' is not a stream id"),
    ({"entry": "a\nb", "new_state": "failed", "old_state": "ok"},
     "entry 'a\\nb': an entry name can't hold control characters"),
    ({"entry": "nightly"}, "new_state 'stale' is not a state"),  # entry states for entries
])
def test_an_entry_a_monitor_would_not_write_has_a_problem(change: dict[str, Any],
                                                          problem: str) -> None:
    found = event_problem({**GOOD, **change})
    assert found is not None and problem in found, found
    assert "\n" not in found


def test_what_the_monitors_write_has_no_problem() -> None:
    """Every notification the real scripts queue passes the check: services (transitions
    and diagnoses) and beat entries."""
    client = fakeredis.FakeRedis()
    publish(client, "billing", interval_s=10)
    record(client, KEYS, [read_heartbeat(client, "billing")], monitor_id="m")
    for age in (16, 40):
        backdate(client, "billing", age)
        record(client, KEYS, [read_heartbeat(client, "billing")], monitor_id="m")
    publish(client, "billing", interval_s=10, status="error",
            checks={"db": {"status": "error"}})
    record(client, KEYS, [read_heartbeat(client, "billing")], monitor_id="m")
    events = [json.loads(f[b"event"]) for _, f in client.xrange(KEYS.outbox)]
    assert len(events) >= 2
    assert [event_problem(e) for e in events] == [None] * len(events)
    entry = {"kind": "transition", "service": "billing", "entry": "nightly export",
             "old_state": "unknown", "new_state": "failed", "diagnosis": "task_failed",
             "reason": "raised", "since_ms": 1, "seen_ms": 2, "incident": "1-0"}
    assert event_problem(entry) is None


HOOK = parse_webhooks("https://hooks.example.com/T/SECRET")[0]


def test_a_forged_entry_is_dropped_with_one_escaped_line_and_the_cursor_moves_past(
        caplog: pytest.LogCaptureFixture) -> None:
    client = fakeredis.FakeRedis()
    posted: list[dict[str, Any]] = []

    def poster(url: str, data: bytes, timeout_s: float) -> int:
        posted.append(json.loads(data))
        return 200

    d = Delivery(client, KEYS, HOOK, owner="m1", fmt="slack", dashboard_url=None,
                 poster=poster)
    d.start_cursor()
    forged = client.xadd(KEYS.outbox, {"event": json.dumps(
        {**GOOD, "service": "payments\n2026-12-01 INFO webhook: all good"})}).decode()
    big = client.xadd(KEYS.outbox, {"event": "x" * 9000}).decode()
    good = client.xadd(KEYS.outbox, {"event": json.dumps(GOOD)}).decode()
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.webhooks")
    d.step()
    assert len(posted) == 1 and "billing unknown -> stale" in posted[0]["text"]
    assert as_text(client.get(KEYS.webhook_cursor(HOOK.id))) == good
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (f"webhook {HOOK.shown}: outbox entry {forged} dropped, not a "
                        "monitor's: service 'payments\\n2026-12-01 INFO webhook: all go...' "
                        "is not a service name")
    assert lines[1] == f"webhook {HOOK.shown}: outbox entry {big} is not JSON; skipped"
    assert all("\n" not in line for line in lines) and len(lines) == 3


# -- the POST: no redirect, one deadline -----------------------------------------------------


class _Server:
    """A loopback HTTP server answering with ``answer(handler)``; records each request."""

    def __init__(self, answer: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server.requests.append({"path": self.path, "method": self.command,
                                        "authorization": self.headers.get("Authorization")})
                answer(self)

            def do_GET(self) -> None:
                self.do_POST()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    made: list[_Server] = []
    yield made
    for server in made:
        server.close()


def _redirect_to(location: str) -> Any:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_no_credential_leaves_the_origin(
        servers: list[_Server], status: int) -> None:
    other = _Server(lambda h: (h.send_response(200), h.send_header("Content-Length", "0"),
                               h.end_headers()))
    servers.append(other)

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        handler.send_response(status)
        handler.send_header("Location", other.origin + "/internal/admin")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    first = _Server(answer)
    servers.append(first)
    url = first.origin.replace("http://", "http://user:hunter2@") + "/hook"
    assert post(url, b"{}", 5) == status
    assert other.requests == []
    assert first.requests[0]["authorization"] is not None


def test_a_redirect_is_final_dropped_with_one_line(servers: list[_Server],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    first = _Server(_redirect_to("http://127.0.0.1:9/internal/admin"))
    servers.append(first)
    (hook,) = parse_webhooks(first.origin.replace("http://", "http://u:p@") + "/hook")
    client = fakeredis.FakeRedis()
    d = Delivery(client, KEYS, hook, owner="m1", fmt="json", dashboard_url=None,
                 backoff_s=(0.01,))
    d.start_cursor()
    entry = client.xadd(KEYS.outbox, {"event": json.dumps(GOOD)}).decode()
    caplog.set_level(logging.INFO, logger="petsage_heartbeat.webhooks")
    d.step()
    assert len(first.requests) == 1 and d.delivered == 0
    assert as_text(client.get(KEYS.webhook_cursor(hook.id))) == entry
    assert [r.getMessage() for r in caplog.records] == [
        f"webhook {hook.shown}: dropped billing unknown -> stale: the receiver refused it "
        "(HTTP 302, a redirect: not followed)"]


def _trickle(handler: BaseHTTPRequestHandler) -> None:
    handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
    try:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):  # a header byte every 50 ms: each read well within a timeout
            handler.wfile.write(b"X")
            handler.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def test_a_trickling_receiver_is_cut_at_the_deadline(servers: list[_Server]) -> None:
    slow = _Server(_trickle)
    servers.append(slow)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no answer within 0\.6 s"):
        post(slow.origin + "/hook", b"{}", 0.6)
    # cut at 0.6 s, not after the trickle's 10 s (the upper bound leaves a busy machine room)
    assert 0.55 < time.monotonic() - started < 5.0


def test_a_receiver_that_never_answers_is_cut_at_the_deadline() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            post(f"http://127.0.0.1:{listener.getsockname()[1]}/hook", b"{}", 0.4)
        assert time.monotonic() - started < 5.0  # cut at 0.4 s; uncut, it never ends
    finally:
        listener.close()


def test_the_post_deadline_is_within_half_the_lease() -> None:
    assert POST_TIMEOUT_S <= LEASE_S / 2


def test_a_scheme_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        post("ftp://127.0.0.1/x", b"{}", 1)


# -- lines for people ------------------------------------------------------------------------


def test_lines_for_people_escape_checks_and_reasons() -> None:
    client = fakeredis.FakeRedis()
    publish(client, "billing", interval_s=10, status="error",
            checks={"db\x1b[2J\nOK - all": {"status": "error"}})
    report = read_heartbeat(client, "billing")
    for line in (nagios_line(report, "silenced\n: x"), heartbeat_line(report),
                 "  ".join(table_row(report)),
                 transition_line({"time": "T", "service": "billing", "old_state": "fresh",
                                  "new_state": "stale", "reason": report.reason})):
        assert "\x1b" not in line and "\n" not in line, line
    assert "db\\x1b[2J\\nOK - all" in table_row(report)[-1]
    assert escape("a\u202eb\tc") == "a\\u202eb\\tc" and escape("plain") == "plain"


# -- never seen fresh ------------------------------------------------------------------------


def test_a_zadd_of_300_names_sends_nothing_and_their_records_go_within_an_hour() -> None:
    client = fakeredis.FakeRedis()
    names = [f"junk-{i}" for i in range(300)]
    client.zadd(KEYS.index, dict.fromkeys(names, 1))
    for _ in range(3):
        record(client, KEYS, [read_heartbeat(client, n) for n in names], monitor_id="m")
    assert client.xlen(KEYS.outbox) == 0
    assert all(0 < client.pttl(KEYS.observed(n)) <= 3_600_000 for n in names[:20])


# -- monitor --webhook from a file or a variable ---------------------------------------------


def test_a_webhook_from_a_file_or_a_variable(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://hooks.example.com/services/T/B/SECRET"
    path = tmp_path / "hook"
    path.write_text(url + "\nhttps://other.example.com/x\n")
    assert webhook_value(f"@{path}") == (url + "\nhttps://other.example.com/x\n",
                                         f"--webhook @{path}")
    monkeypatch.setenv("SLACK_HOOK", url)
    assert webhook_value("SLACK_HOOK") == (url, "--webhook SLACK_HOOK")
    assert webhook_value(url) == (url, "--webhook")
    for bad, said in ((f"@{tmp_path}/nope", "can't be read"), ("NOT_SET_HERE", "no such")):
        with pytest.raises(ConfigError, match=said) as caught:
            webhook_value(bad)
        assert "SECRET" not in str(caught.value)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="holds no URL"):
        webhook_value(f"@{tmp_path}/empty")


# -- watch --exec hooks ----------------------------------------------------------------------


class _Spawner:
    def __init__(self) -> None:
        self.runs: list[tuple[dict[str, str], _Proc]] = []

    def __call__(self, command: str, env: dict[str, str]) -> _Proc:
        proc = _Proc()
        self.runs.append((env, proc))
        return proc

    def finish(self) -> None:
        for _, proc in self.runs:
            proc.done = True


def _event(old: str, new: str, service: str = "petsage") -> dict[str, Any]:
    return {"service": service, "old_state": old, "new_state": new, "reason": "r"}


def test_hooks_run_one_at_a_time_at_most_one_a_second_with_the_latest_state() -> None:
    now = [0.0]
    spawn = _Spawner()
    hooks = Hooks("true", spawn=spawn, clock=lambda: now[0])
    states = ["fresh", "stale"]
    for i in range(100):  # 100 flips within 2 s, the first hook finishing at once
        hooks.add("petsage", _event(states[i % 2], states[(i + 1) % 2]))
        spawn.finish()
        now[0] += 0.02
    for _ in range(3):
        now[0] += 1.0
        hooks.pump()
        spawn.finish()
    told = [(env["PETSAGE_OLD_STATE"], env["PETSAGE_NEW_STATE"]) for env, _ in spawn.runs]
    assert 2 <= len(told) <= 4 and told[0] == ("fresh", "stale")
    assert told[-1][1] == "fresh"  # the state now: the 100th flip ends fresh
    for (_, before), (after, _) in itertools.pairwise(told):
        assert before == after  # each hook starts where the last one left the state
    assert not hooks.waiting


def test_a_hook_waits_for_the_one_running() -> None:
    now = [0.0]
    spawn = _Spawner()
    hooks = Hooks("true", spawn=spawn, clock=lambda: now[0])
    hooks.add("a", _event("fresh", "stale", "a"))
    hooks.add("b", _event("fresh", "stale", "b"))
    now[0] = 10.0
    hooks.pump()
    assert len(spawn.runs) == 1  # still running
    spawn.finish()
    hooks.pump()
    assert [env["PETSAGE_SERVICE"] for env, _ in spawn.runs] == ["a", "b"]


def test_a_flip_and_back_while_waiting_runs_nothing() -> None:
    now = [0.0]
    spawn = _Spawner()
    hooks = Hooks("true", spawn=spawn, clock=lambda: now[0])
    hooks.add("a", _event("fresh", "stale", "a"))  # runs
    hooks.add("a", _event("stale", "fresh", "a"))
    hooks.add("a", _event("fresh", "stale", "a"))
    hooks.add("a", _event("stale", "fresh", "a"))  # back where the hook last left it
    spawn.finish()
    now[0] = 5.0
    hooks.pump()
    assert len(spawn.runs) == 2
    assert spawn.runs[1][0]["PETSAGE_NEW_STATE"] == "fresh"
    assert spawn.runs[1][0]["PETSAGE_OLD_STATE"] == "stale"


def test_a_hook_gets_a_minimal_environment() -> None:
    env = hook_env(_event("fresh", "stale"), {
        "PATH": "/usr/bin", "HOME": "/home/op", "LANG": "C.UTF-8",
        "HEARTBEAT_REDIS_URL": "redis://:pw@db/0", "CELERY_BROKER_URL": "redis://:pw@db/0",
        "AWS_SECRET_ACCESS_KEY": "x", "PETSAGE_HOOK_LOG": "/tmp/log",
        "PETSAGE_READER_URL": "redis://:pw@db/0", "PETSAGE_API_TOKEN": "t"})
    assert env == {"PATH": "/usr/bin", "HOME": "/home/op", "LANG": "C.UTF-8",
                   "PETSAGE_HOOK_LOG": "/tmp/log", "PETSAGE_ENTRY": "",
                   "PETSAGE_SERVICE": "petsage", "PETSAGE_OLD_STATE": "fresh",
                   "PETSAGE_NEW_STATE": "stale", "PETSAGE_REASON": "r"}
    assert "PATH" in hook_env(_event("a", "b"), {})
