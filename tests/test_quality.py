"""The code stays typed (mypy strict) and lint-clean (ruff), and the reader stays Celery-free."""

from __future__ import annotations

import subprocess
import sys

from tests.support.helpers import REPO
from tests.support.processes import run as run_process


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_process(argv, cwd=REPO, capture_output=True, text=True, timeout=300,
                       check=False)


def test_mypy_strict() -> None:
    done = _run(sys.executable, "-m", "mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff() -> None:
    done = _run(sys.executable, "-m", "ruff", "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_importing_the_reader_does_not_import_celery() -> None:
    code = ("import sys, worker; from worker import read_heartbeat; "
            "bad = [m for m in ('celery', 'kombu') if m in sys.modules]; print(bad)")
    done = _run(sys.executable, "-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
