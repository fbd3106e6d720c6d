"""Every shell command that README.md and docs/*.md show is run, or accounted for.

Which lines are commands
    A line of a fenced code block labelled ``sh``, ``bash``, ``console`` or not labelled at
    all, that starts (after indentation and an optional ``$ `` prompt) with
    ``petsage-heartbeat``, ``celery``, ``python3``, ``.venv/bin/``, ``curl``, ``redis-cli``,
    ``promtool``, ``pip``, ``kubectl`` or ``docker``, or with a ``$ `` prompt. In a
    ``console`` block only prompted lines count: the rest is their output. Blocks with any
    other label hold no commands: ``text`` is for output and usage synopses, and
    ``python``, ``yaml`` and ``json`` are not shell. Nor are other lines (``export ...``,
    comments). A line ending in a backslash continues on the next. A command's text is
    normalised: the prompt and a trailing ``# comment`` are dropped and, outside quotes,
    runs of blanks become one space.

Where each command is accounted for
    Each documented command is a key of exactly one of three dicts:

    ``RUN``
        run by this file, verbatim through ``sh``, in an empty working directory (with
        ``deploy/`` linked into it), against the session's throwaway redis-server holding
        one healthy fleet (``petsage`` and ``billing`` fresh, beat's marker and worker node
        ``heartbeat@pod-a`` of ``petsage`` just written, ``POD_NAME=pod-a``). The commands
        are pointed at the test's servers without changing their text:
        ``HEARTBEAT_REDIS_URL`` is set, and ``petsage-heartbeat``, ``redis-cli`` and
        ``curl`` are wrappers first on the PATH: the CLI of this checkout, ``redis-cli -p
        PORT`` and ``curl --connect-to`` the test's ``serve`` for ``127.0.0.1:9808``. A
        long-running command runs as ``exec COMMAND`` until its output shows what the docs
        promise, then gets Ctrl-C (SIGINT) and must exit 0.
    ``COVERED``
        the test id of an existing test that runs the command (or the same command with
        test flags such as a free port), and why that counts.
    ``NOT_RUNNABLE``
        why the command can't run on one machine inside the suite.

    A key that the docs no longer show fails as well, and so does a ``COVERED`` test id
    that names no ``def test_...`` in its file.

Starts redis-server (the session's, through ``redis_server``, so ``tests/conftest.py`` marks
those tests ``servers``) and ``serve``, never celery processes: not an ``e2e`` module.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.helpers import (
    REPO,
    STARTUP_S,
    Proc,
    RedisServer,
    cli_argv,
    free_port,
    heartbeat_env,
    require_binary,
    wait_for,
)
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from worker.core.names import Keys
from worker.publish.beat_marker import BeatMarker
from worker.publish.store import HeartbeatStore

COMMAND_STARTS = ("petsage-heartbeat", "celery", "python3", ".venv/bin/", "curl", "redis-cli",
                  "promtool", "pip", "kubectl", "docker")
SHELL_LABELS = ("sh", "bash", "console", "")
FENCE = re.compile(r"^\s*```\s*([\w+-]*)")

README_COMMAND_1 = (".ci/first_run.py", r"^python3 -m venv \.venv && .*petsage-heartbeat run$")
README_COMMAND_2 = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
)


@dataclass(frozen=True)
class Expect:
    """What a command run here must do."""

    output: str  #: a regex searched (MULTILINE) in its standard output and error together
    exit_code: int = 0
    long_running: bool = False  #: runs until ``output`` matches, then gets SIGINT
    writes: tuple[str, str] | None = None  #: (file in the working directory, regex on it)
    needs_serve: bool = False  #: curl: a ``serve`` of this module's answers 127.0.0.1:9808


HOOK = ("petsage-heartbeat watch --exec 'echo \"$PETSAGE_TIME $PETSAGE_SERVICE "
        "$PETSAGE_OLD_STATE -> $PETSAGE_NEW_STATE\" >> transitions.log'")

RUN: dict[str, Expect] = {
    "petsage-heartbeat --help": Expect(r"^usage: petsage-heartbeat .*COMMAND"),
    "petsage-heartbeat check --help": Expect(r"^exit codes .*\n  0 OK (?s:.*)^examples:"),
    "petsage-heartbeat check": Expect(r"^OK - petsage heartbeat [\d.]+s old, seq 1 \| age="),
    "petsage-heartbeat check --service billing --json": Expect(
        r'^\{"service": "billing", "state": "fresh", "exit_code": 0, .*"heartbeat": \{'),
    "petsage-heartbeat check --beat": Expect(r"^OK - petsage beat fresh: last published"),
    "petsage-heartbeat check --node pod-a": Expect(
        r"^OK - petsage node pod-a \(heartbeat@pod-a\) fresh: last node heartbeat"),
    "petsage-heartbeat check --timeout 2": Expect(r"^OK - petsage heartbeat [\d.]+s old"),
    'petsage-heartbeat check --liveness --node "$POD_NAME" --stale-after 120 --timeout 2':
        Expect(r"^OK - petsage node pod-a \(heartbeat@pod-a\) fresh"),
    "petsage-heartbeat check --liveness --beat --stale-after 120 --timeout 2":
        Expect(r"^OK - petsage beat fresh"),
    "petsage-heartbeat status": Expect(
        r"^SERVICE +STATE +DIAGNOSIS +AGE +SEQ +WORKER +NODES +LAG +STATUS +REASON\n"
        r"petsage +fresh +- .* 1/1 .*last heartbeat [\d.]+s ago\n"
        r"uptime: unknown, no monitor has judged this service yet .*\n\Z"),
    "petsage-heartbeat status --all": Expect(  # equally fresh: either may come first
        r"\ASERVICE .*\n(?=(?s:.*)^billing +fresh )(?=(?s:.*)^petsage +fresh )"),
    "petsage-heartbeat status --all --json": Expect(
        r'\A\[(?=.*\{"service": ?"billing", ?"state": ?"fresh")'
        r'(?=.*\{"service": ?"petsage", ?"state": ?"fresh")'),
    "petsage-heartbeat watch --all": Expect(
        r"(?s)(?=.*^\S+ billing unknown -> fresh \(last heartbeat)"
        r"(?=.*^\S+ petsage unknown -> fresh \(last heartbeat)", long_running=True),
    HOOK: Expect(r"^\S+ petsage unknown -> fresh ", long_running=True,
                 writes=("transitions.log", r"^\d{4}-\d\d-\d\dT\S+ petsage unknown -> fresh$")),
    "redis-cli GET 'petsage:hb:{petsage}'": Expect(
        r'^\{.*"message":"PetSage system is alive and purring!".*\}$'),
    "redis-cli ZREM petsage:hb:index billing": Expect(r"^1$"),
    "python3 -c 'import zlib; print(zlib.crc32(b\"billing\") % 2048)'": Expect(r"^1194$"),
    "redis-cli HDEL 'petsage:hb:summary:{1194}' billing": Expect(r"^1$"),
    "curl -i http://127.0.0.1:9808/system/health": Expect(
        r'^HTTP/1\.1 200 OK(?s:.*)"message":"PetSage system is alive and purring!"'
        r'(?s:.*)"state":"fresh"', needs_serve=True),
    "curl -s http://127.0.0.1:9808/metrics | grep '^petsage_heartbeat_up'": Expect(
        r'\A(?=(?s:.*)^petsage_heartbeat_up\{service="billing"\} 1\.0$)'
        r'(?=(?s:.*)^petsage_heartbeat_up\{service="petsage"\} 1\.0$)(?:.*\n){2}\Z',
        needs_serve=True),
    "petsage-heartbeat monitor": Expect(r"judging every service under petsage:hb every [\d.]+ s",
                                        long_running=True),
    "petsage-heartbeat monitor --webhook https://hooks.example.com/petsage": Expect(
        r"webhooks: https://hooks\.example\.com \(json\)", long_running=True),
    "redis-cli XRANGE 'petsage:hb:{petsage}:incidents' - +": Expect(r"\A\s*\Z"),
    'petsage-heartbeat silence billing --for 2h --reason "database migration"': Expect(
        r"^billing silenced until \S+ \(7200 s\): database migration;"),
    "petsage-heartbeat unsilence billing": Expect(r"^billing (unsilenced|was not silenced)"),
    'petsage-heartbeat silence billing --entry "nightly export" --for 1d --reason "known bug"':
        Expect(r"^petsage-heartbeat: entry 'nightly export' of 'billing' is not watched",
               exit_code=2),
    'petsage-heartbeat unsilence billing --entry "nightly export"': Expect(
        r"^petsage-heartbeat: entry 'nightly export' of 'billing' is not watched", exit_code=2),
    "petsage-heartbeat forget old-billing": Expect(
        r"^petsage-heartbeat: service 'old-billing' is not known to the store", exit_code=2),
    'petsage-heartbeat check --entry "nightly export"': Expect(
        r'^CRITICAL - petsage entry "nightly export" missing: no beat entry is watched for '
        r"service petsage \(", exit_code=2),
    "petsage-heartbeat status --entries": Expect(
        r"\Ano beat entry is watched for service petsage\n\Z", exit_code=2),
    "petsage-heartbeat status --all --entries --json": Expect(r"\A\[\]\n\Z", exit_code=2),
    "promtool check rules deploy/prometheus/alerts.yml": Expect(r"SUCCESS: 12 rules found"),
    "promtool test rules deploy/prometheus/alerts_test.yml": Expect(r"^  SUCCESS$"),
}

_E2E = "tests/test_e2e.py::test_pipeline_lands_goes_stale_when_the_worker_dies_and_recovers"
_OWN_APP = ("tests/test_deployments.py::"
            "test_the_heartbeat_inside_the_users_app_proves_its_workers")

COVERED: dict[str, tuple[str, str]] = {
    "celery -A worker beat": (
        _E2E, "tests.support.helpers.celery_argv('beat'): the same command, with a log level"),
    "celery -A worker worker -Q heartbeat.petsage --without-mingle --without-gossip": (
        _E2E, "tests.support.helpers.celery_argv('worker'): the same command, plus "
              "--concurrency 1, --hostname and a log level"),
    "celery -A worker inspect conf": (
        "tests/test_remote_control.py::"
        "test_inspect_conf_and_report_of_a_live_worker_show_no_secret",
        "the same command (plus --timeout) against a live worker on a password-protected "
        "Redis, with a webhook token: no secret in its answer"),
    "celery -A worker inspect report": (
        "tests/test_remote_control.py::"
        "test_inspect_conf_and_report_of_a_live_worker_show_no_secret",
        "the same command (plus --timeout), in the same test as inspect conf"),
    "celery -A worker worker -Q heartbeat.petsage --without-mingle --without-gossip -- "
    "worker_enable_remote_control=false": (
        "tests/test_remote_control.py::test_the_heartbeat_works_with_remote_control_off",
        "tests.support.helpers.celery_argv('worker', '--', "
        "'worker_enable_remote_control=false'): the same command, plus --concurrency 1, "
        "--hostname and a log level"),
    "celery -A petsage beat": (
        _OWN_APP, "the same command on tests/sample_app/petsage_app.py, an app with tasks of "
                  "its own that calls install_heartbeat()"),
    "celery -A petsage worker -Q celery,heartbeat.petsage": (
        _OWN_APP, "the same worker, on the sample app, with its queue and the heartbeat's"),
    "petsage-heartbeat watch --entries": (
        "tests/test_entries_cli_e2e.py::test_check_status_and_watch_of_the_sample_apps_entries",
        "the same command with --json, a short --poll and --redis, against real beat and "
        "worker processes of the sample app (the fleet here has no entries to report), "
        "stopped by SIGTERM"),
    ".venv/bin/python -m bench.run_all --tiny": (
        "tests/test_benchmarks.py::test_every_benchmark_runs_at_a_tiny_size_and_prints_its_table",
        "the same command, run to its end: exit 0, every benchmark's table printed"),
    "petsage-heartbeat serve": (
        "tests/test_serve.py::test_health_metrics_and_store_outage_over_http",
        "serve with --port on a free port (the default, 9808, may be taken); the curl "
        "commands here also run against such a serve"),
}

_BENCH = "a benchmark: minutes of load on a dedicated machine; its flags are checked here"
_KUBE = ("needs a Kubernetes cluster; tests/test_deploy.py and tests/test_pod_security.py "
         "check the manifests themselves")
_PRODUCTION = ("installs from the package index; .ci/first_run.py runs it in a fresh venv "
               "(the production install) and tests/test_lock.py checks the lock")

NOT_RUNNABLE: dict[str, str] = {
    "python3 -m venv .venv && .venv/bin/pip install -q '.[embedded]' && "
    ".venv/bin/petsage-heartbeat run":
        "creates a venv and installs from the package index; .ci/first_run.py runs it "
        "verbatim in a fresh copy of the checkout (see test_ci_runs_the_readme_commands)",
    README_COMMAND_2:
        "installs, then runs the whole suite, which can't run inside itself; .ci/run runs it "
        "verbatim (see test_ci_runs_the_readme_commands)",
    ".venv/bin/python -m pytest": "the whole test suite, which can't run inside itself",
    '.venv/bin/python -m pytest -m "not e2e"': "most of the test suite, inside itself",
    ".venv/bin/python -m pytest --fast": "the fast part of the test suite, inside itself",
    ".venv/bin/python -m pytest -p no:cacheprovider -q --timeout 900":
        "the whole test suite, which can't run inside itself",
    ".venv/bin/python -m bench.run_all": _BENCH,
    ".venv/bin/python -m bench.run_all --soak-seconds 600": _BENCH,
    ".venv/bin/python -m bench.probe_bench": _BENCH,
    ".venv/bin/python -m bench.memory_bench": _BENCH,
    ".venv/bin/python -m bench.soak --seconds 600": _BENCH,
    ".venv/bin/python -m bench.monitor_bench": _BENCH,
    ".venv/bin/python -m bench.fleet_bench --sizes 1000,10000,100000 --runs 7": _BENCH,
    ".venv/bin/python -m bench.fill --services 1000000 --redis redis://127.0.0.1:6379/0 "
    "--not-fresh 0.01": "a million services into a Redis on the default port: minutes of "
                        "load; tests/test_benchmarks.py fills 50 through the same command, "
                        "and its flags are checked here",
    ".venv/bin/python -m bench.mutation": "mutation testing: minutes of CPU, and it runs the "
                                          "suite inside itself; its flags are checked here",
    ".venv/bin/python -m bench.mutation --survivors": "mutation testing again, of what "
                                                      "survived; its flags are checked here",
    ".venv/bin/python -m bench.mutation --module worker/observe/delivery.py":
        "mutation testing of one module: minutes of CPU, the suite inside itself; its flags "
        "are checked here",
    ".venv/bin/python -m bench.lua_mutations": "runs parts of the suite inside itself; its "
                                               "flags are checked here",
    ".venv/bin/pip install -q -e '.[test,mutation]'": "installs from the package index into "
                                                      "the venv the suite runs in",
    "kubectl create secret generic petsage-heartbeat-beat --from-literal=CELERY_BROKER_URL="
    "'rediss://petsage-beat:BEAT_PASSWORD@redis.internal:6380/0'": _KUBE,
    "kubectl create secret generic petsage-heartbeat-worker --from-literal=CELERY_BROKER_URL="
    "'rediss://petsage-worker:WORKER_PASSWORD@redis.internal:6380/0'": _KUBE,
    "kubectl create secret generic petsage-heartbeat-monitor --from-literal=HEARTBEAT_REDIS_URL="
    "'rediss://petsage-monitor:MONITOR_PASSWORD@redis.internal:6380/0' "
    "--from-literal=HEARTBEAT_WEBHOOK_URLS='https://hooks.slack.com/services/T/B/SECRET' "
    "--from-literal=HEARTBEAT_DASHBOARD_URL='https://petsage.example.com/heartbeat/'": _KUBE,
    "kubectl create secret generic petsage-heartbeat-reader --from-literal=HEARTBEAT_REDIS_URL="
    "'rediss://petsage-reader:READER_PASSWORD@redis.internal:6380/0'": _KUBE,
    "kubectl apply -f deploy/kubernetes/": _KUBE,
    "pip install --require-hashes -r requirements/production.lock": _PRODUCTION,
    "pip install --no-deps .": _PRODUCTION,
    "python3 -m venv /tmp/pip-tools && /tmp/pip-tools/bin/pip install -q 'pip-tools>=7.4,<8'":
        "installs pip-tools from the package index into a throwaway venv",
    "/tmp/pip-tools/bin/pip-compile --allow-unsafe --generate-hashes --no-emit-find-links "
    "--no-emit-index-url --output-file=requirements/production.lock --strip-extras "
    "pyproject.toml": "resolves against the package index and rewrites the lock; "
                      "tests/test_lock.py checks it is the command in the lock's header",
}


# --- finding the commands ------------------------------------------------------------------

def _normalise(line: str) -> str:
    """Drop a trailing ``# comment`` and collapse blanks, both outside quotes only."""
    out: list[str] = []
    quote = ""
    for char in line.strip():
        if quote:
            out.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "#" and (not out or out[-1] == " "):
            break
        elif char.isspace():
            if out and out[-1] != " ":
                out.append(" ")
        else:
            out.append(char)
    return "".join(out).strip()


def _is_command(line: str, label: str) -> str | None:
    """The normalised command on ``line`` of a block labelled ``label``, or None."""
    text = line.strip()
    prompted = text.startswith("$ ")
    if prompted:
        text = text[2:]
    elif label == "console" or not text.startswith(COMMAND_STARTS):
        return None
    return _normalise(text) or None


def commands_in(markdown: str) -> list[tuple[int, str]]:
    """(line number, command) for every command in ``markdown``'s shell blocks."""
    found: list[tuple[int, str]] = []
    label: str | None = None  # None: outside a fenced block
    pending = ""  # a line ending in a backslash, waiting for the rest
    first = 0  # the number of the line a continued command starts on
    for number, raw in enumerate(markdown.splitlines(), start=1):
        fence = FENCE.match(raw)
        if fence is not None:
            label = None if label is not None else fence.group(1).lower()
            pending = ""
            continue
        if label is None or label not in SHELL_LABELS:
            continue
        if not pending:
            first = number
        line = pending + " " + raw.strip() if pending else raw
        pending = ""
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1]
            continue
        command = _is_command(line, label)
        if command is not None:
            found.append((first, command))
    return found


def documented_commands() -> dict[str, list[str]]:
    """Every documented command, with where it is shown (``path:line``)."""
    where: dict[str, list[str]] = {}
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, command in commands_in(path.read_text(encoding="utf-8")):
            where.setdefault(command, []).append(f"{path.relative_to(REPO)}:{number}")
    return where


def test_the_rule_picks_commands_and_leaves_output_and_synopses_alone() -> None:
    sample = "\n".join([
        "petsage-heartbeat check          (prose, not a block)",
        "```sh",
        "export CELERY_BROKER_URL=redis://x:6379/0",
        "petsage-heartbeat   check   --json     # a comment",
        "kubectl create secret generic s \\",
        "  --from-literal=A='b  #c'",
        "```",
        "```text",
        "petsage-heartbeat check [--json]",
        "```",
        "```console",
        "$ petsage-heartbeat status",
        "petsage-heartbeat: not a command, its output",
        "```",
        "```",
        "  $ echo hi",
        "```",
        "```python",
        "python3 = 'not shell'",
        "```",
    ])
    assert commands_in(sample) == [
        (4, "petsage-heartbeat check --json"),
        (5, "kubectl create secret generic s --from-literal=A='b  #c'"),
        (12, "petsage-heartbeat status"),
        (16, "echo hi"),
    ]


# --- the accounting ------------------------------------------------------------------------

HOMES = {"RUN": set(RUN), "COVERED": set(COVERED), "NOT_RUNNABLE": set(NOT_RUNNABLE)}


def test_every_documented_command_is_run_covered_or_not_runnable() -> None:
    documented = documented_commands()
    assert documented, "found no command in README.md or docs/*.md"
    accounted = set().union(*HOMES.values())
    unaccounted = {c: w for c, w in documented.items() if c not in accounted}
    assert not unaccounted, (
        "documented commands that this file neither runs (RUN) nor maps to a test (COVERED) "
        f"nor explains (NOT_RUNNABLE): {unaccounted}")


def test_every_entry_is_a_command_the_docs_still_show() -> None:
    stale = sorted(set().union(*HOMES.values()) - set(documented_commands()))
    assert not stale, f"entries for commands the docs no longer show: {stale}"


def test_no_command_has_two_homes() -> None:
    for first, first_keys in HOMES.items():
        for second, second_keys in HOMES.items():
            both = first_keys & second_keys if first < second else set()
            assert not both, f"in both {first} and {second}: {sorted(both)}"


def test_covered_commands_name_tests_that_exist() -> None:
    for command, (test_id, reason) in COVERED.items():
        path, _, name = test_id.partition("::")
        assert reason and name.startswith("test_"), (command, test_id)
        source = REPO / path
        assert source.is_file(), f"{command!r}: {path} does not exist"
        assert re.search(rf"^(?:async )?def {re.escape(name)}\(", source.read_text(),
                         re.MULTILINE), f"{command!r}: no def {name} in {path}"


def test_not_runnable_commands_say_why() -> None:
    for command, reason in NOT_RUNNABLE.items():
        assert len(reason.split()) >= 3, (command, reason)


def test_ci_runs_the_readme_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    script, pattern = README_COMMAND_1
    assert pattern in (REPO / script).read_text(), f"{script} no longer matches {pattern}"
    matches = re.findall(pattern, readme, re.MULTILINE)
    assert len(matches) == 1 and matches[0] in NOT_RUNNABLE, matches
    assert README_COMMAND_2 in readme.splitlines()
    assert README_COMMAND_2 in (REPO / ".ci" / "run").read_text().splitlines()


@pytest.mark.parametrize("command", sorted(c for c in NOT_RUNNABLE if " -m bench." in c))
def test_benchmark_commands_take_the_flags_shown(command: str) -> None:
    words = shlex.split(command)
    module = words[words.index("-m") + 1]
    done = run_process([sys.executable, "-m", module, "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for flag in (w for w in words if w.startswith("--")):
        assert flag in done.stdout, f"{module} --help does not offer {flag}"


# --- running the cheap ones ----------------------------------------------------------------

@pytest.fixture
def healthy_fleet(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The session's redis-server with one healthy fleet; emptied again afterwards."""
    client = redis_server.client()
    client.flushall()
    publish(client, "petsage")
    publish(client, "billing")
    keys = Keys()
    BeatMarker(client, keys, "petsage", interval_s=10, retention_s=3600).record_publish()
    HeartbeatStore(client, keys, retention_s=3600, history_len=100).record_node(
        "petsage", "heartbeat@pod-a", retention_s=600)
    yield client
    client.flushall()
    client.close()


def _wrapper(directory: Path, name: str, argv: list[str]) -> None:
    path = directory / name
    path.write_text(f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n')
    path.chmod(0o755)


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Path:
    """Wrappers that point the documented commands at the test's servers."""
    directory = tmp_path_factory.mktemp("bin")
    _wrapper(directory, "petsage-heartbeat", cli_argv())
    real_redis_cli = shutil.which("redis-cli")
    if real_redis_cli is not None:
        _wrapper(directory, "redis-cli", [real_redis_cli, "-p", str(redis_server.port)])
    return directory


@pytest.fixture(scope="module")
def serve_port(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
               bin_dir: Path) -> Iterator[int]:
    """A ``petsage-heartbeat serve`` that curl reaches for ``127.0.0.1:9808``."""
    curl = require_binary("curl")
    port = free_port()
    proc = Proc(cli_argv("serve", "--port", str(port)), heartbeat_env(redis_server.url),
                tmp_path_factory.mktemp("serve"), "serve")
    try:
        wait_for(lambda: _http_status(f"http://127.0.0.1:{port}/metrics") == 200, STARTUP_S,
                 what="serve answering")
        _wrapper(bin_dir, "curl", [curl, "--connect-to", f"127.0.0.1:9808:127.0.0.1:{port}"])
        yield port
    finally:
        (bin_dir / "curl").unlink(missing_ok=True)
        proc.stop(timeout_s=5)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _environment(redis_url: str, bin_dir: Path) -> dict[str, str]:
    env = heartbeat_env(redis_url, POD_NAME="pod-a")
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH")] if p)
    return env


@pytest.mark.parametrize("command", sorted(RUN))
def test_documented_command_does_what_the_docs_say(
        command: str, redis_server: RedisServer, bin_dir: Path, tmp_path: Path,
        request: pytest.FixtureRequest, healthy_fleet: redis.Redis) -> None:
    expect = RUN[command]
    program = shlex.split(command)[0]
    if program != "petsage-heartbeat":
        require_binary(program)
    if expect.needs_serve:
        request.getfixturevalue("serve_port")
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "deploy").symlink_to(REPO / "deploy")
    env = _environment(redis_server.url, bin_dir)

    if expect.long_running:
        output, code = _run_until(command, expect, env, workdir)
    else:
        done = run_process(["sh", "-c", command], env=env, cwd=workdir,
                           capture_output=True, text=True, timeout=60, check=False)
        output, code = done.stdout + done.stderr, done.returncode
    assert code == expect.exit_code, output
    assert "Traceback" not in output, output
    assert re.search(expect.output, output, re.MULTILINE), output
    if expect.writes is not None:
        name, pattern = expect.writes
        assert re.search(pattern, (workdir / name).read_text(), re.MULTILINE)


def _run_until(command: str, expect: Expect, env: dict[str, str],
               workdir: Path) -> tuple[str, int]:
    """Run a long-running command until it shows what it should, then stop it with SIGINT."""
    proc = Proc(["sh", "-c", f"exec {command}"], env, workdir, "long-running")

    def shown() -> bool:
        if not re.search(expect.output, proc.output(), re.MULTILINE):
            return False
        if expect.writes is None:
            return True
        written = workdir / expect.writes[0]
        return written.exists() and bool(
            re.search(expect.writes[1], written.read_text(), re.MULTILINE))

    try:
        wait_for(shown, 20, what=f"{command!r} to show what the docs say")
    finally:
        code = proc.stop(signal.SIGINT, timeout_s=10)
    return proc.output(), code
