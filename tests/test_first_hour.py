"""A new user's first hour: every surface tells the truth (CLI lines, exit codes, help).

Against real redis-server processes and the real CLI, as a user would run it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml

from tests.support.helpers import (
    INTERVAL_S,
    REPO,
    STARTUP_S,
    Proc,
    RedisServer,
    celery_argv,
    cli_argv,
    heartbeat_env,
    wait_for,
    with_headroom,
)
from tests.support.processes import run as run_process
from tests.support.processes import spawn, stop
from worker import State, read_heartbeat
from worker.core.states import Thresholds
from worker.read.diagnosis import diagnose


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_process(cli_argv(*args), env=env or heartbeat_env("redis://127.0.0.1:1/0"),
                       capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("args", [
    ("check", "--timeout", "abc"), ("check", "--bogus"), ("check", "--late-after"),
    ("check", "extra-word"), ("status", "--bogus"), ("status", "--timeout", "x"),
    ("status", "--all", "--service", "petsage"),
])
def test_probe_usage_errors_are_one_unknown_line_and_exit_3(args: tuple[str, ...]) -> None:
    done = _cli(*args)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.count("\n") == 1 and done.stderr == ""
    assert done.stdout.startswith(f"UNKNOWN - petsage-heartbeat: {args[0]}: ")
    assert "usage:" not in done.stdout and f"petsage-heartbeat {args[0]} --help" in done.stdout


@pytest.mark.parametrize("args", [
    ("watch", "--bogus"), ("watch", "--poll", "abc"), ("serve", "--port", "x"),
    ("serve", "--bogus"), ("run", "--loglevel", "LOUD"), ("nonsense",), (),
])
def test_other_usage_errors_are_one_line_on_stderr_and_exit_2(args: tuple[str, ...]) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("petsage-heartbeat: ") and "usage:" not in done.stderr


def test_status_all_on_an_empty_index_says_no_service_has_published(
        redis_server: RedisServer, real: redis.Redis) -> None:
    env = heartbeat_env(redis_server.url)
    done = _cli("status", "--all", env=env)
    assert done.returncode == 2, done.stdout
    assert done.stdout == "no service has published a heartbeat under this prefix\n"
    as_json = _cli("status", "--all", "--json", env=env)
    assert as_json.returncode == 2 and as_json.stdout == "[]\n"


def test_serve_refuses_an_empty_host_instead_of_every_interface(
        redis_server: RedisServer) -> None:
    for host in ("", " ", "a b", "x" * 300):
        done = _cli("serve", "--host", host, "--port", "1", env=heartbeat_env(redis_server.url))
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "--host" in done.stderr
        assert "accepted" in done.stderr


def _probe_commands() -> list[str]:
    commands = []
    for path in sorted((REPO / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe in container:
                        argv = container[probe]["exec"]["command"]
                        if argv[:2] == ["sh", "-c"]:  # the reader's URL set first (see
                            # docs/kubernetes.md#probes): the docs show the command it runs
                            commands.append(argv[2].rpartition("exec ")[2])
                        else:
                            commands.append(" ".join(argv))
    return commands


def _documentation() -> str:
    return "\n".join(p.read_text() for p in [REPO / "README.md",
                                             *sorted((REPO / "docs").glob("*.md"))])


def test_every_probe_in_the_manifests_is_the_one_the_docs_show() -> None:
    commands = _probe_commands()
    assert len(commands) >= 4
    docs = " ".join(_documentation().split())
    for command in commands:
        assert command in docs, f"{command!r} is not in the README or docs"


def test_manifests_name_only_files_that_exist() -> None:
    for path in (REPO / "deploy" / "kubernetes").glob("*.yaml"):
        for name in re.findall(r"[\w./-]+\.ya?ml", path.read_text()):
            assert (path.parent / name).exists(), f"{path.name} refers to missing {name}"


def test_no_consumer_never_says_zero_queued_next_to_no_worker_ran_it() -> None:
    now_ms = 1_000_000
    payload = {"status": "ok", "interval_s": 0.5, "stale_after_s": 1.5, "seq": 3,
               "ts_ms": now_ms - 1000, "queue_lag_ms": 1.0, "duration_ms": 1.0}
    marker = {"published_at_ms": now_ms - 100, "next_due_ms": now_ms + 400, "seq": 9,
              "queue_depth": 0}
    diagnosis, why = diagnose(State.LATE, now_ms=now_ms, age_s=1.0, payload=payload,
                              marker=marker, thresholds=Thresholds(0.75, 1.5))
    assert diagnosis == "no_consumer"
    assert not re.search(r"\b0 heartbeat\(s\) queued", why) and "taken from the queue" in why
    marker["queue_depth"] = 4
    _, why = diagnose(State.LATE, now_ms=now_ms, age_s=1.0, payload=payload, marker=marker,
                      thresholds=Thresholds(0.75, 1.5))
    assert "4 heartbeat(s) queued" in why and "no worker ran it" in why


@pytest.mark.e2e
def test_a_stopping_worker_is_never_diagnosed_with_zero_queued(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    env = heartbeat_env(own_redis.url)
    client = own_redis.client()
    procs.append(Proc(celery_argv("beat"), env, tmp_path, "beat"))
    worker = Proc(celery_argv("worker"), env, tmp_path, "worker")
    procs.append(worker)
    wait_for(lambda: read_heartbeat(client, "petsage").state is State.FRESH, STARTUP_S,
             what="fresh")
    worker.stop(signal.SIGTERM)
    reasons = []
    # Diagnosed once late (1.5 intervals): watched for the stale threshold plus headroom.
    deadline = time.monotonic() + with_headroom(3 * INTERVAL_S)
    while time.monotonic() < deadline:
        report = read_heartbeat(client, "petsage")
        if report.diagnosis == "no_consumer":
            reasons.append(report.reason)
        time.sleep(0.02)
    assert reasons, "the stopped worker was never diagnosed no_consumer"
    # "10 heartbeat(s) queued" is right; only a count of exactly zero is wrong
    assert not [r for r in reasons if re.search(r"\b0 heartbeat\(s\) queued", r)], reasons


def _help(command: str) -> str:
    done = _cli(command, "--help")
    assert done.returncode == 0
    return done.stdout


def test_help_teaches_each_command() -> None:
    commands = ("run", "check", "status", "watch", "serve", "monitor", "silence", "unsilence",
                "forget")
    for command in commands:
        text = _help(command)
        assert "examples:" in text and f"petsage-heartbeat {command}" in text.split("examples:")[1]
        assert "exit codes" in text, command  # the README: every --help gives its exit codes
    for command in ("check", "status", "watch", "serve"):
        assert "HEARTBEAT_REDIS_URL" in _help(command) and "HEARTBEAT_KEY_PREFIX" in _help(command)
    for command in ("check", "status"):
        text = _help(command)
        assert all(f"{code} " in text for code in ("0 OK", "1 WARNING", "2 CRITICAL", "3 UNKNOWN"))


def test_watch_help_readme_and_hook_agree_on_the_petsage_variables(
        redis_server: RedisServer, real: redis.Redis, tmp_path: Path) -> None:
    in_help = set(re.findall(r"PETSAGE_[A-Z_]+", _help("watch")))
    in_docs = set(re.findall(r"PETSAGE_[A-Z_]+", _documentation()))
    out = tmp_path / "env.txt"
    proc = spawn(cli_argv("watch", "--exec", f"env | grep ^PETSAGE_ | cut -d= -f1 > {out}"),
                 env=heartbeat_env(redis_server.url), stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.exists() and out.read_text().strip(), 20, what="the hook ran")
    finally:
        stop(proc, signal.SIGINT, timeout_s=10)
    set_by_hook = set(out.read_text().split())
    assert in_help == set_by_hook, (in_help, set_by_hook)
    assert set_by_hook <= in_docs, set_by_hook - in_docs
