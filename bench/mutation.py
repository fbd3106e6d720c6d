"""Mutation testing of the core modules: the score per module and the surviving mutants.

    python -m bench.mutation [--max-children 2] [--resume | --survivors] [--module PATH ...]

Runs mutmut (configured in ``pyproject.toml``, ``[tool.mutmut]``: every module of
``worker/``, core, publish, read, observe, cli and http, against every test but those with
servers or Celery processes) in ``mutants/``, a copy of the checkout, then the hand-made
Lua mutations (``bench.lua_mutations``). ``--module worker/observe/delivery.py`` tests
only that module's mutants (repeatable; the whole run takes hours on 2 cores) and leaves
the Lua list out. Prints a table:
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
from fnmatch import fnmatch
from pathlib import Path

from bench import lua_mutations
from bench.common import table

REPO = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).with_name("mutmut")

# Reasons that several equivalent mutants share.
_FIRST_PIECE = 'the first piece of a split is the same whatever the number of splits'
_CAST = 'typing.cast returns its value; the type is never read at run time'
_NO_PAYLOAD_TO_SLIM = 'a [type, length] row holds no payload to slim'
_NOT_A_CLUSTER = 'any default that is not true, 1 or yes reads as not a cluster'
_ALWAYS_A_PAYLOAD = (
    'a missing heartbeat returned no_consumer above; a late or stale one always has a payload')
_SLIM_FALSE = (
    "slim=None (or the default, False) is false: a full read never slims, and a fleet's [type, "
    "length] row has the value b'', refused as not JSON before any payload exists")
_NO_PAYLOAD_NO_THRESHOLDS = 'a [type, length] row holds no payload: no thresholds are applied to it'
_ZIP_DEFAULT = "strict=None and no strict are zip's default (strict=False)"
_HTTPS_DEFAULT = ("http.client's HTTPSConnection without a context makes the default one, "
                  'which verifies certificates and host names as create_default_context does')
_TIMER_CANCELLED = ('the timer is cancelled in a finally before post returns: whether it would '
                    'have kept the interpreter alive at exit is never put to the test')
_NONE_FALSE = 'None is false, as False is: the flag is only ever tested for truth'
_ZIP_ONE_REPLY_EACH = (
    "strict=None and no strict are zip's default (strict=False); the pipeline returns one reply"
    ' per command')

_ASCII_FILE = ('json.dumps escapes every non-ASCII character: the state file is ASCII, the '
               'same bytes in any encoding')
_UTF8_NAME = 'codec names are case-insensitive: UTF-8 is utf-8'
_STATUS_OK = 'state_for reads only "error" and "degraded" from the status: any other is ok'
_COMMAND_CASE = 'Redis command names and their keywords are case-insensitive'
_ERROR_REPLY_NONE = 'an error reply in its place reads as nothing here too'

EQUIVALENT: dict[str, tuple[str, str]] = {
    'worker.core.settings.xǁSettingsǁfrom_env__mutmut_56': (
        'broker_is_redis = broker_url.split("://", )[0] in REDIS_SCHEMES',
        _FIRST_PIECE),
    'worker.core.settings.xǁSettingsǁfrom_env__mutmut_59': (
        'broker_is_redis = broker_url.split("://", 2)[0] in REDIS_SCHEMES',
        _FIRST_PIECE),
    'worker.core.urls.x__redact_one__mutmut_17': (
        'user = userinfo.split(":", 1)[0] if (":" in userinfo) or True else userinfo',
        "splitting a userinfo without ':' at ':' gives it whole, as the else does"),
    'worker.core.urls.x__redact_one__mutmut_21': (
        'user = userinfo.split(":", )[0] if ":" in userinfo else userinfo',
        _FIRST_PIECE),
    'worker.core.urls.x__redact_one__mutmut_24': (
        'user = userinfo.split(":", 2)[0] if ":" in userinfo else userinfo',
        _FIRST_PIECE),
    'worker.core.urls.x__redact_one__mutmut_37': (
        'user = user.split("/", )[0]',
        _FIRST_PIECE),
    'worker.core.urls.x__redact_one__mutmut_40': (
        'user = user.split("/", 2)[0]',
        _FIRST_PIECE),
    'worker.core.urls.x_redact__mutmut_23': (
        'while start <= at and text[start] not in _LETTERS:  # a scheme starts with a letter',
        "text[at] is ':', never a letter: the loop stops one step later and start < at is false"
        ' either way'),
    'worker.core.urls.x_redact__mutmut_37': (
        'if start < at and end >= at + 3:',
        "end == at + 3 is a URL of nothing after '://': redacting it changes nothing"),
    'worker.core.urls.x_redact__mutmut_38': (
        'if start < at and end > at - 3:',
        'end is at least at + 3, so this differs only where end == at + 3: a URL of nothing '
        "after '://', unchanged by redaction"),
    'worker.core.urls.x_redact__mutmut_39': (
        'if start < at and end > at + 4:',
        "a URL with one character after '://' holds no password: redacting it or not gives the "
        'same text'),
    'worker.core.urls.x_redact__mutmut_56': (
        'at = text.find("://", max(at + 4, done))',
        "a '://' right after this one follows its '/', so it has no scheme and both skip it"),
    'worker.core.urls.x__port_ok__mutmut_16': (
        'host, sep, port = netloc_part, "", "XXXX"  # a bracketed IPv6 address without a port',
        "sep is '' on this path, and 'not sep' alone decides: the port is not read"),
    'worker.core.urls.x_validate_url__mutmut_92': (
        'cluster = (parse_qs(parts.query).get("cluster") or ["FALSE"])[-1].lower()',
        'the default is lower-cased before the comparison'),
    'worker.core.urls.x_tls_options__mutmut_17': (
        'reqs = query.get("ssl_cert_reqs", "REQUIRED").lower().removeprefix("cert_")',
        'the default is lower-cased before use'),
    'worker.core.urls.x_is_cluster__mutmut_8': (
        'values = parse_qs(urlsplit(url).query).get("cluster") or ["XXfalseXX"]',
        _NOT_A_CLUSTER),
    'worker.core.urls.x_is_cluster__mutmut_9': (
        'values = parse_qs(urlsplit(url).query).get("cluster") or ["FALSE"]',
        _NOT_A_CLUSTER),
    'worker.publish.store.x_encode_body__mutmut_4': (
        'text = json.dumps(body, separators=(",", ":"), allow_nan=None, ensure_ascii=False)',
        'json.dumps tests allow_nan for truth: None is False'),
    'worker.publish.store.x_encode_body__mutmut_5': (
        'text = json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=None)',
        'json.dumps tests ensure_ascii for truth: None is False'),
    'worker.publish.store.xǁHeartbeatStoreǁpublish__mutmut_56': (
        'if self._cluster or accepted:',
        'on one Redis the script already wrote this index entry, and ZADD GT of the same score '
        'changes nothing; on a cluster, a refused write re-adds the stored (newer) ts_ms with '
        'GT: nothing either, unless an earlier index write was lost, which this then repairs'),
    'worker.observe.delivery.xǁDeliveryǁ__init____mutmut_23': (
        'self._store_down = None', _NONE_FALSE),
    'worker.observe.delivery.xǁDeliveryǁrun__mutmut_9': (
        'self._store_down = None', _NONE_FALSE),
    'worker.observe.delivery.x_post__mutmut_25': (
        'host, port = parts.hostname or "XXXX", parts.port',
        'every webhook URL is checked to have a host (parse_webhooks) before it is posted to'),
    'worker.observe.delivery.x_post__mutmut_33': ('context=None)', _HTTPS_DEFAULT),
    'worker.observe.delivery.x_post__mutmut_37': (')', _HTTPS_DEFAULT),
    'worker.observe.delivery.x_post__mutmut_70': ('timer.daemon = None', _TIMER_CANCELLED),
    'worker.observe.delivery.x_post__mutmut_71': ('timer.daemon = False', _TIMER_CANCELLED),
    'worker.observe.delivery.xǁDeliveryǁstep__mutmut_10': (
        'entries = self.client.xrange(self.keys.outbox, f"({cursor}", count=50)',
        "'+' is XRANGE's default end in redis-py"),
    'worker.observe.delivery.xǁDeliveryǁ_wait__mutmut_4': (
        'while (left := deadline - time.monotonic()) >= 0:',
        'a monotonic clock reading exactly the deadline (to the nanosecond) only adds one '
        'renewal of the lease'),
    'worker.read.diagnosis.x_diagnose__mutmut_17': (
        'assert payload is not None or age_s is not None  # late or stale with a payload',
        'an assertion of what judging guarantees (late and stale reports have both); no input '
        'reaches it with one missing'),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_36': (
        'depth = None if (marker is None) and False else marker.get("queue_depth")',
        "without a marker beat's age is unknown and the function returned beat_down above"),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_73': (
        'lag_ms = 0.0 if (payload is None) and False else (_number(payload.get("queue_lag_ms"))',
        _ALWAYS_A_PAYLOAD),
    'worker.read.diagnosis.x__pipeline_hop__mutmut_75': (
        'lag_ms = 1.0 if payload is None else (_number(payload.get("queue_lag_ms"))',
        _ALWAYS_A_PAYLOAD),
    'worker.read.reader.x__judge__mutmut_53': (
        'stale_after_s=stale_after_s, slim=None)',
        _SLIM_FALSE),
    'worker.read.reader.x__judge__mutmut_59': (
        'stale_after_s=stale_after_s, )',
        _SLIM_FALSE),
    'worker.read.reader.x__judge_text__mutmut_1': (
        'stale_after_s: float | None, slim: bool = True) -> HeartbeatReport:',
        'every caller passes slim; the default is never used'),
    'worker.read.reader.x__judge_text__mutmut_13': (
        'f"stored value is not JSON: {str(exc)[:101]}", now_ms=now_ms)',
        "orjson's messages are under 100 characters (the longest seen: 72)"),
    'worker.read.reader.x__judge_text__mutmut_29': (
        'payload = cast(None, _slim(data) if slim else data)',
        _CAST),
    'worker.read.reader.x_add_diagnosis__mutmut_19': (
        'payload=cast(None, report.payload),',
        _CAST),
    'worker.read.reader.x_add_diagnosis__mutmut_35': (
        'if report.thresholds is None or raw_nodes:',
        'a report with thresholds had its nodes judged on them in the first pass: judging them '
        'again gives the same nodes'),
    'worker.read.reader.x_judge_rows__mutmut_31': (
        'discard = parse_discard(raw_discard) if (notes) or True else None',
        'without notes the report is not diagnosed, and the discard note is used only by the '
        'diagnosis'),
    'worker.read.reader.x_judge_values__mutmut_48': (
        'late_after_s=None, stale_after_s=stale_after_s, slim=True)',
        _NO_PAYLOAD_NO_THRESHOLDS),
    'worker.read.reader.x_judge_values__mutmut_49': (
        'late_after_s=late_after_s, stale_after_s=None, slim=True)',
        _NO_PAYLOAD_NO_THRESHOLDS),
    'worker.read.reader.x_judge_values__mutmut_50': (
        'late_after_s=late_after_s, stale_after_s=stale_after_s, slim=None)',
        _NO_PAYLOAD_TO_SLIM),
    'worker.read.reader.x_judge_values__mutmut_58': (
        'late_after_s=late_after_s, stale_after_s=stale_after_s, )',
        _NO_PAYLOAD_TO_SLIM),
    'worker.read.reader.x_judge_values__mutmut_63': (
        'late_after_s=late_after_s, stale_after_s=stale_after_s, slim=False)',
        _NO_PAYLOAD_TO_SLIM),
    'worker.read.reader.x_judge_values__mutmut_65': (
        'reports.append(report if (not raw_nodes) and False else',
        'with no nodes, no marker and no beat, with_components returns the report itself'),
    'worker.read.reader.x_component_thresholds__mutmut_14': (
        'None)',
        'for_interval(interval, None) computes the same stale threshold as '
        'for_interval(interval).stale_after_s'),
    'worker.read.reader.x_read_cluster__mutmut_7': (
        'replies = execute_many(client, [("eval", *read_script_args([s], keys,',
        'Redis command names are case-insensitive'),
    'worker.read.reader.x_read_cluster__mutmut_17': (
        'for service, reply in zip(services, replies, strict=None):',
        _ZIP_ONE_REPLY_EACH),
    'worker.read.reader.x_read_cluster__mutmut_20': (
        'for service, reply in zip(services, replies, ):',
        _ZIP_ONE_REPLY_EACH),
    'worker.read.reader.x_read_cluster__mutmut_21': (
        'for service, reply in zip(services, replies, strict=False):',
        'the pipeline returns one reply per command: the lengths always match'),
    'worker.read.render.x__age_s__mutmut_17': (
        'return round(max(now_ms - then_ms, 0) / 1000, 4)',
        'whole milliseconds over 1000 have at most 3 decimals'),
    'worker.read.render.x_summary__mutmut_2': (
        'payload: dict[str, Any] = cast(None, report.payload or {})',
        _CAST),
    'worker.read.render.x_table_row__mutmut_2': (
        'p: dict[str, Any] = cast(None, report.payload or {})',
        _CAST),
    'worker.read.render.x_transition_event__mutmut_2': (
        'payload: dict[str, Any] = cast(None, report.payload or {})',
        _CAST),
    'worker.read.render.x_render_table__mutmut_13': (
        'cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=None)]',
        _ZIP_DEFAULT),
    'worker.read.render.x_render_table__mutmut_16': (
        'cells = [cell.ljust(width) for cell, width in zip(row, widths, )]',
        _ZIP_DEFAULT),
    'worker.read.render.x_silence_note__mutmut_12': (
        'return f"silenced for {_span(max(silence.until_ms - now_ms, 1) / 1000)}{why}"',
        "1 ms instead of 0 left: both read '0s'"),
    'worker.read.absence.x__restart__mutmut_4': ('encoding=None)', _ASCII_FILE),
    'worker.read.absence.x__restart__mutmut_6': (')', _ASCII_FILE),
    'worker.read.absence.x__restart__mutmut_13': ('encoding="UTF-8")', _UTF8_NAME),
    'worker.read.absence.x_absent_for__mutmut_7': (
        'data = json.loads(path.read_text(encoding=None))',
        'the file is ASCII JSON (json.dumps escapes the rest) and bytes that are not are '
        'refused as corrupt in any encoding that ASCII is part of'),
    'worker.read.absence.x_absent_for__mutmut_9': (
        'data = json.loads(path.read_text(encoding="UTF-8"))', _UTF8_NAME),
    'worker.read.absence.x_absent_for__mutmut_72': (
        'return _restart(path, run_id, now_s, None)',
        "the problem is only tested for truth: None and '' are both no problem"),
    'worker.read.absence.x_present__mutmut_2': (
        'path.unlink(missing_ok=None)',
        'FileNotFoundError is an OSError, which present suppresses anyway'),
    'worker.read.absence.x_present__mutmut_3': (
        'path.unlink(missing_ok=False)',
        'FileNotFoundError is an OSError, which present suppresses anyway'),
    'worker.read.nodes.x_judge_nodes__mutmut_5': (
        'for member, score in zip(raw[0::2], raw[1::2], strict=None):', _ZIP_DEFAULT),
    'worker.read.nodes.x_judge_nodes__mutmut_8': (
        'for member, score in zip(raw[0::2], raw[1::2], ):', _ZIP_DEFAULT),
    'worker.read.nodes.x_judge_nodes__mutmut_40': (
        'nodes.append(NodeReport(as_text(member)[:255], state_for(age_s, None, thresholds),',
        _STATUS_OK),
    'worker.read.nodes.x_judge_nodes__mutmut_45': (
        'nodes.append(NodeReport(as_text(member)[:255], state_for(age_s, "XXokXX", thresholds),',
        _STATUS_OK),
    'worker.read.nodes.x_judge_nodes__mutmut_46': (
        'nodes.append(NodeReport(as_text(member)[:255], state_for(age_s, "OK", thresholds),',
        _STATUS_OK),
    'worker.read.entries.x__pairs__mutmut_5': (
        'return list(zip(raw[0::2], raw[1::2], strict=None))', _ZIP_DEFAULT),
    'worker.read.entries.x__pairs__mutmut_8': (
        'return list(zip(raw[0::2], raw[1::2], ))', _ZIP_DEFAULT),
    'worker.read.entries.x_entries_commands__mutmut_7': (
        '("getrange", keys.beat(service), 0, MAX_MARKER_BYTES - 1),', _COMMAND_CASE),
    'worker.read.entries.x_entries_commands__mutmut_10': (
        '("GETRANGE", keys.beat(service), 0, MAX_MARKER_BYTES + 1),',
        'parse_marker refuses MAX_MARKER_BYTES or more whole: a marker that size or over is '
        'refused either way, and a smaller one is read whole either way'),
    'worker.read.entries.x_entries_commands__mutmut_13': (
        '("zrevrange", keys.nodes(service), 0, 999, "WITHSCORES"),', _COMMAND_CASE),
    'worker.read.entries.x_entries_commands__mutmut_18': (
        '("ZREVRANGE", keys.nodes(service), 0, 999, "withscores"),', _COMMAND_CASE),
    'worker.read.entries.x_entries_from_replies__mutmut_21': (
        'ev = evidence(now_ms, None if (isinstance(marker_raw, BaseException)) and False else '
        'marker_raw,', _ERROR_REPLY_NONE + ' (parse_marker)'),
    'worker.read.entries.x_entries_from_replies__mutmut_23': (
        '[] if (isinstance(nodes_raw, BaseException)) and False else _flat(nodes_raw), None)',
        _ERROR_REPLY_NONE + ' (_flat)'),
}
"""Mutants that no test can kill because they change nothing observable: name -> (the
mutated line(s), stripped, why). The line pins the entry to the mutant it was checked
against: mutmut numbers a function's mutants in order, so an edit to the function
renumbers them, and an entry whose mutant no longer reads so is reported, not counted."""

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
    """The lines a mutant changed, as it reads now (``mutmut show``), stripped and joined
    with `` / ``."""
    done = subprocess.run([str(MUTMUT), "show", name], cwd=REPO, capture_output=True,
                          text=True, check=False)
    return " / ".join(line[1:].strip() for line in done.stdout.splitlines()
                      if line.startswith("+") and not line.startswith("+++"))


def check_equivalents(statuses: dict[str, str],
                      patterns: Sequence[str] = ()) -> tuple[set[str], list[str]]:
    """The listed equivalents that still survive as listed, and what is wrong with the rest
    (only those of the modules ``patterns`` name, if any)."""
    good: set[str] = set()
    wrong: list[str] = []
    for name, (piece, _) in sorted(EQUIVALENT.items()):
        if patterns and not any(fnmatch(name, p) for p in patterns):
            continue
        status = statuses.get(name)
        if status == "killed":
            wrong.append(f"{name}: killed, so not equivalent: remove it from the list")
        elif status is None or piece != mutated_lines(name):
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


def module_pattern(path: str) -> str:
    """The mutant names of one module: ``worker/observe/delivery.py`` ->
    ``worker.observe.delivery.x*`` (mutmut matches names with fnmatch)."""
    if not (path.startswith("worker/") and path.endswith(".py")):
        raise SystemExit(f"--module {path!r}: accepted: a module path such as "
                         "worker/observe/delivery.py")
    return path.removesuffix(".py").replace("/", ".") + ".x*"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2)
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true",
                      help="keep mutants/ and the results so far (mutmut re-tests changes)")
    runs.add_argument("--survivors", action="store_true",
                      help="after adding tests: run again only the mutants that survived or "
                           "that no test ran, and those of changed code")
    parser.add_argument("--module", action="append", default=[], metavar="PATH",
                        help="only this module's mutants, e.g. worker/observe/delivery.py "
                             "(repeatable); the Lua list is left out")
    args = parser.parse_args(argv)
    patterns = [module_pattern(path) for path in args.module]
    if not args.resume and not args.survivors:
        shutil.rmtree(REPO / "mutants", ignore_errors=True)
    again: list[str] = []
    if args.survivors:
        again = sorted(n for n, s in results().items() if s != "killed"
                       and (not patterns or any(fnmatch(n, p) for p in patterns)))
        # Which test runs which function is collected again, with the new tests.
        (REPO / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    for names in (patterns, again) if again else (patterns,):
        done = subprocess.run([str(MUTMUT), "run", "--max-children", str(args.max_children),
                               *names], cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
            return 2
    statuses = results()
    if patterns:
        statuses = {n: s for n, s in statuses.items() if any(fnmatch(n, p) for p in patterns)}
    equivalent, wrong = check_equivalents(statuses, patterns)
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
    return 0 if patterns else lua_mutations.main([])


if __name__ == "__main__":
    sys.exit(main())
