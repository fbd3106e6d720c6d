"""The ``petsage-heartbeat`` command: parse arguments, configure logging, dispatch.

Each subcommand imports only what it needs, so that ``check`` stays cheap.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worker.version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petsage-heartbeat",
        description="PetSage heartbeat: a Celery beat schedule that proves the pipeline works.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run celery beat and a worker (embedded Redis if no URL)")
    run.add_argument("--loglevel", default="WARNING",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     help="log level of the celery processes (default WARNING)")
    _reader_commands(sub)
    return parser


def _common_reader_flags(cmd: argparse.ArgumentParser, *, timeout_s: float) -> None:
    cmd.add_argument("--redis", metavar="URL",
                     help="store URL (default: HEARTBEAT_REDIS_URL, else CELERY_BROKER_URL)")
    cmd.add_argument("--prefix", metavar="PREFIX", help="key prefix (default HEARTBEAT_KEY_PREFIX)")
    cmd.add_argument("--timeout", type=float, default=timeout_s, metavar="S",
                     help=f"give up on Redis after S seconds (default {timeout_s:g})")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of text")


def _reader_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser("check", help="probe one service: Nagios exit code 0/1/2/3")
    check.add_argument("--service", metavar="S", help="service (default HEARTBEAT_SERVICE)")
    check.add_argument("--late-after", type=float, metavar="S",
                       help="late after S seconds (default: 1.5 x the payload's interval)")
    check.add_argument("--stale-after", type=float, metavar="S",
                       help="stale after S seconds (default: the payload's stale_after_s)")
    check.add_argument("--unreachable-ok", action="store_true",
                       help="exit 0 when Redis can't be asked (for liveness probes)")
    _common_reader_flags(check, timeout_s=2.0)

    status = sub.add_parser("status", help="table of one service or the fleet, worst first")
    which = status.add_mutually_exclusive_group()
    which.add_argument("--service", metavar="S", help="service (default HEARTBEAT_SERVICE)")
    which.add_argument("--all", action="store_true", help="every service in the fleet index")
    _common_reader_flags(status, timeout_s=5.0)

    watch = sub.add_parser("watch", help="report state transitions as they happen")
    which = watch.add_mutually_exclusive_group()
    which.add_argument("--service", metavar="S", help="service (default HEARTBEAT_SERVICE)")
    which.add_argument("--all", action="store_true", help="every service in the fleet index")
    watch.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                       help="run CMD (via sh) on each transition, details in PETSAGE_* variables")
    watch.add_argument("--poll", type=float, default=0.5, metavar="S",
                       help="re-read every S seconds when no heartbeat arrives (default 0.5)")
    _common_reader_flags(watch, timeout_s=2.0)

    serve = sub.add_parser("serve", help="HTTP: /system/health, /metrics and the dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9808, help="port (default 9808)")
    serve.add_argument("--redis", metavar="URL",
                       help="store URL (default: HEARTBEAT_REDIS_URL, else CELERY_BROKER_URL)")
    serve.add_argument("--prefix", metavar="PREFIX",
                       help="key prefix (default HEARTBEAT_KEY_PREFIX)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        from worker.check import run_check

        return run_check(redis_url=args.redis, service=args.service, prefix=args.prefix,
                         late_after_s=args.late_after, stale_after_s=args.stale_after,
                         timeout_s=args.timeout, as_json=args.json,
                         unreachable_ok=args.unreachable_ok)
    if args.command == "status":
        from worker.status import run_status

        return run_status(redis_url=args.redis, service=args.service, all_services=args.all,
                          prefix=args.prefix, timeout_s=args.timeout, as_json=args.json)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.command == "watch":
        return _watch(args)
    if args.command == "serve":
        from worker.serve import run_serve

        return run_serve(host=args.host, port=args.port, redis_url=args.redis, prefix=args.prefix)
    if args.command == "run":
        from worker.runner import run

        return run(loglevel=args.loglevel)
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


def _watch(args: argparse.Namespace) -> int:
    from worker.check import positive_seconds
    from worker.errors import ConfigError
    from worker.reader_config import reader_settings

    try:
        positive_seconds("--timeout", args.timeout)
        positive_seconds("--poll", args.poll)
        settings = reader_settings(redis_url=args.redis, service=args.service, prefix=args.prefix)
    except ConfigError as exc:
        print(f"petsage-heartbeat: {exc}", file=sys.stderr)
        return 2
    from worker.watch import run_watch

    return run_watch(settings, all_services=args.all, exec_cmd=args.exec_cmd,
                     as_json=args.json, timeout_s=args.timeout, poll_s=args.poll)
