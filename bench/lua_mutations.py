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
             "local now = t[1] * 1000 + math.floor(t[2] / 1000)",
             "local now = 1700000000000", ("tests/test_store.py",)),
    Mutation("the summary written with the heartbeat", "worker/publish/publish.lua",
             "redis.call('HSET', KEYS[5], ARGV[2], summary)", "",
             ("tests/test_summary.py",)),
    Mutation("the summary says whether a node set exists", "worker/publish/publish.lua",
             "redis.call('EXISTS', KEYS[3])", "0", ("tests/test_summary.py",)),
    Mutation("a cluster's summary never backwards", "worker/publish/summary.lua",
             "if ts > new and ts <= new + tonumber(ARGV[4]) then return 0 end", "",
             ("tests/test_summary.py",)),
    Mutation("settled only when the state recorded was notified", "worker/observe/record.lua",
             "if redis.call('HGET', obs, 'notified') == state or (not known",
             "if true or (not known", ("tests/test_monitor_units.py",)),
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
             "if notified ~= state and redis.call('EXISTS', sil) == 0 then",
             "if notified ~= state and true then", ("tests/test_incidents.py",)),
    Mutation("the incident stream's TTL", "worker/observe/record.lua",
             "redis.call('PEXPIRE', inc, ttl)\n      else", "\n      else",
             ("tests/test_incidents.py",)),
    Mutation("an entry's transition recorded once (no dedup)",
             "worker/observe/entry_record.lua",
             "and verdict(j.to) ~= verdict(r.state) then", "then",
             ("tests/test_entry_incidents.py",)),
    Mutation("running and pending are no verdict", "worker/observe/entry_record.lua",
             "if state == 'ok' or state == 'running' or state == 'pending' then return 'up' end",
             "if state == 'ok' then return 'up' end", ("tests/test_entry_incidents.py",)),
    Mutation("an entry's silence holds its notifications", "worker/observe/entry_record.lua",
             "and not entry_silenced(name) then", "then", ("tests/test_entry_incidents.py",)),
    Mutation("a slower monitor's entry judgement is ignored", "worker/observe/entry_record.lua",
             "if r and tonumber(r.seen_ms) and seen < tonumber(r.seen_ms) then",
             "if false then", ("tests/test_entry_incidents.py",)),
    Mutation("a check-in of another run never rewrites the entry",
             "worker/publish/entries.lua", "elseif rec and rec.run and rec.run.id == id then",
             "elseif rec and rec.run then", ("tests/test_entries_lua.py",)),
    Mutation("a removal never creates a record", "worker/publish/entries.lua",
             "    local rec = load(name)\n    if rec and not rec.removed_ms then",
             "    local rec = load(name) or {name = name}\n    if not rec.removed_ms then",
             ("tests/test_entries_lua.py",)),
    Mutation("a removal is stamped once", "worker/publish/entries.lua",
             "if rec and not rec.removed_ms then", "if rec then", ("tests/test_entries_lua.py",)),
    Mutation("runs that never started count from the oldest", "worker/publish/entries.lua",
             "waiting = prev.waiting_since_ms or prev.dispatched_ms or now",
             "waiting = now", ("tests/test_entries_lua.py",)),
    Mutation("beat entries' TTL", "worker/publish/entries.lua",
             "redis.call('PEXPIRE', KEYS[1], retention)\n", "\n",
             ("tests/test_entries_lua.py",)),
    Mutation("the heartbeat queue's bound", "worker/publish/queue_bound.lua",
             "if depth + n > max then", "if false then", ("tests/test_diagnosis.py",)),
    Mutation("ages on the Redis clock, read side (a constant clock)", "worker/read/read.lua",
             "local out = {t}", "local out = {{'1700000000', '0'}}",
             ("tests/test_reader_units.py", "tests/test_fleet_units.py")),
    Mutation("a read's value cap", "worker/read/read.lua",
             "#v > 0 and #v <= cap then", "#v > 0 then", ("tests/test_fleet_units.py",)),
    Mutation("the notes' cap", "worker/read/notes.lua",
             "redis.pcall('GETRANGE', KEYS[i], 0, cap - 1)",
             "redis.pcall('GETRANGE', KEYS[i], 0, -1)", ("tests/test_fleet_units.py",)),
    Mutation("each service's own notes", "worker/read/notes.lua",
             "redis.pcall('GETRANGE', KEYS[i], 0, cap - 1)",
             "redis.pcall('GETRANGE', KEYS[1 + (i - 1) % 2], 0, cap - 1)",
             ("tests/test_fleet_units.py",)),
    Mutation("a page starts where the last one ended", "worker/read/incidents.lua",
             "local start, count = ARGV[5 + 2 * k], tonumber(ARGV[6 + 2 * k])",
             "local start, count = '+', tonumber(ARGV[6 + 2 * k])",
             ("tests/test_incidents_units.py",)),
    Mutation("incidents read newest first (a cut read keeps the newest)",
             "worker/read/incidents.lua",
             "redis.call('XREVRANGE', KEYS[i + 1], start, ARGV[1], 'COUNT', count)",
             "redis.call('XRANGE', KEYS[i + 1], ARGV[1], start, 'COUNT', count)",
             ("tests/test_incidents_units.py",)),
    Mutation("incidents read within the longest window", "worker/read/incidents.lua",
             "redis.call('XREVRANGE', KEYS[i + 1], start, ARGV[1], 'COUNT', count)",
             "redis.call('XREVRANGE', KEYS[i + 1], start, '-', 'COUNT', count)",
             ("tests/test_incidents_units.py",)),
    Mutation("an incident stream is read up to the cap, never whole", "worker/read/incidents.lua",
             "start, ARGV[1], 'COUNT', count)", "start, ARGV[1])",
             ("tests/test_incidents_units.py",)),
    Mutation("incident fields are cut to the bound", "worker/read/incidents.lua",
             "kept[#kept + 1] = string.sub(fields[j + 1], 1, cut)",
             "kept[#kept + 1] = fields[j + 1]", ("tests/test_incidents_units.py",)),
    Mutation("only the fields a summary reads come back", "worker/read/incidents.lua",
             "if wanted[fields[j]] then", "if true then", ("tests/test_incidents_units.py",)),
    Mutation("a silence longer than the bound is never read", "worker/read/incidents.lua",
             "if redis.call('STRLEN', KEYS[i + 2]) <= most then", "if true then",
             ("tests/test_incidents_units.py",)),
    Mutation("one call reads at most its budget of entries", "worker/read/incidents.lua",
             "if spent > 0 and spent + size > budget then", "if false then",
             ("tests/test_incidents_units.py",)),
    Mutation("an entry silence longer than the bound is never read",
             "worker/read/entry_silences.lua",
             "if #name <= longest_name and size > 0 and size <= longest then",
             "if true then", ("tests/test_incidents_units.py",)),
    Mutation("a hash of more entry silences than any app has is none",
             "worker/read/entry_silences.lua",
             "elseif redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then",
             "elseif false then", ("tests/test_incidents_units.py",)),
    Mutation("the webhook lease expires (a dead holder hands over)",
             "worker/observe/webhook_hold.lua", "'NX', 'PX', ARGV[2]", "'NX'",
             ("tests/test_delivery_units.py",)),
    Mutation("one lease holder at a time", "worker/observe/webhook_hold.lua",
             "'NX', 'PX', ARGV[2]) then return 1 end", "'PX', ARGV[2]) then return 1 end",
             ("tests/test_delivery_units.py",)),
    Mutation("the holder renews its lease", "worker/observe/webhook_hold.lua",
             "return redis.call('PEXPIRE', KEYS[1], ARGV[2])", "return 1",
             ("tests/test_delivery_units.py",)),
    Mutation("the cursor never moves back", "worker/observe/webhook_advance.lua",
             "if at_ms and (at_ms > ms or (at_ms == ms and at_seq >= seq)) then return 0 end",
             "", ("tests/test_delivery_units.py",)),
    Mutation("the cursor compares ids as numbers", "worker/observe/webhook_advance.lua",
             "local function parts(id)\n  local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"
             "  return tonumber(ms), tonumber(seq)",
             "local function parts(id)\n  local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"
             "  return ms, seq", ("tests/test_delivery_units.py",)),
    Mutation("the cursor's TTL", "worker/observe/webhook_advance.lua",
             "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])",
             "redis.call('SET', KEYS[1], ARGV[1])", ("tests/test_delivery_units.py",)),
    Mutation("a new webhook starts after the last queued entry", "worker/observe/webhook_start.lua",
             "redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)",
             "redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)",
             ("tests/test_delivery_units.py",)),
    Mutation("a known webhook keeps its cursor", "worker/observe/webhook_start.lua",
             "id, 'NX', 'PX', ARGV[1])", "id, 'PX', ARGV[1])", ("tests/test_delivery_units.py",)),
    Mutation("a stopping monitor releases only its own lease",
             "worker/observe/webhook_release.lua",
             "if redis.call('GET', KEYS[1]) == ARGV[1] then", "if true then",
             ("tests/test_delivery_units.py",)),
    Mutation("a silence ends on the Redis clock (a constant clock)", "worker/cli/silence.lua",
             "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
             "local now = 1700000000000", ("tests/test_cli_units.py",)),
    Mutation("a silence expires", "worker/cli/silence.lua",
             "redis.call('SET', KEYS[1], value, 'PX', ms)", "redis.call('SET', KEYS[1], value)",
             ("tests/test_cli_units.py",)),
    Mutation("an entry's silence ends on the Redis clock (a constant clock)",
             "worker/cli/entry_silence.lua",
             "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)",
             "local now = 1700000000000", ("tests/test_entry_incidents.py",)),
    Mutation("the entries' silences expire with the last", "worker/cli/entry_silence.lua",
             "redis.call('PEXPIRE', KEYS[1], last - now)", "",
             ("tests/test_entry_incidents.py",)),
)
"""At least one mutation of each script's key promise (a test checks every script is
here)."""


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
