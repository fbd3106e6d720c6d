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

EQUIVALENT: dict[str, tuple[str, str]] = {
    'worker.core.settings.xǁSettingsǁfrom_env__mutmut_56': (
        'split("://", )[0]',
        'the first piece of a split is the same whatever the number of splits'),
    'worker.core.settings.xǁSettingsǁfrom_env__mutmut_59': (
        'split("://", 2)[0]',
        'the first piece of a split is the same whatever the number of splits'),
    'worker.core.urls.x__redact_one__mutmut_17': (
        '(":" in userinfo) or True',
        "splitting a userinfo without ':' at ':' gives it whole, as the else does"),
    'worker.core.urls.x__redact_one__mutmut_21': (
        'userinfo.split(":", )[0]',
        'the first piece of a split is the same whatever the number of splits'),
    'worker.core.urls.x__redact_one__mutmut_24': (
        'userinfo.split(":", 2)[0]',
        'the first piece of a split is the same whatever the number of splits'),
    'worker.core.urls.x__redact_one__mutmut_37': (
        'user.split("/", )[0]',
        'the first piece of a split is the same whatever the number of splits'),
    'worker.core.urls.x__redact_one__mutmut_40': (
        'user.split("/", 2)[0]',
        'the first piece of a split is the same whatever the number of splits'),
    'worker.core.urls.x_redact__mutmut_23': (
        'while start <= at and',
        "text[at] is ':', never a letter: the loop stops one step later and start < at is"
        ' false either way'),
    'worker.core.urls.x_redact__mutmut_37': (
        'end >= at + 3',
        "end == at + 3 is a URL of nothing after '://': redacting it changes nothing"),
    'worker.core.urls.x_redact__mutmut_38': (
        'end > at - 3',
        'end is at least at + 3, so this differs only where end == at + 3: a URL of '
        "nothing after '://', unchanged by redaction"),
    'worker.core.urls.x_redact__mutmut_39': (
        'end > at + 4',
        "a URL with one character after '://' holds no password: redacting it or not "
        'gives the same text'),
    'worker.core.urls.x_redact__mutmut_56': (
        'max(at + 4, done)',
        "a '://' right after this one follows its '/', so it has no scheme and both skip "
        'it'),
    'worker.core.urls.x__port_ok__mutmut_11': (
        'host.endswith("XX]XX")',
        "after rpartition(':') a host that starts with '[' in a netloc ending in ']' "
        "never ends in ']' (the ']' is in the port part)"),
    'worker.core.urls.x__port_ok__mutmut_16': (
        'sep, port = netloc_part, "", "XXXX"',
        "sep is '' on this path, and 'not sep' alone decides: the port is not read"),
    'worker.core.urls.x_validate_url__mutmut_92': (
        '["FALSE"]',
        'the default is lower-cased before the comparison'),
    'worker.core.urls.x_validate_url__mutmut_117': (
        'parts.path.strip("XX/XX")',
        'a path holding X was refused above as a bad database; for a path of digits and '
        "'/' the stripped characters are the same"),
    'worker.core.urls.x_tls_options__mutmut_17': (
        '"REQUIRED"',
        'the default is lower-cased before use'),
    'worker.core.urls.x_is_cluster__mutmut_8': (
        '["XXfalseXX"]',
        'any default that is not true, 1 or yes reads as not a cluster'),
    'worker.core.urls.x_is_cluster__mutmut_9': (
        '["FALSE"]',
        'any default that is not true, 1 or yes reads as not a cluster'),
    'worker.publish.store.x_encode_body__mutmut_4': (
        'allow_nan=None',
        'json.dumps tests allow_nan for truth: None is False'),
    'worker.publish.store.x_encode_body__mutmut_5': (
        'ensure_ascii=None',
        'json.dumps tests ensure_ascii for truth: None is False'),
    'worker.publish.store.xǁHeartbeatStoreǁpublish__mutmut_56': (
        'self._cluster or accepted',
        'on one Redis the script already wrote this index entry: the same ZADD GT again '
        'changes nothing'),
    'worker.read.diagnosis.x_diagnose__mutmut_17': (
        'assert payload is not None or age_s is not None',
        'an assertion of what judging guarantees (late and stale reports have both); no '
        'input reaches it with one missing'),
    'worker.read.diagnosis.x_diagnose__mutmut_37': (
        'max(now_ms - failure[0], 1) / 1000',
        '1 ms instead of 0 for a refusal stamped ahead of the clock: shown to a tenth of '
        'a second, and within any stale threshold'),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_20': (
        'max(now_ms - published_ms, 1) / 1000',
        '1 ms instead of 0 for a publish stamped ahead of the clock: shown to a tenth of '
        'a second, never over a late threshold (at least 0.75 s)'),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_36': (
        '(marker is None) and False',
        "without a marker beat's age is unknown and the function returned beat_down above"),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_73': (
        '(payload is None) and False',
        'a missing heartbeat returned no_consumer above; a late or stale one always has a'
        ' payload'),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_75': (
        'lag_ms = 1.0 if payload is None',
        'a missing heartbeat returned no_consumer above; a late or stale one always has a'
        ' payload'),
    'worker.read.reader.x__shared__mutmut_1': (
        'last = None',
        'only the fast path for a value equal to the last one: the cache still returns an'
        ' equal, shared value'),
    'worker.read.reader.x__shared__mutmut_2': (
        '_LAST.get(None)',
        'only the fast path for a value equal to the last one: the cache still returns an'
        ' equal, shared value'),
    'worker.read.reader.x__shared__mutmut_3': (
        '_LAST.get(type(None))',
        'only the fast path for a value equal to the last one: the cache still returns an'
        ' equal, shared value'),
    'worker.read.reader.x__shared__mutmut_5': (
        'last is None and last == value',
        'only the fast path for a value equal to the last one: the cache still returns an'
        ' equal, shared value (it now returns None only for None)'),
    'worker.read.reader.x__shared__mutmut_27': (
        '_LAST[kind] = None',
        'only the fast path for a value equal to the last one: the cache still returns an'
        ' equal, shared value'),
    'worker.read.reader.x__judge__mutmut_53': (
        'slim=None',
        'slim=None (or the default, False) is false: a full read never slims, and a '
        "fleet's [type, length] row has the value b'', refused as not JSON before any "
        'payload exists'),
    'worker.read.reader.x__judge__mutmut_59': (
        'stale_after_s=stale_after_s, )',
        'slim=None (or the default, False) is false: a full read never slims, and a '
        "fleet's [type, length] row has the value b'', refused as not JSON before any "
        'payload exists'),
    'worker.read.reader.x__judge_text__mutmut_1': (
        'slim: bool = True',
        'every caller passes slim; the default is never used'),
    'worker.read.reader.x__judge_text__mutmut_13': (
        'str(exc)[:101]',
        "orjson's messages are under 100 characters (the longest seen: 72)"),
    'worker.read.reader.x__judge_text__mutmut_29': (
        'cast(None,',
        'typing.cast returns its value; the type is never read at run time'),
    'worker.read.reader.x_add_diagnosis__mutmut_19': (
        'cast(None,',
        'typing.cast returns its value; the type is never read at run time'),
    'worker.read.reader.x_add_diagnosis__mutmut_35': (
        'report.thresholds is None or raw_nodes',
        'a report with thresholds had its nodes judged on them in the first pass: judging'
        ' them again gives the same nodes'),
    'worker.read.reader.x_judge_rows__mutmut_31': (
        '(notes) or True',
        'without notes the report is not diagnosed, and the discard note is used only by '
        'the diagnosis'),
    'worker.read.reader.x_judge_values__mutmut_48': (
        'late_after_s=None, stale_after_s=stale_after_s, slim=True',
        'a [type, length] row holds no payload: no thresholds are applied to it'),
    'worker.read.reader.x_judge_values__mutmut_49': (
        'late_after_s=late_after_s, stale_after_s=None, slim=True',
        'a [type, length] row holds no payload: no thresholds are applied to it'),
    'worker.read.reader.x_judge_values__mutmut_50': (
        'slim=None',
        'a [type, length] row holds no payload to slim'),
    'worker.read.reader.x_judge_values__mutmut_58': (
        'stale_after_s=stale_after_s, )',
        'a [type, length] row holds no payload to slim'),
    'worker.read.reader.x_judge_values__mutmut_63': (
        'slim=False',
        'a [type, length] row holds no payload to slim'),
    'worker.read.reader.x_judge_values__mutmut_65': (
        '(not raw_nodes) and False',
        'with no nodes, no marker and no beat, with_components returns the report itself'),
    'worker.read.reader.x_component_thresholds__mutmut_14': (
        'None)',
        'for_interval(interval, None) computes the same stale threshold as '
        'for_interval(interval).stale_after_s'),
    'worker.read.reader.x_read_cluster__mutmut_7': (
        '("eval",',
        'Redis command names are case-insensitive'),
    'worker.read.reader.x_read_cluster__mutmut_17': (
        'strict=None',
        "strict=None and no strict are zip's default (strict=False); the pipeline returns"
        ' one reply per command'),
    'worker.read.reader.x_read_cluster__mutmut_20': (
        'zip(services, replies, )',
        "strict=None and no strict are zip's default (strict=False); the pipeline returns"
        ' one reply per command'),
    'worker.read.reader.x_read_cluster__mutmut_21': (
        'strict=False',
        'the pipeline returns one reply per command: the lengths always match'),
    'worker.read.render.x__age_s__mutmut_17': (
        '/ 1000, 4)',
        'whole milliseconds over 1000 have at most 3 decimals'),
    'worker.read.render.x_summary__mutmut_2': (
        'cast(None,',
        'typing.cast returns its value; the type is never read at run time'),
    'worker.read.render.x_table_row__mutmut_2': (
        'cast(None,',
        'typing.cast returns its value; the type is never read at run time'),
    'worker.read.render.x_transition_event__mutmut_2': (
        'cast(None,',
        'typing.cast returns its value; the type is never read at run time'),
    'worker.read.render.x_render_table__mutmut_13': (
        'strict=None',
        "strict=None and no strict are zip's default (strict=False)"),
    'worker.read.render.x_render_table__mutmut_16': (
        'zip(row, widths, )',
        "strict=None and no strict are zip's default (strict=False)"),
    'worker.read.render.x_silence_note__mutmut_12': (
        'until_ms - now_ms, 1) / 1000',
        "1 ms instead of 0 left: both read '0s'"),
}
"""Mutants that no test can kill because they change nothing observable: name -> (a piece
of the mutated line, why). The piece pins the entry to the mutant it was checked against:
mutmut numbers a function's mutants in order, so an edit to the function renumbers them,
and an entry whose mutant no longer reads so is reported stale, not counted."""

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


def mutated_lines(name: str) -> str:
    """The lines a mutant changed, as it reads now (``mutmut show``)."""
    done = subprocess.run([str(MUTMUT), "show", name], cwd=REPO, capture_output=True,
                          text=True, check=False)
    return "\n".join(line[1:] for line in done.stdout.splitlines()
                     if line.startswith("+") and not line.startswith("+++"))


def check_equivalents(statuses: dict[str, str]) -> tuple[set[str], list[str]]:
    """The listed equivalents that still survive as listed, and what is wrong with the rest."""
    good: set[str] = set()
    wrong: list[str] = []
    for name, (piece, _) in sorted(EQUIVALENT.items()):
        status = statuses.get(name)
        if status == "killed":
            wrong.append(f"{name}: killed, so not equivalent: remove it from the list")
        elif status is None or piece not in mutated_lines(name):
            wrong.append(f"{name}: no longer the mutant listed ({piece!r}): check it again")
        else:
            good.add(name)
    return good, wrong


def score_table(statuses: dict[str, str],
                equivalent: set[str]) -> tuple[list[list[object]], float]:
    """Rows per module and the overall score."""
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses.items():
        match = _MODULE.match(name)
        module = match["module"] if match else name
        kind = ("equivalent" if name in equivalent else "killed" if status == "killed"
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
    equivalent, wrong = check_equivalents(statuses)
    rows, overall = score_table(statuses, equivalent)
    version = subprocess.run([str(MUTMUT), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    print(f"{version}; score {overall:.1f}%\n")
    print(table(["module", "mutants", "killed", "survived", "timeout", "equivalent",
                 "score"], rows))
    survivors = sorted(n for n, s in statuses.items()
                       if s not in ("killed", "timeout") and n not in equivalent)
    print(f"\nsurviving mutants ({len(survivors)}; see one with `mutmut show NAME`):")
    for name in survivors:
        print(f"  {name}: {statuses[name]}")
    timeouts = sorted(n for n, s in statuses.items() if s == "timeout")
    if timeouts:
        print(f"\ntimed out ({len(timeouts)}; counted as caught; mutmut also reports a "
              "test run that could not start as a timeout, so run one by hand):")
        for name in timeouts:
            print(f"  {name}")
    if equivalent:
        print(f"\nequivalent mutants ({len(equivalent)}):")
        for name in sorted(equivalent):
            print(f"  {name}: {EQUIVALENT[name][1]}")
    if wrong:
        print(f"\nequivalent list entries to fix ({len(wrong)}):")
        for line in wrong:
            print(f"  {line}")
    print()
    return lua_mutations.main([])


if __name__ == "__main__":
    sys.exit(main())
