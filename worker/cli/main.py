"""The ``petsage-heartbeat`` command: parse arguments, configure logging, dispatch.

Each subcommand imports only what it needs, so that ``check`` stays cheap. A malformed
flag never prints argparse's usage dump: it is one line (``worker.core.exits.fail``), ``UNKNOWN``
and exit 3 for the probes, exit 2 for the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from worker.core.errors import UsageError
from worker.core.exits import fail
from worker.core.version import __version__

_STORE_URL_HELP = "store URL (env HEARTBEAT_REDIS_URL, else CELERY_BROKER_URL)"

_CHECK_EPILOG = """\
exit codes (Nagios plugin convention):
  0 OK        fresh
  1 WARNING   late, or the payload's status is degraded
  2 CRITICAL  stale, missing, or the payload's status is error
  3 UNKNOWN   unreachable, invalid, timed out, or a bad flag or setting

--node NODE and --beat probe one component instead of the service heartbeat: a worker
node (its Celery node name, or the host part, so $(POD_NAME) works) or beat (its marker).
With --liveness the probe fails (exit 2) only for a fault in that component: a worker node
that has run no heartbeat while beat keeps publishing; a beat that stopped publishing. A
dead beat, broker or store, or another worker, never fails a worker's liveness, and an
unreachable store never fails any liveness.

--entry NAME probes one beat entry of the service's app instead (docs/entries.md): OK for
ok, pending or running; WARNING for retrying or duplicate; CRITICAL for failed, overrun,
not_started, missed or removed, for an entry that is not watched ("missing", naming the
entries that are), and for a NAME no entry can have (empty, control characters, over 200
characters: one line, exit 2); UNKNOWN when the store can't be asked.

examples:
  petsage-heartbeat check
  petsage-heartbeat check --service billing --json
  petsage-heartbeat check --entry "nightly export"
  petsage-heartbeat check --liveness --node "$POD_NAME" --stale-after 120 --timeout 2
  petsage-heartbeat check --liveness --beat --stale-after 120 --timeout 2
"""

_STATUS_EPILOG = """\
exit codes (Nagios plugin convention), the worst service's:
  0 OK        every service shown is fresh
  1 WARNING   the worst is late, or its payload's status is degraded
  2 CRITICAL  the worst is stale or missing, or no service has published under the prefix
  3 UNKNOWN   unreachable, invalid, timed out, or a bad flag or setting

--entries lists the beat entries of the service's app instead (every indexed service's
with --all), worst first: state, diagnosis, last success, next due, last duration and
queue wait. The exit code is the worst entry's (0 ok, pending, running; 1 retrying,
duplicate; 2 failed, overrun, not_started, missed, removed, or no entry watched at all;
3 the store can't be asked).

examples:
  petsage-heartbeat status
  petsage-heartbeat status --all
  petsage-heartbeat status --entries
  petsage-heartbeat status --all --json | jq '.[] | select(.state != "fresh")'
"""

_WATCH_EPILOG = """\
--exec CMD runs CMD through sh on each transition (the first state seen included, old
state "unknown"), in the background: one at a time, at most one a second, transitions
meanwhile coalesced per service into the latest (not yet with --entries). Its environment
is PATH, HOME, LANG, watch's own PETSAGE_* variables (none named like a secret) and these:
  PETSAGE_TIME       when the transition was seen (ISO-8601 UTC)
  PETSAGE_SERVICE    the service
  PETSAGE_OLD_STATE  the state before (unknown for the first one seen)
  PETSAGE_NEW_STATE  fresh, late, stale, missing, invalid or unreachable
  PETSAGE_AGE_S      age of the last heartbeat in seconds (empty if unknown)
  PETSAGE_SEQ        seq of the last heartbeat (empty if none)
  PETSAGE_REASON     one line: why this state
  PETSAGE_DIAGNOSIS  the broken hop when not fresh (empty when fresh)
  PETSAGE_EXIT_CODE  the new state's Nagios exit code
  PETSAGE_ENTRY      the beat entry's name with --entries (empty for the heartbeat)

--entries reports the beat entries' state changes instead (every --poll seconds), one
line each, or one JSON object with --json; --exec gets the same variables, PETSAGE_ENTRY
set, PETSAGE_NEW_STATE an entry state, missing or unreachable, and PETSAGE_AGE_S and
PETSAGE_SEQ empty.

exit codes:
  0 stopped (Ctrl-C or SIGTERM); an unreachable store is a transition, and watch goes on
  2 a bad flag or setting (one line on standard error)

examples:
  petsage-heartbeat watch --all
  petsage-heartbeat watch --entries
  petsage-heartbeat watch --exec 'notify-send "$PETSAGE_SERVICE is $PETSAGE_NEW_STATE"'
"""

_SERVE_EPILOG = """\
pages: / (dashboard), /api/heartbeats (JSON), /metrics (Prometheus), /system/health and
/system/health/SERVICE (200 fresh or late, 503 otherwise), /openapi.json.
Needs the http extra: pip install 'petsage-heartbeat[http]'.

HEARTBEAT_HTTP_TOKEN (or HEARTBEAT_HTTP_TOKEN_FILE, a file holding it): every path but
/system/health then needs Authorization: Bearer TOKEN (the dashboard asks for it once at
/login). Only Host headers of --allowed-host / HEARTBEAT_HTTP_ALLOWED_HOSTS are answered;
by default localhost, 127.0.0.1 and ::1 when bound to loopback, any otherwise.

exit codes:
  0 stopped (Ctrl-C or SIGTERM)
  2 a bad flag or setting, or the http extra is missing (one line on standard error)

examples:
  petsage-heartbeat serve
  petsage-heartbeat serve --host 0.0.0.0 --port 9808   # in a container
"""

_RUN_EPILOG = """\
Starts celery beat, one worker and a monitor (incidents, uptime, webhooks) as child
processes and prints each heartbeat as it lands; Ctrl-C or SIGTERM stops them all. With
neither CELERY_BROKER_URL nor HEARTBEAT_REDIS_URL set it starts an embedded Redis-compatible
server in this process (needs the embedded extra). Settings come from the environment:
CELERY_BROKER_URL, HEARTBEAT_REDIS_URL, HEARTBEAT_SERVICE, HEARTBEAT_INTERVAL_S,
HEARTBEAT_STALE_AFTER_S, HEARTBEAT_KEY_PREFIX, HEARTBEAT_RETENTION_S, HEARTBEAT_HISTORY_LEN,
HEARTBEAT_CHECKS, HEARTBEAT_WEBHOOK_URLS.

exit codes:
  0 stopped (Ctrl-C or SIGTERM)
  1 beat, the worker or the monitor exited by itself (run stops the others)
  2 a bad flag or setting (one line on standard error)

examples:
  petsage-heartbeat run
  HEARTBEAT_INTERVAL_S=2 CELERY_BROKER_URL=redis://127.0.0.1:6379/0 petsage-heartbeat run
"""

_MONITOR_EPILOG = """\
Judges every service in the fleet index each period (default HEARTBEAT_INTERVAL_S) and
records each state transition in the service's incident stream, once however many
monitors run; posts each to the webhooks (HEARTBEAT_WEBHOOK_URLS and --webhook), retried
with back-off on their own threads. Run two or more for high availability.

exit codes:
  0 stopped (Ctrl-C or SIGTERM); a store that can't be reached is logged and retried
  2 a bad flag or setting (one line on standard error)

examples:
  petsage-heartbeat monitor
  petsage-heartbeat monitor --webhook https://hooks.example.com/petsage
  HEARTBEAT_WEBHOOK_FORMAT=slack HEARTBEAT_WEBHOOK_URLS=https://hooks.slack.com/services/... \\
    petsage-heartbeat monitor
"""

_SILENCE_EPILOG = """\
While silenced, the monitors hold notifications back (a state that differs from the last
one notified is notified when the silence ends), petsage_heartbeat_silenced is 1 and the
shipped alert rules stay quiet; check and status still say the true state, with a note.
--entry NAME silences one beat entry of the service's app instead: its transitions are
recorded, its notifications held back (docs/incidents.md).

exit codes:
  0 done
  1 the store could not be asked
  2 a bad flag, duration, service or entry name, or a service or entry the store doesn't
    know

examples:
  petsage-heartbeat silence billing --for 2h --reason "database migration"
  petsage-heartbeat silence billing --entry "nightly export" --for 1d
  petsage-heartbeat unsilence billing
"""

_FORGET_EPILOG = """\
Deletes the service's keys (heartbeat, history, beat marker, discard note, nodes,
incidents, the monitors' record, silence) and removes it from the fleet index. A service
still fresh or late is refused without --yes: its beat would bring it back at the next
heartbeat.

exit codes:
  0 forgotten
  1 refused: the service is still fresh or late (add --yes), or the store could not be asked
  2 a bad flag or service name, or a service the store doesn't know

examples:
  petsage-heartbeat forget old-billing
"""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are raised (and become one line), never printed."""

    def error(self, message: str) -> NoReturn:
        parts = self.prog.split()
        command = parts[1] if len(parts) > 1 else None
        raise UsageError(command, message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="petsage-heartbeat",
        description="PetSage heartbeat: a Celery beat schedule that proves the pipeline works, "
                    "and the probes that read it.",
        epilog="Run 'petsage-heartbeat COMMAND --help' for a command's flags, exit codes "
               "and examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, help_text: str, description: str, epilog: str) -> _Parser:
        return sub.add_parser(name, help=help_text, description=description, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    run = command("run", "run celery beat and a worker (embedded Redis if no URL)",
                  "Run beat and a worker together, for a laptop or a small deployment.",
                  _RUN_EPILOG)
    run.add_argument("--loglevel", default="WARNING",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     help="log level of the celery processes (default WARNING)")

    check = command("check", "probe one service: Nagios exit code 0/1/2/3",
                    "Probe one service's heartbeat, or one beat entry of its app (--entry): "
                    "one line (or --json) and the Nagios exit code. One round trip to Redis "
                    "under one deadline; imports no Celery.",
                    _CHECK_EPILOG)
    check.add_argument("--service", metavar="S",
                       help="service (env HEARTBEAT_SERVICE, default petsage)")
    check.add_argument("--late-after", type=float, metavar="S",
                       help="late after S seconds (default: 1.5 x the payload's interval_s)")
    check.add_argument("--stale-after", type=float, metavar="S",
                       help="stale after S seconds (default: the payload's stale_after_s)")
    check.add_argument("--unreachable-ok", action="store_true",
                       help="exit 0 when Redis can't be asked")
    component = check.add_mutually_exclusive_group()
    component.add_argument("--node", metavar="NODE",
                           help="probe this worker node (Celery node name or its host part)")
    component.add_argument("--beat", action="store_true", help="probe beat (its marker)")
    component.add_argument("--entry", metavar="NAME",
                           help="probe this beat entry of the service's app (its name)")
    check.add_argument("--liveness", action="store_true",
                       help="with --node or --beat: fail only for a fault in that component")
    _reader_flags(check, timeout_s=2.0)

    status = command("status", "table of one service or the fleet, worst first",
                     "Show one service, or every service in the fleet index, worst first.",
                     _STATUS_EPILOG)
    _which(status, entries="the beat entries of the service's app (of every service with "
                           "--all), worst first")
    _reader_flags(status, timeout_s=5.0)

    watch = command("watch", "report state transitions as they happen",
                    "Print each state transition when it happens: on a heartbeat arriving "
                    "and on a timer, so fresh -> late -> stale shows with no message at all.",
                    _WATCH_EPILOG)
    _which(watch, entries="report the beat entries' state changes instead of the service's")
    watch.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                       help="run CMD (via sh) on each transition, details in PETSAGE_* variables")
    watch.add_argument("--poll", type=float, default=0.5, metavar="S",
                       help="re-read every S seconds when no heartbeat arrives (default 0.5)")
    _reader_flags(watch, timeout_s=2.0)

    serve = command("serve", "HTTP: /system/health, /metrics and the dashboard",
                    "Serve /system/health, Prometheus /metrics and the dashboard over HTTP. "
                    "Binds to loopback unless told otherwise.", _SERVE_EPILOG)
    serve.add_argument("--host", default="127.0.0.1",
                       help="bind address (default 127.0.0.1; 0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=9808, help="port (default 9808)")
    serve.add_argument("--redis", metavar="URL", help=_STORE_URL_HELP)
    serve.add_argument("--prefix", metavar="PREFIX",
                       help="key prefix (env HEARTBEAT_KEY_PREFIX, default petsage:hb)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="HOST",
                       help="a Host header to answer (repeatable; env "
                            "HEARTBEAT_HTTP_ALLOWED_HOSTS, comma-separated; default: "
                            "localhost, 127.0.0.1, ::1 on loopback, any otherwise)")

    monitor = command("monitor", "record every transition, notify webhooks",
                      "Judge every service each period, record each state transition once "
                      "in Redis and post it to webhooks.", _MONITOR_EPILOG)
    monitor.add_argument("--every", type=float, metavar="S",
                         help="judge every S seconds (default HEARTBEAT_INTERVAL_S)")
    monitor.add_argument("--webhook", action="append", default=[], metavar="URL",
                         help="post transitions to URL (repeatable; adds to "
                              "HEARTBEAT_WEBHOOK_URLS); @FILE or a variable's NAME reads "
                              "the URLs from there, out of ps")
    monitor.add_argument("--webhook-format", choices=None, metavar="FORMAT",
                         help="json (default) or slack (env HEARTBEAT_WEBHOOK_FORMAT)")
    monitor.add_argument("--loglevel", default="INFO",
                         choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                         help="log level (default INFO: each transition and delivery)")
    _store_flags(monitor)

    _silence_commands(command)

    forget = command("forget", "retire a service: delete its keys and index entry",
                     "Retire one service: delete its keys and remove it from the fleet "
                     "index.", _FORGET_EPILOG)
    forget.add_argument("service", metavar="SERVICE")
    forget.add_argument("--yes", action="store_true",
                        help="forget it even though it is still fresh or late")
    _store_flags(forget)
    return parser


def _silence_commands(command: Callable[[str, str, str, str], _Parser]) -> None:
    """``silence`` and ``unsilence``: one service, or one beat entry of its app."""
    silence = command("silence", "hold a service's notifications and alerts for a while",
                      "Silence one service for a duration.", _SILENCE_EPILOG)
    silence.add_argument("service", metavar="SERVICE")
    silence.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                         help="how long: 90s, 15m, 2h, 1d, 1h30m")
    silence.add_argument("--reason", default="", metavar="TEXT", help="why (shown everywhere)")
    silence.add_argument("--entry", metavar="NAME",
                         help="silence this beat entry of the service's app only")
    _store_flags(silence)

    unsilence = command("unsilence", "end a service's silence now",
                        "End one service's silence now.", _SILENCE_EPILOG)
    unsilence.add_argument("service", metavar="SERVICE")
    unsilence.add_argument("--entry", metavar="NAME",
                           help="end the silence of this beat entry only")
    _store_flags(unsilence)


def _store_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--redis", metavar="URL", help=_STORE_URL_HELP)
    cmd.add_argument("--prefix", metavar="PREFIX",
                     help="key prefix (env HEARTBEAT_KEY_PREFIX, default petsage:hb)")


def _which(cmd: argparse.ArgumentParser, *, entries: str) -> None:
    which = cmd.add_mutually_exclusive_group()
    which.add_argument("--service", metavar="S",
                       help="service (env HEARTBEAT_SERVICE, default petsage)")
    which.add_argument("--all", action="store_true", help="every service in the fleet index")
    cmd.add_argument("--entries", action="store_true", help=entries)


def _reader_flags(cmd: argparse.ArgumentParser, *, timeout_s: float) -> None:
    cmd.add_argument("--redis", metavar="URL", help=_STORE_URL_HELP)
    cmd.add_argument("--prefix", metavar="PREFIX",
                     help="key prefix (env HEARTBEAT_KEY_PREFIX, default petsage:hb)")
    cmd.add_argument("--timeout", type=float, default=timeout_s, metavar="S",
                     help=f"give up on Redis after S seconds (default {timeout_s:g})")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    try:
        args, unknown = _parser().parse_known_args(argv)
        if unknown:  # said by the top-level parser, which doesn't know the command
            raise UsageError(args.command, f"unrecognized arguments: {' '.join(unknown)}")
    except UsageError as exc:
        where = f"petsage-heartbeat {exc.command}" if exc.command else "petsage-heartbeat"
        return fail(exc.command, f"{exc.command + ': ' if exc.command else ''}{exc}; "
                                 f"see '{where} --help'")
    if args.command == "check" and args.entry is not None:
        return _check_entry(args)
    if args.command == "check":
        from worker.cli.check import run_check

        return run_check(redis_url=args.redis, service=args.service, prefix=args.prefix,
                         late_after_s=args.late_after, stale_after_s=args.stale_after,
                         timeout_s=args.timeout, as_json=args.json,
                         unreachable_ok=args.unreachable_ok, node=args.node, beat=args.beat,
                         liveness=args.liveness)
    if args.command == "status":
        return _status(args, argv)
    if args.command in ("silence", "unsilence", "forget"):
        from worker.cli import silence as admin

        common = {"service": args.service, "redis_url": args.redis, "prefix": args.prefix}
        if args.command == "silence":
            return admin.run_silence(duration=args.duration, reason=args.reason,
                                     entry=args.entry, **common)
        if args.command == "unsilence":
            return admin.run_unsilence(entry=args.entry, **common)
        return admin.run_forget(yes=args.yes, **common)
    import logging

    level = args.loglevel if args.command == "monitor" else "WARNING"
    logging.basicConfig(level=getattr(logging, level),
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.command == "watch":
        return _watch(args)
    if args.command == "serve":
        from worker.cli.serve import run_serve

        return run_serve(host=args.host, port=args.port, redis_url=args.redis, prefix=args.prefix,
                         allowed_host=args.allowed_host)
    if args.command == "monitor":
        from worker.cli.monitor import run_monitor

        return run_monitor(redis_url=args.redis, prefix=args.prefix, every_s=args.every,
                           webhooks=args.webhook, webhook_format=args.webhook_format)
    if args.command == "run":
        from worker.cli.run import run

        return run(loglevel=args.loglevel)
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


def _watch(args: argparse.Namespace) -> int:
    from worker.cli.check import positive_seconds
    from worker.core.errors import ConfigError
    from worker.core.settings import Settings

    try:
        positive_seconds("--timeout", args.timeout)
        positive_seconds("--poll", args.poll)
        settings = Settings.from_env(None, redis_url=args.redis, service=args.service,
                                     prefix=args.prefix)
    except ConfigError as exc:
        return fail("watch", str(exc))
    if args.entries:
        from worker.cli.entries import run_watch_entries

        return run_watch_entries(settings, all_services=args.all, exec_cmd=args.exec_cmd,
                                 as_json=args.json, timeout_s=args.timeout, poll_s=args.poll)
    from worker.cli.watch import run_watch

    return run_watch(settings, all_services=args.all, exec_cmd=args.exec_cmd,
                     as_json=args.json, timeout_s=args.timeout, poll_s=args.poll)


def _check_entry(args: argparse.Namespace) -> int:
    """``check --entry NAME``: the flags that judge the service heartbeat don't apply."""
    given = [flag for flag, value in (("--late-after", args.late_after),
                                      ("--stale-after", args.stale_after),
                                      ("--liveness", args.liveness or None)) if value is not None]
    if given:
        return fail("check", f"{', '.join(given)} can't be used with --entry: an entry is "
                             "judged on its own schedule and tolerances (options.heartbeat: "
                             "grace_s, max_runtime_s); see docs/entries.md")
    from worker.cli.entries import run_check_entry

    return run_check_entry(name=args.entry, redis_url=args.redis, service=args.service,
                           prefix=args.prefix, timeout_s=args.timeout, as_json=args.json,
                           unreachable_ok=args.unreachable_ok)


def _status(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``status``: the service or the fleet, or with ``--entries`` their beat entries."""
    import gc

    from worker.cli.status import run_status

    # A short-lived process that judges thousands of acyclic payloads: the cyclic GC
    # would find nothing and costs about a third of a 10,000-service read. Decided
    # here, at the entry point of this process only, never in the library.
    gc.disable()

    if args.entries:
        from worker.cli.entries import run_status_entries

        code = run_status_entries(redis_url=args.redis, service=args.service,
                                  all_services=args.all, prefix=args.prefix,
                                  timeout_s=args.timeout, as_json=args.json)
    else:
        code = run_status(redis_url=args.redis, service=args.service,
                          all_services=args.all, prefix=args.prefix,
                          timeout_s=args.timeout, as_json=args.json)
    if argv is None:
        # The command line, not a caller in this process: leave without tearing down
        # the fleet's objects one by one (a third of a second at 100,000 services).
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
