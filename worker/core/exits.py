"""Failing with one line and an exit code: the one way every command reports a user error.

Probes (``check``, ``status``) speak the Nagios plugin convention that Kubernetes exec
probes, cron wrappers and monitoring agents read: one ``UNKNOWN - ...`` line on standard
output and exit 3. Every other command prints one ``petsage-heartbeat: ...`` line on
standard error and exits 2, like a shell tool given a bad argument.
"""

from __future__ import annotations

import sys

PROBE_COMMANDS = ("check", "status")
"""Commands whose errors follow the Nagios convention (UNKNOWN, exit 3)."""

NAGIOS_UNKNOWN = 3
"""Nagios exit code for 'could not tell': a bad flag, setting or an unreachable store."""

USAGE_ERROR = 2
"""Exit code of the non-probe commands for a bad flag or setting."""

RUNTIME_ERROR = 1
"""Exit code of the non-probe commands when something they run fails (a child process)."""


def fail(command: str | None, message: str, *, runtime: bool = False) -> int:
    """Print ``message`` as the one line ``command`` reports errors with; return its exit code.

    ``runtime``: the command was used rightly but what it runs failed (exit 1, not 2).
    """
    line = " ".join(message.split())  # one line, whatever the message held
    if command in PROBE_COMMANDS:
        print(f"UNKNOWN - petsage-heartbeat: {line}", flush=True)
        return NAGIOS_UNKNOWN
    print(f"petsage-heartbeat: {line}", file=sys.stderr, flush=True)
    return RUNTIME_ERROR if runtime else USAGE_ERROR
