"""Run the README's command 1 as a new user would, where the test suite can't.

The suite's venv has the test extras, which hide a dependency the project forgot to
declare. This script copies the checkout to a temporary directory and there:

1. runs README command 1 verbatim (its own fresh venv, ``.[embedded]`` only) with a 1 s
   interval, waits for two heartbeat lines, stops it with SIGINT, and fails on a missing
   heartbeat, a traceback or a non-zero exit;
2. installs the project as production does (``pip install --require-hashes -r
   requirements/production.lock``, then ``pip install --no-deps .`` and ``pip check``) and runs
   ``celery -A worker beat``, ``celery -A worker worker`` and every CLI command against a
   real redis-server, failing on a traceback or an unexpected exit code.

Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COMMAND_1 = re.compile(r"^python3 -m venv \.venv && .*petsage-heartbeat run$", re.MULTILINE)
HEARTBEAT_LINE = re.compile(r"^heartbeat petsage seq=(\d+) fresh ", re.MULTILINE)
LOCK = "requirements/production.lock"
"""The production dependencies, pinned with their hashes (see docs/development.md)."""
INSTALL_AND_START_S = 600.0
"""Deadline for command 1 to install and show two heartbeats (pip may be slow)."""


def fail(message: str, log: str = "") -> None:
    print(f"first run: FAILED: {message}", flush=True)
    if log:
        print("---- output ----\n" + log[-6000:] + "\n----------------", flush=True)
    raise SystemExit(1)


def copy_checkout(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a fresh clone would have them."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for raw in filter(None, names):
        src = REPO / raw.decode()
        if src.is_file():
            target = dest / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HEARTBEAT_", "CELERY_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(extra)
    return env


class Output:
    """Collects a process's merged output in a thread, so waits never block on a pipe."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                self.text += line

    def get(self) -> str:
        with self._lock:
            return self.text

    def join(self) -> None:
        self._thread.join(10)


def default_signals() -> None:
    """Runs in each child before exec: default signal dispositions. Run as a shell's
    background job, this script inherits SIGINT ignored, an ignored signal stays ignored
    across exec, and the Ctrl-C this script sends would then stop nothing."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def start(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """A process with default signal dispositions, leading a process group of its own."""
    return subprocess.Popen(argv, start_new_session=True,
                            preexec_fn=default_signals, **kwargs)  # noqa: PLW1509


def stop(proc: subprocess.Popen[Any], sig: int, timeout_s: float) -> int | None:
    """Signal the process group; its exit code, or None if SIGKILL had to end it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return None


def wait_until(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.2)
    return False


def command_1(workdir: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = COMMAND_1.search(readme)
    if match is None:
        fail("README.md has no line 'python3 -m venv .venv && ... petsage-heartbeat run'")
    command = match.group(0)
    print(f"first run: {command}", flush=True)
    proc = start(["bash", "-c", command], cwd=workdir, env=clean_env(HEARTBEAT_INTERVAL_S="1"),
                 text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Output(proc)
    two = wait_until(lambda: len(set(HEARTBEAT_LINE.findall(out.get()))) >= 2
                     or proc.poll() is not None, INSTALL_AND_START_S)
    code = stop(proc, signal.SIGINT, 30) if proc.poll() is None else proc.returncode
    if code is None:
        fail("command 1 did not stop within 30 s of SIGINT", out.get())
    out.join()
    log = out.get()
    if not two or len(set(HEARTBEAT_LINE.findall(log))) < 2:
        fail("command 1 did not print two fresh heartbeat lines", log)
    if "Traceback" in log:
        fail("command 1 printed a traceback", log)
    if code != 0:
        fail(f"command 1 exited with {code} after SIGINT", log)
    print(f"first run: command 1 OK ({len(set(HEARTBEAT_LINE.findall(log)))} heartbeats, "
          "stopped cleanly)", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def production(workdir: Path) -> None:
    """The locked production install: beat, worker and every CLI command against a real
    Redis."""
    venv = workdir / "prod-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = str(venv / "bin/pip")
    # As production installs it: the locked versions, each checked against its hashes, then
    # the project alone. `pip check` fails when the lock lacks what pyproject.toml requires.
    for argv in ([pip, "install", "-q", "--require-hashes", "-r", LOCK],
                 [pip, "install", "-q", "--no-deps", "."],
                 [pip, "check"]):
        done = subprocess.run(argv, cwd=workdir, env=clean_env(), capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            fail(f"production install: {' '.join(argv[1:])} exited {done.returncode}",
                 done.stdout + done.stderr)
    port = free_port()
    redis_dir = tempfile.mkdtemp(prefix="first-run-redis-")
    server = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", redis_dir],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    env = clean_env(CELERY_BROKER_URL=url, HEARTBEAT_INTERVAL_S="1")
    bin_dir = venv / "bin"
    procs: list[tuple[subprocess.Popen[str], Output]] = []
    try:
        for argv in (["celery", "-A", "worker", "beat"],
                     ["celery", "-A", "worker", "worker", "-Q", "heartbeat.petsage",
                      "--without-mingle", "--without-gossip"],
                     ["petsage-heartbeat", "monitor"]):
            proc = start([str(bin_dir / argv[0]), *argv[1:]], cwd=workdir / "empty", env=env,
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append((proc, Output(proc)))

        def check_ok() -> bool:
            return subprocess.run([str(bin_dir / "petsage-heartbeat"), "check"], env=env,
                                  capture_output=True, check=False).returncode == 0

        if not wait_until(check_ok, 120):
            fail("production install: no fresh heartbeat within 120 s",
                 "\n".join(o.get() for _, o in procs))
        expected = {
            ("check",): 0, ("check", "--json"): 0, ("status",): 0, ("status", "--all"): 0,
            ("status", "--all", "--json"): 0, ("check", "--bogus"): 3,
            # serve needs the [http] extra: one line saying so, exit 2.
            ("serve",): 2, ("--version",): 0, ("check", "--help"): 0,
            ("silence", "petsage", "--for", "1m"): 0, ("unsilence", "petsage"): 0,
            ("forget", "petsage"): 1, ("forget", "no:such"): 2,
        }
        for args, want in expected.items():
            done = subprocess.run([str(bin_dir / "petsage-heartbeat"), *args], env=env,
                                  capture_output=True, text=True, timeout=60, check=False)
            text = done.stdout + done.stderr
            if done.returncode != want or "Traceback" in text:
                fail(f"production install: petsage-heartbeat {' '.join(args)} exited "
                     f"{done.returncode} (expected {want})", text)
        watch = start([str(bin_dir / "petsage-heartbeat"), "watch"], env=env, text=True,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watch_out = Output(watch)
        seen = wait_until(lambda: "-> fresh" in watch_out.get(), 30)
        stopped = stop(watch, signal.SIGINT, 10)
        watch_out.join()
        if stopped is None:
            fail("production install: watch did not stop within 10 s of SIGINT", watch_out.get())
        if not seen or "Traceback" in watch_out.get():
            fail("production install: watch showed no transition to fresh", watch_out.get())
        for proc, output in procs:
            if proc.poll() is not None:
                fail(f"production install: {proc.args} exited early", output.get())
        for proc, output in procs:
            if stop(proc, signal.SIGTERM, 20) is None:
                fail(f"production install: {proc.args} did not stop on SIGTERM", output.get())
            output.join()
            if "Traceback" in output.get():
                fail(f"production install: {proc.args} printed a traceback", output.get())
    finally:
        for proc, _ in procs:
            stop(proc, signal.SIGKILL, 10)
        stop(server, signal.SIGKILL, 10)
        shutil.rmtree(redis_dir, ignore_errors=True)
    print("first run: production install OK (beat, worker, monitor, check, status, watch, "
          "serve, silence, forget)",
          flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp:
        workdir = Path(tmp) / "src"
        workdir.mkdir()
        copy_checkout(workdir)
        (workdir / "empty").mkdir()
        command_1(workdir)
        production(workdir)


if __name__ == "__main__":
    main()
