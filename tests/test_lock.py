"""The production lock: ``requirements/production.lock`` pins what ``pip install .`` pulls,
each version with its hashes, within pyproject.toml's bounds, and is what CI's production
install uses (``.ci/first_run.py``, which also runs ``pip check`` on the result).
"""

from __future__ import annotations

import re
import shlex
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.helpers import REPO

LOCK = REPO / "requirements" / "production.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _entries() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), one entry per requirement of the lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match is not None, f"not an exact pin: {line}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line)
        assert hashes, f"no hash: {line}"
        entries[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return entries


def _dependencies() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(d) for d in project["dependencies"]]


def test_every_runtime_dependency_is_capped_below_its_next_major() -> None:
    for requirement in _dependencies():
        assert any(s.operator == "<" for s in requirement.specifier), requirement


def test_the_lock_pins_every_runtime_dependency_within_its_bounds_with_hashes() -> None:
    entries = _entries()
    for requirement in _dependencies():
        version, _ = entries[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), (requirement, version)
    # celery[redis] pulls kombu[redis], whose Redis transport imports packaging.
    assert {"kombu", "redis", "packaging", "hiredis", "orjson"} <= set(entries)


def test_the_documented_command_is_the_one_that_wrote_the_lock() -> None:
    header = re.search(r"^#\s+(pip-compile .*)$", LOCK.read_text(encoding="utf-8"), re.MULTILINE)
    assert header is not None
    development = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    documented = [line for line in development.splitlines() if "bin/pip-compile " in line]
    assert len(documented) == 1, documented
    words = shlex.split(documented[0].removeprefix("$ "), comments=True)
    assert words[0].endswith("/pip-compile")
    assert sorted(words[1:]) == sorted(shlex.split(header.group(1))[1:])


def test_ci_installs_production_from_the_lock_with_hashes_and_the_project_alone() -> None:
    script = (REPO / ".ci" / "first_run.py").read_text(encoding="utf-8")
    assert 'LOCK = "requirements/production.lock"' in script
    assert '"install", "-q", "--require-hashes", "-r", LOCK' in script
    assert '"install", "-q", "--no-deps", "."' in script
    assert '[pip, "check"]' in script
