"""The ``petsage-heartbeat`` command: parse arguments, configure logging, dispatch.

Each subcommand imports only what it needs, so that ``check`` stays cheap.
"""

from __future__ import annotations

import argparse
import logging
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.command == "run":
        from worker.runner import run

        return run(loglevel=args.loglevel)
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


if __name__ == "__main__":
    raise SystemExit(main())
