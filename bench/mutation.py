"""Mutation testing of the core modules: the score per module and the surviving mutants.

    python -m bench.mutation [--max-children 2] [--resume | --survivors]

Runs mutmut (configured in ``pyproject.toml``, ``[tool.mutmut]``: the modules that judge
states, read, diagnose, store, take settings and URLs, redact, export metrics and render
the CLI, against every test but those with Celery processes) in ``mutants/``, a copy of
the checkout, then the hand-made Lua mutations (``bench.lua_mutations``). Prints a table:
per module the mutants, killed, survived (no test failed, or no test ran the code),
timed out, equivalent (listed below with why) and the score, killed / (all - equivalent).
Not part of CI: minutes of CPU. Exits non-zero when a run fails, not for a low score.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from bench import lua_mutations
from bench.common import table

REPO = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).with_name("mutmut")

EQUIVALENT: dict[str, str] = {}
"""Mutants that no test can kill because they change nothing observable, with why."""

_LINE = re.compile(r"^\s*(?P<name>\S+?): (?P<status>.+)$")
_MODULE = re.compile(r"^(?P<module>.+?)\.x[ǁ_]")


def results() -> dict[str, str]:
    """Every mutant's status, from ``mutmut results --all true``."""
    done = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    out = {}
    for line in done.stdout.splitlines():
        match = _LINE.match(line)
        if match and "__mutmut_" in match["name"]:
            out[match["name"]] = match["status"].strip()
    return out


def score_table(statuses: dict[str, str]) -> tuple[list[list[object]], float]:
    """Rows per module and the overall score."""
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses.items():
        match = _MODULE.match(name)
        module = match["module"] if match else name
        kind = ("equivalent" if name in EQUIVALENT else "killed" if status == "killed"
                else "timeout" if status == "timeout" else "survived")
        by_module[module][kind] += 1
    rows: list[list[object]] = []
    killed_all = counted_all = 0
    for module in sorted(by_module):
        c = by_module[module]
        total = sum(c.values())
        counted = total - c["equivalent"]
        killed = c["killed"] + c["timeout"]  # a mutant that hangs the tests is caught too
        killed_all += killed
        counted_all += counted
        rows.append([module, total, c["killed"], c["survived"], c["timeout"],
                     c["equivalent"], f"{100 * killed / counted:.1f}%" if counted else "-"])
    overall = 100 * killed_all / counted_all if counted_all else 0.0
    rows.append(["all", len(statuses), "", "", "", "", f"{overall:.1f}%"])
    return rows, overall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2)
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true",
                      help="keep mutants/ and the results so far (mutmut re-tests changes)")
    runs.add_argument("--survivors", action="store_true",
                      help="after adding tests: run again only the mutants that survived or "
                           "that no test ran, and those of changed code")
    args = parser.parse_args(argv)
    if not args.resume and not args.survivors:
        shutil.rmtree(REPO / "mutants", ignore_errors=True)
    again: list[str] = []
    if args.survivors:
        again = sorted(n for n, s in results().items() if s != "killed")
        # Which test runs which function is collected again, with the new tests.
        (REPO / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    for names in ([], again) if again else ([],):
        done = subprocess.run([str(MUTMUT), "run", "--max-children", str(args.max_children),
                               *names], cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
            return 2
    statuses = results()
    rows, overall = score_table(statuses)
    version = subprocess.run([str(MUTMUT), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    print(f"{version}; score {overall:.1f}%\n")
    print(table(["module", "mutants", "killed", "survived", "timeout", "equivalent",
                 "score"], rows))
    survivors = sorted(n for n, s in statuses.items()
                       if s not in ("killed", "timeout") and n not in EQUIVALENT)
    print(f"\nsurviving mutants ({len(survivors)}; see one with `mutmut show NAME`):")
    for name in survivors:
        print(f"  {name}: {statuses[name]}")
    if EQUIVALENT:
        print("\nequivalent mutants:")
        for name, why in sorted(EQUIVALENT.items()):
            print(f"  {name}: {why}")
    print()
    return lua_mutations.main([])


if __name__ == "__main__":
    sys.exit(main())
