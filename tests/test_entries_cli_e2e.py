"""The entries' command line against real processes: ``check --entry``, ``status --entries``
and ``watch --entries`` as subprocesses, reading what real ``celery beat`` and ``celery
worker`` processes of ``tests/sample_app/entries_app.py`` recorded in a real redis-server.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.entries_app import STARTUP_S, app_env, start_beat, start_worker
from tests.support.helpers import Proc, RedisServer, cli_argv, heartbeat_env, wait_for
from tests.support.processes import run as run_process
from worker.core.entries import EntryState
from worker.read.entries import read_entries

pytestmark = pytest.mark.e2e


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = heartbeat_env(url)
    return run_process(cli_argv(*args, "--redis", url), env=env, capture_output=True,
                       text=True, timeout=60, check=False)


def test_check_status_and_watch_of_the_sample_apps_entries(
        own_redis: RedisServer, procs: list[Proc], tmp_path: Path) -> None:
    url = own_redis.url
    env = app_env(url)
    client = own_redis.client()
    watch = Proc(cli_argv("watch", "--entries", "--json", "--poll", "0.2", "--redis", url),
                 heartbeat_env(url), tmp_path, "watch")
    procs += [watch, start_beat(env, tmp_path), start_worker(env, tmp_path)]

    def states() -> dict[str, EntryState]:
        return {e.name: e.state for e in read_entries(client, "petsage").entries}

    wait_for(lambda: states().get("raises") is EntryState.FAILED
             and states().get("every second") is EntryState.OK, STARTUP_S,
             what="'raises' failed and 'every second' ok")

    failed = _cli(url, "check", "--entry", "raises")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert failed.stdout.startswith('CRITICAL - petsage entry "raises" failed: the last run '), (
        failed.stdout)
    assert ("ValueError the nightly export failed: password=*** at db.example [task_failed]"
            in failed.stdout)
    assert failed.stdout.count("\n") == 1 and failed.stderr == ""

    ok = _cli(url, "check", "--entry", "every second")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith('OK - petsage entry "every second" '), ok.stdout
    assert " | last_success=" in ok.stdout and " queue_wait=" in ok.stdout
    data = json.loads(_cli(url, "check", "--entry", "every second", "--json").stdout)
    assert data["service"] == "petsage" and data["exit_code"] == 0
    assert data["schedule"] == "every 1s" and data["queue"] == "celery"

    for name in ("a\nb", "x" * 201, ""):
        hostile = _cli(url, "check", "--entry", name)
        assert hostile.returncode == 2, hostile.stdout + hostile.stderr
        assert hostile.stdout.startswith("CRITICAL - petsage-heartbeat: --entry "), hostile.stdout
        assert hostile.stdout.count("\n") == 1 and hostile.stderr == ""
        assert "Traceback" not in hostile.stdout

    unknown = _cli(url, "check", "--entry", "nightly export")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert unknown.stdout == (
        'CRITICAL - petsage entry "nightly export" missing: no entry of that name is watched '
        'for service petsage; 6 entries are: "every second", "nobody consumes", "raises", '
        '"retries twice", "sleeps too long" and 1 more\n')

    status = _cli(url, "status", "--entries")
    assert status.returncode == 2, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["ENTRY", "STATE", "DIAGNOSIS", "LAST_SUCCESS", "NEXT_DUE",
                                "DURATION", "QUEUE_WAIT", "REASON"]
    assert len(lines) == 7
    raises = next(line for line in lines if line.startswith("raises "))
    assert raises.split()[1:3] == ["failed", "task_failed"], raises
    assert "the last run raised" in raises
    every = next(line for line in lines if line.startswith("every second "))
    assert every.split()[2] in ("ok", "running", "pending"), every
    listed = json.loads(_cli(url, "status", "--entries", "--json").stdout)
    assert sorted(item["name"] for item in listed) == sorted(states())
    assert [item["exit_code"] for item in listed] == sorted(
        (item["exit_code"] for item in listed), reverse=True)

    def watched(name: str, state: str) -> bool:
        return any(json.loads(line).get("entry") == name and json.loads(line)["new_state"]
                   == state for line in watch.output().splitlines() if line.startswith("{"))

    wait_for(lambda: watched("raises", "failed") and watched("every second", "ok"), 20,
             what="watch --entries reporting 'raises' failed and 'every second' ok")
    assert watch.stop(signal.SIGTERM, timeout_s=10) == 0
    assert "Traceback" not in watch.output()
