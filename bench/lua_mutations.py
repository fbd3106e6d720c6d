"""Hand-made mutations of the Lua scripts, each of which the tests must kill.

    python -m bench.lua_mutations

Mutation tools don't read Lua, so each promise a script keeps is broken here by hand, one
at a time, in a copy of the checkout; the tests named beside it (against a real
redis-server where they claim Redis) must fail. Prints one row per mutation and exits
non-zero if any survived.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from bench.common import table

REPO = Path(__file__).resolve().parents[1]


class Mutation(NamedTuple):
    promise: str
    script: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation("ages on the Redis clock (a constant clock)", "worker/publish/publish.lua",
             "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
             "local now = 1700000000000", ("tests/test_store.py",)),
    Mutation("never backwards", "worker/publish/publish.lua",
             "if old_ts > now and old_ts <= now + tonumber(ARGV[6]) then",
             "if false then", ("tests/test_store.py",)),
    Mutation("the latest payload's TTL", "worker/publish/publish.lua",
             "redis.call('SET', KEYS[1], payload, 'PX', ARGV[3])",
             "redis.call('SET', KEYS[1], payload)", ("tests/test_store.py",)),
    Mutation("the history's TTL", "worker/publish/publish.lua",
             "redis.call('PEXPIRE', KEYS[2], ARGV[3])", "",
             ("tests/test_store.py", "tests/test_promises.py")),
    Mutation("the history cap", "worker/publish/publish.lua",
             "'MAXLEN', '~', ARGV[4]", "'MAXLEN', '~', ARGV[4] * 1000",
             ("tests/test_store.py",)),
    Mutation("the node record's TTL", "worker/publish/node.lua",
             "redis.call('PEXPIRE', KEYS[1], ARGV[2])", "",
             ("tests/test_promises.py",)),
    Mutation("beat's marker TTL", "worker/publish/beat_marker.lua",
             "redis.call('SET', KEYS[1], value, 'PX', ARGV[2])\nreturn",
             "redis.call('SET', KEYS[1], value)\nreturn", ("tests/test_promises.py",)),
    Mutation("a transition recorded once (no dedup)", "worker/observe/record.lua",
             "if state ~= j.to then", "if true then", ("tests/test_incidents.py",)),
    Mutation("a silence holds notifications", "worker/observe/record.lua",
             "redis.call('EXISTS', sil) == 0", "true", ("tests/test_incidents.py",)),
    Mutation("the incident stream's TTL", "worker/observe/record.lua",
             "redis.call('PEXPIRE', inc, ttl)\n      else", "\n      else",
             ("tests/test_incidents.py",)),
)


def _copy() -> Path:
    target = Path(tempfile.mkdtemp(prefix="lua-mutation-"))
    shutil.copytree(REPO, target / "repo", ignore=shutil.ignore_patterns(
        ".venv", "mutants", ".git", "__pycache__", ".mypy_cache", ".ruff_cache"))
    return target / "repo"


def run(mutation: Mutation | None, tests: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Apply ``mutation`` in a copy (None: none, the control run of ``tests``); True when
    the tests fail (the mutant is killed)."""
    copy = _copy()
    try:
        if mutation is not None:
            script = copy / mutation.script
            text = script.read_text(encoding="utf-8")
            if text.count(mutation.old) != 1:
                raise SystemExit(f"{mutation.script}: the text to mutate is not there once: "
                                 f"{mutation.old!r}")
            script.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
            tests = mutation.tests
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                               "no:cacheprovider", *tests], cwd=copy,
                              capture_output=True, text=True, check=False)
        last = (done.stdout.strip().splitlines() or ["?"])[-1]
        return done.returncode != 0, last
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    every_test = tuple(sorted({t for m in MUTATIONS for t in m.tests}))
    failed, summary = run(None, every_test)
    if failed:  # the copy itself must pass, or a "kill" means nothing
        print(f"the unmutated copy fails its tests: {summary}", file=sys.stderr)
        return 2
    print(f"control (no mutation): {summary}\n")
    rows = []
    survived = 0
    for mutation in MUTATIONS:
        killed, summary = run(mutation)
        survived += not killed
        rows.append([mutation.promise, mutation.script.split("/")[-1],
                     "killed" if killed else "SURVIVED", summary])
    print(table(["promise broken", "script", "result", "tests"], rows))
    print(f"\n{len(MUTATIONS) - survived} of {len(MUTATIONS)} Lua mutations killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
