"""The sample app's six beat entries through ``petsage-heartbeat serve``, on real processes:
``/metrics`` scraped over HTTP shows the failing entry's series (and passes
``promtool check metrics``), ``/api/entries`` lists the six, the dashboard shows them.

Real redis-server, real ``celery beat`` and ``celery worker`` of
``tests/sample_app/entries_app.py`` and a real ``serve`` process.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.entries_app import SIX, STARTUP_S, app_env, start_beat, start_worker
from tests.support.helpers import (
    Proc,
    RedisServer,
    cli_argv,
    free_port,
    heartbeat_env,
    require_binary,
    wait_for,
)
from tests.support.processes import run as run_process

pytestmark = pytest.mark.e2e


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _entries(base: str) -> dict[str, dict[str, Any]]:
    status, body = _get(base + "/api/entries?service=petsage")
    assert status == 200, body
    return {entry["name"]: entry for entry in json.loads(body)["entries"]}


def test_serve_shows_the_sample_app_s_entries(own_redis: RedisServer, procs: list[Proc],
                                              tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    env = app_env(own_redis.url)
    procs += [start_beat(env, tmp_path), start_worker(env, tmp_path)]
    port = free_port()
    procs.append(Proc(cli_argv("serve", "--port", str(port)), heartbeat_env(own_redis.url),
                      tmp_path, "serve"))
    base = f"http://127.0.0.1:{port}"

    wait_for(lambda: set(_entries(base)) == SIX if _get(base + "/metrics")[0] == 200
             else False, STARTUP_S, interval_s=0.2, what="/api/entries lists the six")
    wait_for(lambda: _entries(base)["raises"]["state"] == "failed", 30, interval_s=0.2,
             what="'raises' failed")
    entries = _entries(base)
    assert entries["raises"]["diagnosis"] == "task_failed"
    assert entries["raises"]["run"]["error_type"] == "ValueError"
    assert entries["nobody consumes"]["queue"] == "nobody"

    status, text = _get(base + "/metrics")
    assert status == 200
    check = run_process([promtool, "check", "metrics"], input=text, capture_output=True,
                        text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    raises = 'entry="raises",service="petsage"'
    assert f'petsage_entry_state{{{raises},state="failed"}} 1.0' in text
    assert f"petsage_entry_up{{{raises}}} 0.0" in text
    assert f'petsage_entry_diagnosis{{diagnosis="task_failed",{raises}}} 1.0' in text
    failed = re.search(r'^petsage_entry_runs_total\{entry="raises",outcome="failed",'
                       r'service="petsage"\} (\S+)$', text, re.M)
    assert failed is not None and float(failed.group(1)) >= 1
    assert "petsage_entry_read_up 1.0" in text and "petsage_entry_omitted 0.0" in text
    for name in SIX:
        assert f'petsage_entry_up{{entry="{name}",service="petsage"}} ' in text, name

    page = _get(base + "/")[1]
    for name in SIX:
        assert f'<tr data-entry="{name}" data-state=' in page, name
    assert re.search(r'<tr data-entry="raises" data-state="failed">', page)
